"""Keras capture speed: Keras 3 MobileNetV2 (random weights, 224 px, batch 1), torch backend.

    .venv/bin/python bench/perf_keras.py [--rounds 15] [--threads 2] [--batch 1]

Methods, run round-robin in one process (see perf_common.interleaved); each ratio is the
median over rounds of (method time / plain time in the same round):

* ``plain``           ``model(x, training=False)``, the call a user makes
* ``plain no_grad``   the same under ``torch.no_grad()`` (what capture runs under)
* ``capture``         ``convlens.capture(model, image)`` (a 224x224 image: no resize)
* ``capture + read``  the capture, then every ``stage.output`` read (channels-first NumPy)
* ``probe``           keract-style probe ``keras.Model(inputs, [l.output for l in layers])``,
  built once before timing (so it may be stale), called
* ``probe + read``    the probe's outputs converted to channels-first NumPy arrays
* ``probe built``     the probe built inside each call (never stale), called, read

Ratios are medians of per-round ratios, against ``plain`` and against ``plain no_grad``.
Targets (issue 13): capture <= 1.05x plain, capture + read <= 1.15x plain.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from perf_common import interleaved, med, ratio, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)

    import keras
    import torch

    import convlens

    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(args.size, args.size, 3))
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, args.size, args.size, 3), dtype=np.float32)
    xt = keras.ops.convert_to_tensor(images)
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]

    def to_cf(t):
        a = keras.ops.convert_to_numpy(t)
        return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if a.ndim == 4 else a

    probe = keras.Model(model.inputs, [l.output for l in layers])

    def plain():
        return model(xt, training=False)

    def plain_nograd():
        with torch.no_grad():
            return model(xt, training=False)

    def capture():
        return convlens.capture(model, images)

    def capture_read():
        trace = convlens.capture(model, images)
        return [s.output for s in trace.stages]

    def probe_call():
        return probe(xt, training=False)

    def probe_read():
        return [to_cf(t) for t in probe(xt, training=False)]

    def probe_built():
        p = keras.Model(model.inputs, [l.output for l in layers])
        return [to_cf(t) for t in p(xt, training=False)]

    fns = {"plain": plain, "plain no_grad": plain_nograd, "capture": capture,
           "capture + read": capture_read, "probe": probe_call, "probe + read": probe_read,
           "probe built": probe_built}
    trace = capture()
    n_out = sum(s.output.nbytes for s in trace.stages)
    times = interleaved(fns, args.rounds, warmup=2)
    base, nograd = times["plain"], times["plain no_grad"]
    rows = [[k, f"{med(v) * 1e3:.1f}", f"{ratio(v, base):.3f}", f"{ratio(v, nograd):.3f}"]
            for k, v in times.items()]
    print(f"MobileNetV2 (Keras {keras.__version__}, torch {torch.__version__}, "
          f"{args.threads} threads), {args.size} px, batch {args.batch}, {args.rounds} rounds; "
          f"{len(trace)} stages, {n_out / 1e6:.0f} MB of outputs")
    print(table(["method", "ms (median)", "x plain", "x plain no_grad"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
