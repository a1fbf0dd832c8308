"""``convlens stats``: the layer statistics table (:meth:`convlens.Trace.stats`) of a
network on your images, as an aligned table, CSV or JSON."""
from __future__ import annotations

import argparse
from pathlib import Path

from convlens.cli.common import FORMATTER, add_images, add_layers, add_network, add_out, load_batch, trace_from_args
from convlens.errors import ConvlensError

__all__ = ["add_parser", "run"]

_EXAMPLES = """examples:
  convlens stats cat.jpg --model zoo:efficientnet-lite0
  convlens stats digit.png --model zoo:lenet --format csv -o lenet-stats.csv
  convlens stats cat.jpg --net "conv(8, 3x3) relu maxpool(2)" --format json
  convlens stats --trace out/trace.npz --image 1

columns: index, name, kind, op, shape, values, mean, std, min, max, zeros (fraction of
values exactly 0), dead_channels (fraction of channels that are 0 everywhere, for every
image of the batch, or for --image N only)
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats", help="per-stage statistics: mean, std, min, max, zeros, dead channels",
        description="Layer statistics of a network on your images (or of a saved trace).",
        epilog=_EXAMPLES, formatter_class=FORMATTER)
    add_images(p, nargs="*")
    add_network(p, trace=True)
    add_layers(p)
    p.add_argument("--image", type=int, metavar="N",
                   help="statistics of image N of the batch only (default: the whole batch)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    add_out(p, folder=False, help="write to FILE instead of the screen")
    return p


def run(args: argparse.Namespace) -> int:
    from convlens.trace import Trace

    if args.trace is not None:
        if args.images:
            raise ConvlensError("--trace takes no images (the trace holds its own); "
                                f"got {len(args.images)} image argument(s)")
        trace = Trace.load(args.trace)
        if args.layers:
            keep = {s.name for s in trace.select(args.layers)}
            trace = Trace([s for s in trace.stages if s.name in keep], trace.input,
                          trace.framework, trace.model_name, trace.model_input,
                          trace.preprocessing, trace.meta)
    else:
        if not args.images:
            raise ConvlensError("give at least one image file (or --trace FILE)")
        trace = trace_from_args(args, load_batch(args))
    table = trace.stats(args.image)
    text = {"table": lambda: str(table) + "\n", "csv": table.to_csv,
            "json": lambda: table.to_json() + "\n"}[args.format]()
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote statistics of {len(table)} stages ({table.scope}) to {path}")
    else:
        print(text, end="")
    return 0
