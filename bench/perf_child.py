"""One measurement in a fresh interpreter (run by bench/run.py; prints one JSON line).

    python bench/perf_child.py '{"kind": "rss", "case": "efficientnet-lite0", "method": "capture"}'

``rss``: the peak RSS one call of ``method`` adds to the process holding the loaded model
(measured cold, from the same state for every method).  ``torchlens``: torchlens against
the plain forward pass (torchlens wraps torch functions for good, so it gets its own
process).  ``render_cold``: every channel of every stage drawn by a fresh process.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perf_common as pc  # noqa: E402


def _method(name: str, model, images, pp, tmp: str):
    import convlens

    if name.startswith("capture layers="):
        return lambda: convlens.capture(model, images, name.split("=", 1)[1], preprocess=pp)
    if name == "capture disk":
        return lambda: convlens.capture(model, images, preprocess=pp, store="disk",
                                        directory=Path(tmp) / "stages")
    if name == "capture disk fp16":
        return lambda: convlens.capture(model, images, preprocess=pp, store="disk",
                                        dtype="float16", directory=Path(tmp) / "stages16")
    return pc.methods(model, images, pp)[name]


def rss(task: dict) -> dict:
    model, images, pp = pc.case(task["case"], task.get("size"), task.get("batch", 1))
    with tempfile.TemporaryDirectory() as tmp:
        fn = _method(task["method"], model, images, pp, tmp)
        base = pc.reset_peak()
        t = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t
        top = pc.peak()
        held = _held_bytes(result)
        del result
    return {"peak_bytes": top - base, "seconds": seconds, "held_bytes": held}


def _held_bytes(result) -> int:
    """Bytes of stage outputs a Trace holds in RAM (memory-mapped ones count 0, and so do
    deferred ones, computed only when read)."""
    import mmap

    import numpy as np

    def in_ram(a) -> bool:
        while a is not None:
            if isinstance(a, (np.memmap, mmap.mmap)):
                return False
            a = getattr(a, "base", None)
        return True

    return sum(s.output.nbytes for s in getattr(result, "stages", [])
               if s.computed and in_ram(s.output))


def torchlens(task: dict) -> dict:
    import torch
    import torchlens as tl

    import convlens

    model, images, pp = pc.case(task["case"], task.get("size"), task.get("batch", 1))
    plain = pc.methods(model, images, pp)["plain"]

    def traced():
        xb, _ = pp.apply(convlens.as_batch(images))
        return tl.trace(model, torch.from_numpy(xb))

    base = pc.reset_peak()
    traced()  # the first call, cold, for the peak
    top = pc.peak()
    times = pc.interleaved({"plain": plain, "torchlens": traced}, task.get("rounds", 5), warmup=1,
                           budget_s=task.get("budget_s", 30))
    return {"plain": pc.med(times["plain"]), "torchlens": pc.med(times["torchlens"]),
            "ratio": pc.ratio(times["torchlens"], times["plain"]), "peak_bytes": top - base,
            "version": tl.__version__ if hasattr(tl, "__version__") else "?"}


def render_cold(task: dict) -> dict:
    import convlens
    from convlens import render

    model, images, pp = pc.case("efficientnet-lite0")
    trace = convlens.capture(model, images, preprocess=pp)
    t = time.perf_counter()
    for s in trace:
        if s.is_spatial:
            render.grid(s, tile=task["tile"], norm=task["norm"])
    grids = time.perf_counter() - t
    t = time.perf_counter()
    render.journey(trace)
    return {"grids": grids, "journey": time.perf_counter() - t}


def main() -> None:
    pc.setup()
    task = json.loads(sys.argv[1])
    out = {"rss": rss, "torchlens": torchlens, "render_cold": render_cold}[task["kind"]](task)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
