"""The ``convlens`` command line.  User errors exit 2 with one line, never a traceback."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from .errors import ConvlensError

__all__ = ["main", "COMMAND_MODULES"]

# Each of these modules has add_parser(subparsers) -> ArgumentParser, which adds
# its command, and run(args) -> exit status (or sets `handler` with set_defaults).
COMMAND_MODULES: tuple[str, ...] = (
    "convlens.explain.cli",
    "convlens.predict_cli",
    "convlens.stats_cli",
    "convlens.compare_cli",
    "convlens.report.cli",
    "convlens.server.cli",
    "convlens.attribute.cli",
)

_EXAMPLES = """examples:
  convlens demo -o demo-out
  convlens run cat.jpg --net "conv(3, 3x3) relu maxpool(5)" -o out/
  convlens run photo.png --model my_model.keras -o out/
  convlens run a.png b.png --model zoo:lenet --layers conv,pool -o out/
"""

_RUN_EXAMPLES = """examples:
  convlens run cat.jpg --net "conv(3, 3x3) relu maxpool(5)" -o out/
  convlens run cat.jpg --net "conv(8, 5x5, stride=2) relu avgpool(2)" --backend keras --seed 3 -o out/
  convlens run photo.png --model my_model.keras --layers "conv,block1*" --norm map -o out/
  convlens run digit.png --model model.pt -o out/      (TorchScript only; pickles are refused)

spec language: conv(F, KxK[, stride=S, padding=valid|same|N, dilation=D, groups=G])
  maxpool(S[, stride=S]) avgpool(S) relu sigmoid tanh elu selu gelu silu softplus
  leakyrelu(alpha) flatten dense(N) softmax — layers separated by spaces
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="convlens", description="See what a convolutional network does to an "
                "image, stage by stage.", epilog=_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    p.add_argument("--version", action="version", version=f"convlens {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="the 2017 tutorial's experiments on the bundled cat",
                       epilog="example:\n  convlens demo -o demo-out\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("-o", "--out", default="convlens-demo", help="output folder (default: %(default)s)")
    d.add_argument("--backend", choices=("torch", "keras"), default="torch")
    d.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("run", help="capture and draw every stage of a network on your images",
                       epilog=_RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--net", metavar="SPEC", help='a toy network, e.g. "conv(3, 3x3) relu maxpool(5)"')
    g.add_argument("--model", metavar="FILE", help=".keras, .h5, TorchScript .pt, or zoo:NAME")
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument("--backend", choices=("torch", "keras"), default="torch",
                   help="framework that builds --net (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="weight seed for --net (default: 0)")
    r.add_argument("--layers", metavar="SEL", help="keep only these stages: names, kinds or "
                   "globs, comma-separated (e.g. conv,pool or 'block1*')")
    r.add_argument("--norm", choices=("map", "stage", "global", "standard"), default="stage",
                   help="colour scale: per map, per stage, global, or standardised")
    r.add_argument("--size", metavar="HxW", help="resize every image to HxW (needed when the "
                   "images' sizes differ)")

    d.set_defaults(handler=_cmd_demo)
    r.set_defaults(handler=_cmd_run)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        cmd = module.add_parser(sub)
        if cmd.get_default("handler") is None:
            cmd.set_defaults(handler=module.run)
    return p


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConvlensError(f"--size must look like 224x224; got {text!r}") from None
    return h, w


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    index = run_demo(args.out, backend=args.backend, seed=args.seed)
    print(f"wrote {index.parent}/ — open {index} (or the single-file {index.parent / 'report.html'})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from . import render
    from .images import as_batch
    from .narrate import describe_stage
    from .pipeline import make_trace

    out = Path(args.out)
    batch = as_batch(list(args.images), size=_size(args.size))
    trace = make_trace(batch, net=args.net, model=args.model, backend=args.backend,
                       seed=args.seed, layers=args.layers)
    out.mkdir(parents=True, exist_ok=True)
    trace.save(out / "trace.npz")
    render.journey(trace, norm=args.norm).save(out / "journey.png")
    n = len(trace.stages)
    for k, stage in enumerate(trace.stages, 1):
        sys.stderr.write(f"\rrendering stage {k}/{n}: {stage.name[:40]:<40}")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stage.name)
        for i in range(trace.batch_size):
            suffix = f"_img{i}" if trace.batch_size > 1 else ""
            render.stage(stage, image=i, norm=args.norm).save(
                out / f"{stage.index:02d}_{safe}{suffix}.png")
    sys.stderr.write("\n")
    print(trace.summary())
    for stage in trace.stages:
        print(f"  {stage.name}: {describe_stage(trace, stage)}")
    print(f"wrote {n} stage picture(s), journey.png and trace.npz to {out}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except ConvlensError as exc:
        sys.stderr.write(f"convlens {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("convlens: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
