"""The performance bench of convlens: one command, every number of docs/performance.md.

    .venv/bin/python bench/run.py                       # the full run (about 5 minutes)
    .venv/bin/python bench/run.py --quick               # a smoke run
    .venv/bin/python bench/run.py --markdown out.md --plot docs/img/performance-scaling.png

Measures, in one run, on ``torch.set_num_threads(2)``:

1. capture speed: the plain forward pass (with the same preprocessing), convlens.capture
   of every stage (default, ``weights="share"``, ``dtype="float16"``), a naive
   hooks-plus-copy baseline and torchlens (when installed; its own process, as it wraps
   torch for good), for EfficientNet-Lite0 at batch 1 and 8, LeNet and the tutorial's toy
   network on the cat; medians of interleaved rounds and ratios to the plain pass;
2. peak RSS of each method, each in a fresh process;
3. the memory options (``layers=``, ``dtype``, ``store="disk"``) at 896 px;
4. scaling of capture and render time with image size and batch size (table + plot);
5. rendering every channel of every stage to grids, the journey, PNG encoding.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perf_capture  # noqa: E402
import perf_common as pc  # noqa: E402
import perf_render  # noqa: E402


SECTIONS = ("capture", "memory", "scaling", "render")
"""In this order: rendering (gigabytes of pixels) goes last, as freeing that much memory
can stall a virtual machine for seconds while its host takes the memory back."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and points (a smoke run)")
    ap.add_argument("--no-children", action="store_true",
                    help="skip what needs fresh processes (peak RSS, torchlens, cold renders)")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--plot", type=Path, default=pc.ROOT / "docs" / "img" / "performance-scaling.png",
                    help="where the scaling plot goes (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the raw numbers as JSON")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="run only these sections (default: all)")
    args = ap.parse_args(argv)
    pc.setup()
    import torch

    children = not args.no_children
    start = time.perf_counter()
    out = [f"_{platform.processor() or platform.machine()}, {pc.THREADS} threads, "
           f"torch {torch.__version__}, Python {platform.python_version()}_", ""]
    raw = {}
    if "capture" in args.only:
        print("capture speed ...", flush=True)
        speed, rss, raw["capture"] = perf_capture.speed(args.quick, children)
        out += ["### Capture: time per call (median) and ratio to the plain forward pass", "",
                speed, ""]
        if rss:
            out += ["### Peak memory of one call (fresh process each)", "", rss, ""]
    if children and "memory" in args.only:
        print("memory options ...", flush=True)
        mem, raw["memory"] = perf_capture.memory(448 if args.quick else 896)
        out += ["### Memory options", "", mem, ""]
    if "scaling" in args.only:
        print("scaling ...", flush=True)
        scale, raw["scaling"] = perf_render.scaling(args.quick)
        plot = perf_render.plot(raw["scaling"], args.plot)
        out += ["### Scaling with image size and batch size", "", scale, "",
                f"![scaling]({plot.name})", ""]
    if "render" in args.only:
        print("rendering ...", flush=True)
        grids, journey, raw["render"] = perf_render.render(args.quick, children)
        out += ["### Rendering every channel of every stage", "", grids, "", journey, ""]
    from convlens.capture.allocator import allocator_status

    st = allocator_status()
    kept = f"{st['retain_mb']} MB" if st["retain_mb"] else "off"
    out.append(f"_freed-memory retention (convlens.capture.allocator, an opt-in): {kept} "
               f"({st['reason']}); bench wall time {time.perf_counter() - start:.0f} s_")
    text = "\n".join(out)
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
