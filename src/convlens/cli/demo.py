"""``convlens demo``: the 2017 tutorial's experiments on the bundled cat, and what follows."""
from __future__ import annotations

import argparse

from convlens.cli.common import FORMATTER, add_out

__all__ = ["add_parser", "run"]

ORDER = 5


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = subparsers.add_parser("demo", help="the 2017 tutorial's experiments on the bundled cat",
                              description="The 2017 tutorial's experiments, the teaching "
                              "figures, trained networks and attribution,\nwritten as PNGs with "
                              "an index.html and a single-file report.html.\nSections whose "
                              "extras are not installed are skipped and named at the end\n"
                              "(pip install 'convlens[all]' brings every extra).",
                              epilog="examples:\n  convlens demo -o demo-out\n"
                                     "  convlens demo --image photo.jpg -o my-demo   "
                                     "# the experiments on your own photo\n",
                              formatter_class=FORMATTER)
    add_out(d, folder=True, default="convlens-demo")
    d.add_argument("--image", metavar="PATH",
                   help="run the experiments and explanations on this picture instead of the "
                        "cat (the trained-network sections keep the cat)")
    d.add_argument("--backend", choices=("torch", "keras"), default="torch",
                   help="framework that builds the toy networks (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    return d


def run(args: argparse.Namespace) -> int:
    from convlens.demo import run_demo

    index = run_demo(args.out, backend=args.backend, seed=args.seed, image=args.image)
    print(f"wrote {index.parent}/ — open {index} (or the single-file {index.parent / 'report.html'})")
    return 0
