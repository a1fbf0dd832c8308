"""``convlens demo``: the 2017 tutorial's experiments on the bundled cat, and what follows."""
from __future__ import annotations

import argparse

from convlens.cli.common import FORMATTER, add_out

__all__ = ["add_parser", "run"]

ORDER = 5


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = subparsers.add_parser("demo", help="the 2017 tutorial's experiments on the bundled cat",
                              epilog="example:\n  convlens demo -o demo-out\n",
                              formatter_class=FORMATTER)
    add_out(d, folder=True, default="convlens-demo")
    d.add_argument("--backend", choices=("torch", "keras"), default="torch",
                   help="framework that builds the toy networks (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    return d


def run(args: argparse.Namespace) -> int:
    from convlens.demo import run_demo

    index = run_demo(args.out, backend=args.backend, seed=args.seed)
    print(f"wrote {index.parent}/ — open {index} (or the single-file {index.parent / 'report.html'})")
    return 0
