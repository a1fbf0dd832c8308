"""``convlens compare``: two forward passes side by side, stage by stage
(:func:`convlens.compare`).

* one image and a zoo model: the same architecture with **random** and with **trained**
  weights on that image;
* two images and any network (``--model`` or ``--net``): both images through it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from convlens.cli.common import FORMATTER, add_layers, add_network, add_out, trace_from_args
from convlens.errors import ConvlensError

__all__ = ["add_parser", "run"]

_EXAMPLES = """examples:
  convlens compare digit.png --model zoo:lenet -o random-vs-trained.png
  convlens compare cat.jpg --model zoo:efficientnet-lite0 \\
      --layers "stem.act,blocks.*.add,head.act,fc,softmax" -o cat-random-vs-trained.png
  convlens compare cat.jpg dog.jpg --model zoo:efficientnet-lite0 --layers "*.act" -o two.png
  convlens compare a.png b.png --net "conv(3, 3x3) relu maxpool(5)" -o ab.png
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="random vs trained weights, or two images, side by side per stage",
        description="Two forward passes side by side, one row per stage (matched by name), "
                    "each row on one shared colour range.",
        epilog=_EXAMPLES, formatter_class=FORMATTER)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="one image (random vs trained weights of a zoo model) or two images")
    add_network(p, seed_help="seed of the random weights (or of --net) (default: %(default)s)")
    add_out(p, folder=False, default="compare.png", help="output PNG")
    add_layers(p)
    p.add_argument("--tile", type=int, default=128, help="panel size in pixels (default: 128)")
    p.add_argument("--top", type=int, default=3,
                   help="classes to show for classifiers, 0 for none (default: 3)")
    return p


def run(args: argparse.Namespace) -> int:
    from convlens.analysis.comparison import compare, random_vs_trained
    from convlens.images import load_image

    if len(args.images) > 2:
        raise ConvlensError(f"compare takes one image (random vs trained) or two images; got "
                            f"{len(args.images)}")
    pictures = [load_image(p) for p in args.images]
    if len(pictures) == 1:
        if args.model is None or not args.model.startswith("zoo:"):
            raise ConvlensError(
                "one image compares random and trained weights, which needs a zoo model "
                "(--model zoo:lenet or zoo:efficientnet-lite0); to compare two images through "
                f"{'--net' if args.net else args.model}, give two image files")
        a, b = random_vs_trained(pictures[0], args.model, backend=args.backend,
                                 seed=args.seed, layers=args.layers)
        labels = None
    else:
        a, b = (trace_from_args(args, pic) for pic in pictures)
        labels = tuple(f"{Path(p).name} ({pic.shape[0]}x{pic.shape[1]})"
                       for p, pic in zip(args.images, pictures))
    fig = compare(a, b, labels=labels, tile=args.tile, top=args.top)
    path = fig.save(args.out)
    la, lb = fig.meta["labels"]
    print(f"A: {la}\nB: {lb}\nwhat differs: {fig.meta['differs']}")
    width = max(len(r["stage"]) for r in fig.meta["rows"])
    for r in fig.meta["rows"]:
        rng = r["range"]
        span = f"{rng[0]:.4g} ... {rng[1]:.4g}" if rng else "-"
        diff = "shapes differ" if r["mean_abs_diff"] is None else f"{r['mean_abs_diff']:.4g}"
        print(f"  {r['stage']:<{width}}  row range {span:<24}  mean |A - B| {diff}")
    if len(fig.meta["rows"]) > 40 and not args.layers:
        print(f"tip: {len(fig.meta['rows'])} rows; --layers picks fewer stages")
    print(f"wrote {path}")
    return 0
