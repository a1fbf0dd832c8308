"""Benchmark: activation maximisation of one channel of EfficientNet-Lite0 at 128 x 128.

The target (issue 6) is under 30 s per channel on this machine with the default settings
(128 steps).  Also times Grad-CAM and SmoothGrad on the cat for reference.

    python bench/attribute_maximize.py            # default steps
    python bench/attribute_maximize.py --steps 256 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time


import convlens
from convlens import attribute
from convlens.nets import zoo

CASES = (
    ("early", "blocks.1.expand.act", 5),
    ("middle", "blocks.8.project.bn", 3),
    ("late", "blocks.15.project.bn", 1),
    ("head", "head.act", 7),
    ("class", None, 285),
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--limit", type=float, default=30.0, help="seconds allowed per channel")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    zm = zoo.load("efficientnet-lite0")
    attribute.maximize(zm, "stem.act", [0], size=args.size, steps=2, progress=None)  # warm-up
    print(f"EfficientNet-Lite0, {args.size}x{args.size}, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'case':8} {'stage':22} {'ch':>4} {'seconds':>8} {'/limit':>7} {'start':>9} {'final':>9}")
    worst = 0.0
    for label, stage, ch in CASES:
        t0 = time.perf_counter()
        r = attribute.maximize(zm, stage, [ch], size=args.size, steps=args.steps, progress=None)
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        print(f"{label:8} {stage or '(logits)':22} {ch:>4} {dt:8.2f} {dt / args.limit:7.2f} "
              f"{r.start[0]:9.3g} {r.final[0]:9.3g}")
    cat = convlens.cat()
    for name, fn in (("gradcam", lambda: attribute.gradcam(zm, cat)),
                     ("smoothgrad (25)", lambda: attribute.smoothgrad(zm, cat))):
        fn()
        t0 = time.perf_counter()
        fn()
        print(f"{name:31} {time.perf_counter() - t0:8.2f} s (cat, 224x224)")
    print(f"slowest channel {worst:.2f} s; limit {args.limit:.0f} s: "
          f"{'OK' if worst < args.limit else 'TOO SLOW'}")
    return 0 if worst < args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
