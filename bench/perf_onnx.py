"""ONNX capture cost: ``convlens.capture`` of an exported ResNet-50 against one plain
onnxruntime run (224 px, batch 1, best of 5).  Run: ``.venv/bin/python bench/perf_onnx.py``."""
from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).parent))
import convlens  # noqa: E402
from resnet import resnet50  # noqa: E402


def best(f, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "r50.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet50().eval(), (torch.zeros(1, 3, 224, 224),), str(path),
                          dynamo=False)
    t = time.perf_counter()
    model = convlens.load_model(path).model
    load = time.perf_counter() - t
    img = np.random.default_rng(0).random((224, 224, 3), dtype=np.float32)
    x = np.ascontiguousarray(np.moveaxis(img, 2, 0)[None])
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    for _ in range(2):  # warm up
        s.run(None, feed)
        convlens.capture(model, img)
    plain = best(lambda: s.run(None, feed))
    cap = best(lambda: convlens.capture(model, img))
    n = len(convlens.capture(model, img))
    print(f"ResNet-50 ONNX, 224 px, batch 1: load {load:.2f} s; plain run {plain * 1e3:.0f} ms; "
          f"capture {cap * 1e3:.0f} ms ({cap / plain:.2f}x), {n} stages")


if __name__ == "__main__":
    main()
