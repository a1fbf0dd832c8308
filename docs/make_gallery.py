"""Regenerate the pictures of docs/guide.md into docs/gallery/ (real convlens output).

    python docs/make_gallery.py            # from the repository root, about 20 s

The screenshots of the notebook views and the report need Playwright for Python and a
Chromium at /usr/bin/chromium (Debian: apt-get install chromium); without them those
three pictures are skipped and the others are still written.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import convlens
from convlens import display, export, render, report

OUT = Path(__file__).resolve().parent / "gallery"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def say(path: Path) -> None:
    print(f"wrote {path.relative_to(OUT.parent.parent)} ({path.stat().st_size / 1e3:.0f} kB)")


def screenshots(pages: list[tuple[str, str, int, int]]) -> None:
    """(html, file name, width, height) -> PNG screenshots of the top of each page."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("skipped the screenshots: pip install playwright (and apt-get install chromium)")
        return
    if not Path(CHROMIUM).exists():
        print(f"skipped the screenshots: no Chromium at {CHROMIUM}")
        return
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for k, (html, name, width, height) in enumerate(pages):
            src = Path(tmp) / f"page{k}.html"
            src.write_text(html, encoding="utf-8")
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(src.as_uri())
            page.screenshot(path=str(OUT / name))
            page.close()
            say(OUT / name)
        browser.close()


def page(body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    cat = convlens.cat()
    toy = convlens.make_trace(cat, net="conv(3, 3x3) relu maxpool(5)", seed=0)
    lenet_cat = convlens.make_trace(
        cat, net="conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)", seed=0)
    digits, _ = convlens.digits(4)
    lenet = convlens.make_trace(digits, model="zoo:lenet")
    eff = convlens.make_trace(cat, model="zoo:efficientnet-lite0")

    say(render.journey(toy, tile=160).save(OUT / "journey_toy.png"))
    say(render.rgb(lenet_cat[-1]).save(OUT / "lenet_cat_rgb.png"))
    say(export.save_stage(lenet, OUT / "stage_lenet_conv2.png", layer="conv2"))
    say(export.save_channel(eff, 5, OUT / "channel_efficientnet_stem.png", layer="stem.act"))
    say(export.journey_gif(lenet_cat, OUT / "journey_lenet_cat.gif", tile=160))
    with tempfile.TemporaryDirectory() as tmp:
        export.to_folder(lenet, tmp)
        mosaic = Path(tmp) / "003_conv2_img0.png"
        (OUT / "folder_lenet_conv2.png").write_bytes(mosaic.read_bytes())
        say(OUT / "folder_lenet_conv2.png")
    screenshots([
        (page(display.trace_html(lenet)), "notebook_trace.png", 1100, 900),
        (page(display.stage_html(eff["blocks.1.depthwise.act"])), "notebook_stage.png", 1100, 560),
        (report.report_html(eff), "report_top.png", 1300, 1000),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
