"""How long the demo's explanations section takes (was a timed assertion in
tests/test_explain_cli.py; speed is measured here, not asserted in tests).

    .venv/bin/python bench/explain_demo.py [--rounds 3]

Prints the median wall time of ``convlens.demo.explain.demo_section`` on the cat with
the toy networks built in PyTorch (target: under 8 s on a 2-core machine).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import convlens
    from convlens.demo.explain import demo_section
    from convlens.pipeline import trace_spec

    image = convlens.cat()
    times = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            demo_section(tmp, lambda spec: trace_spec(image, spec, backend="torch", seed=0))
            times.append(time.perf_counter() - start)
    print(f"demo_section: median {statistics.median(times):.2f} s over {len(times)} rounds "
          f"({', '.join(f'{t:.2f}' for t in times)}); target < 8 s")


if __name__ == "__main__":
    main()
