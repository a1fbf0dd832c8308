"""How fast the explorer answers, measured in a real browser.

Starts ``convlens serve``'s app (PyTorch on 1 thread, as the command does) in a
background thread, drives the page with Playwright and headless Chromium at 1280x800,
and reports p50 / p95 / max of:

* **toy change**: a toy-network parameter (conv1's kernel size, 3 <-> 5) edited on the
  page until the new journey of the 300x451 cat is painted (input event -> the
  animation frame after the last thumbnail is drawn);
* **toy change, stage open**: the same with a stage and a channel open (and again
  with 16 and 32 filters instead of 3 and 3);
* **colour change**: a colour-map change repainting everything on screen (no request);
* **new image, EfficientNet-Lite0**: a PNG chosen in the upload field until its
  144-stage journey is painted (upload + decode + forward pass + previews + drawing).

The page measures each interval itself (``window.__convlens.renders``).  Usage::

    python bench/bench_explorer.py [--runs 40] [--images 12] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(np.ceil(q / 100 * len(xs))) - 1))]


def summary(name: str, xs: list[float], target: float | None) -> dict:
    row = {"name": name, "n": len(xs), "p50_ms": round(statistics.median(xs), 1),
           "p95_ms": round(pct(xs, 95), 1), "max_ms": round(max(xs), 1), "target_ms": target}
    return row


def images(folder: Path, n: int) -> list[Path]:
    """``n`` different PNGs made from the cat (flips, crops, tints)."""
    import convlens
    cat = convlens.cat()
    out = []
    for k in range(n):
        im = cat[:, ::-1] if k % 2 else cat
        top, left = (k * 7) % 40, (k * 11) % 60
        im = im[top:top + 260, left:left + 390]
        im = np.clip(im * (0.85 + 0.03 * k), 0, 1)
        p = folder / f"variant{k:02d}.png"
        Image.fromarray(np.round(im * 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def wait_render(page, n: int, timeout: float = 60_000) -> dict:
    page.wait_for_function(f"window.__convlens.renders.length > {n}", timeout=timeout)
    return page.evaluate("window.__convlens.renders[window.__convlens.renders.length - 1]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from convlens.server import create_app
    from convlens.server.background import BackgroundServer

    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            BackgroundServer(create_app(torch_threads=1)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        # bypass_csp: wait_for_function evaluates strings, which the page's policy refuses
        page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_function("window.__convlens && window.__convlens.ready", timeout=60_000)
        first_ms = (time.perf_counter() - t) * 1000
        kernel = page.get_by_label("conv1 kernel size")

        def toy(runs: int) -> tuple[list[float], list[float]]:
            ms, server = [], []
            for i in range(runs + 3):
                n = page.evaluate("window.__convlens.renders.length")
                kernel.fill("5" if i % 2 == 0 else "3")
                r = wait_render(page, n)
                if i >= 3:  # the first few warm up
                    ms.append(r["ms"])
                    server.append(r["timing"]["capture_ms"] + r["timing"]["encode_ms"])
            return ms, server

        ms, server = toy(args.runs)
        rows.append(summary("toy change (journey)", ms, 150))
        rows.append(summary("  of which server (capture + encode)", server, None))
        page.locator(".stage-item").nth(1).click()
        page.locator("#grid .tile").nth(1).click()
        page.wait_for_selector("#arith-value")
        ms, _ = toy(args.runs // 2)
        rows.append(summary("toy change, stage + channel open", ms, 150))

        for label, value in (("conv1 filters", "16"), ("conv2 filters", "32")):
            n = page.evaluate("window.__convlens.renders.length")
            page.get_by_label(label).fill(value)
            wait_render(page, n)
        ms, _ = toy(args.runs // 2)
        rows.append(summary("toy change, 16 + 32 filters, stage open", ms, None))

        rec = []
        for i in range(20):
            page.select_option("#cmap-select", ["magma", "auto", "RdBu_r", "viridis"][i % 4])
            rec.append(page.evaluate("window.__convlens.recolours.at(-1)"))
        rows.append(summary("colour change (no request)", rec, None))

        n = page.evaluate("window.__convlens.renders.length")
        page.select_option("#model-select", "zoo:efficientnet-lite0")
        wait_render(page, n)
        effnet, server, draw = [], [], []
        for k, p in enumerate(images(Path(tmp), args.images + 2)):
            n = page.evaluate("window.__convlens.renders.length")
            page.set_input_files("#upload-input", str(p))
            r = wait_render(page, n)
            if k >= 2:
                effnet.append(r["ms"])
                server.append(r["timing"]["capture_ms"] + r["timing"]["encode_ms"])
                draw.append(r["draw_ms"])
        stages = page.locator(".stage-item").count() - 1
        rows.append(summary(f"new image, EfficientNet-Lite0 ({stages} stages)", effnet, 1000))
        rows.append(summary("  of which server (capture + encode)", server, None))
        rows.append(summary("  of which drawing the journey", draw, None))
        browser.close()

    print(f"first page load with the cat's journey: {first_ms:.0f} ms (cold: imports, warm-up)")
    heads = ("n", "p50 ms", "p95 ms", "max ms", "target")
    print(f"{'measurement':48s} {heads[0]:>4s} " + " ".join(f"{h:>8s}" for h in heads[1:]))
    for r in rows:
        tgt = f"{r['target_ms']}" if r["target_ms"] else ""
        print(f"{r['name']:48s} {r['n']:4d} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
              f"{r['max_ms']:8.1f} {tgt:>8s}")
    if args.json:
        args.json.write_text(json.dumps({"first_load_ms": first_ms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
