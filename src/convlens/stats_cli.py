"""``convlens stats``: the layer statistics table (:meth:`convlens.Trace.stats`) of a
network on your images, as an aligned table, CSV or JSON."""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import ConvlensError

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
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", metavar="FILE", help=".keras, .h5, TorchScript .pt, or zoo:NAME")
    g.add_argument("--net", metavar="SPEC", help='a toy network, e.g. "conv(3, 3x3) relu"')
    g.add_argument("--trace", metavar="NPZ", help="a trace saved by convlens run (trace.npz)")
    p.add_argument("--backend", choices=("torch", "keras"), default="torch")
    p.add_argument("--seed", type=int, default=0, help="weight seed for --net (default: 0)")
    p.add_argument("--layers", metavar="SEL", help="only these stages: names, kinds or globs")
    p.add_argument("--image", type=int, metavar="N",
                   help="statistics of image N of the batch only (default: the whole batch)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of the screen")
    return p


def run(args: argparse.Namespace) -> int:
    from .trace import Trace

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
        from .images import as_batch
        from .pipeline import make_trace

        trace = make_trace(as_batch(list(args.images)), net=args.net, model=args.model,
                           backend=args.backend, seed=args.seed, layers=args.layers)
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
