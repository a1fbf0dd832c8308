"""``convlens report IMAGE... --model M | --net SPEC -o report.html``."""
from __future__ import annotations

import argparse

from convlens.cli.common import FORMATTER, add_images, add_layers, add_network, add_out, load_batch, trace_from_args
from convlens.render.colormaps import CMAPS
from convlens.render.scale import NORMS

__all__ = ["add_parser", "run"]

_EPILOG = """examples:
  convlens report cat.jpg --model zoo:efficientnet-lite0 -o cat-report.html
  convlens report cat.jpg --net "conv(3, 3x3) relu maxpool(5)" -o toy.html
  convlens report a.png b.png --model model.keras --layers conv,pool --max-channels 64 -o r.html

The file is self-contained (pictures embedded, no external URLs): open it from disk,
offline, or send it as it is.  EfficientNet-Lite0 on one image is about 5.4 MB with the
defaults; --max-channels and --thumb trade detail for size.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="one self-contained HTML report of a network on your images",
        epilog=_EPILOG, formatter_class=FORMATTER)
    add_images(p)
    add_network(p)
    add_out(p, folder=False, required=True, help="the report to write (FILE.html)")
    add_layers(p)
    p.add_argument("--max-channels", type=int, default=16, metavar="N",
                   help="channels drawn per stage (default: %(default)s)")
    p.add_argument("--first", type=int, default=8, metavar="N",
                   help="channels shown before 'show all' (default: %(default)s)")
    p.add_argument("--thumb", type=int, default=64, metavar="PX",
                   help="pixels per side a channel tile is stored at (default: %(default)s)")
    p.add_argument("--norm", choices=NORMS, default="stage",
                   help="colour scale: per map, per stage, global, or standardised")
    p.add_argument("--cmap", choices=CMAPS, default=None,
                   help="colour map (default: viridis for non-negative, RdBu_r for signed)")
    p.add_argument("--no-explanations", action="store_true",
                   help="leave out the teaching figures (activation histogram, receptive field)")
    p.add_argument("--title", help="the report's title")
    return p


def run(args: argparse.Namespace) -> int:
    from convlens.report import ReportOptions, write_report

    opts = ReportOptions(max_channels=args.max_channels, first=args.first, thumb=args.thumb,
                         norm=args.norm, cmap=args.cmap, explanations=not args.no_explanations,
                         title=args.title)
    trace = trace_from_args(args, load_batch(args))
    path = write_report(trace, args.out, opts)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB, {len(trace.stages)} stages, "
          f"{trace.batch_size} image{'s' if trace.batch_size != 1 else ''}) — open it in a browser")
    return 0
