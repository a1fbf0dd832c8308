"""``convlens explain ...``: the teaching figures from the command line.

The main CLI calls :func:`add_parser` with its sub-parsers and dispatches to
:func:`run`.  User errors are raised as ``ConvlensError`` (one line) for the main
CLI to print and exit 2.
"""
from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

import numpy as np

from convlens.cli.common import add_network, add_out, load_batch, trace_from_args
from convlens.errors import ConvlensError, RenderError

__all__ = ["add_parser", "run"]

_EXAMPLES = {
    "conv": """examples:
  convlens explain conv                      # the classic 5x5 example -> [[4,3,4],[2,4,3],[2,3,4]]
  convlens explain conv --stride 2 --padding 1 --svg
  convlens explain conv --input "1,2,0;0,1,3;2,2,1" --kernel "1,0;0,-1" --bias 1
  convlens explain conv --net "conv(3, 3x3) relu maxpool(5)" --stage conv1 --channel 0 --at 120,200
  convlens explain conv --model zoo:lenet --image digit.png --stage conv1 --patch 4   # your photo of a digit""",
    "pool": """examples:
  convlens explain pool                      # 2x2 max pooling of the classic 4x4 example
  convlens explain pool --mode avg --pool 3 --stride 2 --padding 1
  convlens explain pool --net "conv(3, 3x3) relu maxpool(5)" --stage maxpool1 --at 20,40""",
    "activations": """examples:
  convlens explain activations               # the table of activation functions
  convlens explain activations --net "conv(3, 3x3) relu maxpool(5)" --stage relu1""",
    "architecture": """examples:
  convlens explain architecture alexnet      # also: lenet5
  convlens explain architecture "conv(6, 5x5) tanh avgpool(2) flatten dense(10)" --input-shape 1,28,28
  convlens explain architecture --model zoo:efficientnet-lite0""",
    "receptive-field": """examples:
  convlens explain receptive-field alexnet --stage conv3 --at 6,6
  convlens explain receptive-field alexnet --stage conv3 --image photo.jpg   # drawn on your photo
  convlens explain receptive-field --net "conv(3, 3x3) relu maxpool(5)" --stage maxpool1 --at 30,45""",
    "shapes": """examples:
  convlens explain shapes alexnet
  convlens explain shapes --net "conv(3, 3x3) relu maxpool(5)"   # the shapes on the cat""",
}


def _model_options(p: argparse.ArgumentParser) -> None:
    add_network(p, required=False)
    p.add_argument("--image", help="image file for --model/--net (default: the cat); with a "
                   "spec, it sizes the input (unless --input-shape) and receptive-field draws on it")


def _out(p: argparse.ArgumentParser) -> None:
    add_out(p, folder=True, default="convlens-explain")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``explain`` (with sub-commands conv, pool, activations, architecture,
    receptive-field, shapes) to the main CLI's sub-parsers; returns its parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = subparsers.add_parser(
        "explain", help="teaching figures: convolution, pooling, activations, architecture...",
        description="Teaching figures computed from real numbers, for the built-in examples "
                    "or for your own network and image.",
        epilog="examples:\n" + "\n".join(
            line for text in _EXAMPLES.values() for line in text.splitlines()[1:]),
        formatter_class=fmt)
    sub = top.add_subparsers(dest="explain_command", metavar="WHAT", required=True)

    p = sub.add_parser("conv", help="animate a convolution (GIF + PNG frames)",
                       epilog=_EXAMPLES["conv"], formatter_class=fmt)
    p.add_argument("--input", help='input rows as "1,1,0;0,1,1;..." (default: the classic 5x5)')
    p.add_argument("--kernel", help='kernel rows as "1,0,1;0,1,0;1,0,1" (default)')
    p.add_argument("--bias", type=float, default=0.0)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="0", help="a number, valid or same (default 0)")
    p.add_argument("--dilation", type=int, default=1)
    _stage_options(p)
    p.add_argument("--svg", action="store_true", help="also write the last frame as SVG")
    _out(p)
    _model_options(p)

    p = sub.add_parser("pool", help="animate max or average pooling (GIF + PNG frames)",
                       epilog=_EXAMPLES["pool"], formatter_class=fmt)
    p.add_argument("--input", help='input rows as "1,1,2,4;5,6,7,8;..." (default: the classic 4x4)')
    p.add_argument("--pool", type=int, default=2, help="window size (default 2)")
    p.add_argument("--stride", type=int, default=None, help="default: the window size")
    p.add_argument("--padding", default="0", help="a number, valid or same (default 0)")
    p.add_argument("--mode", choices=("max", "avg"), default="max")
    _stage_options(p)
    p.add_argument("--svg", action="store_true", help="also write the last frame as SVG")
    _out(p)
    _model_options(p)

    p = sub.add_parser("activations", help="the activation-function table; with --stage, "
                       "the histogram of a stage before and after its activation",
                       epilog=_EXAMPLES["activations"], formatter_class=fmt)
    p.add_argument("--stage", help="an activation stage of --model/--net")
    _out(p)
    _model_options(p)

    for name, helptext in (("architecture", "a LeNet/AlexNet-style diagram (PNG + SVG)"),
                           ("receptive-field", "the input region one output position sees, "
                            "and its growth across the network"),
                           ("shapes", "print every stage's shape with the output-size formula")):
        p = sub.add_parser(name, help=helptext, epilog=_EXAMPLES[name], formatter_class=fmt)
        p.add_argument("spec", nargs="?", help="alexnet, lenet5, or a spec string "
                       "(or use --model/--net)")
        p.add_argument("--input-shape", help="C,H,W for a spec string, e.g. 3,224,224")
        if name == "receptive-field":
            p.add_argument("--stage", help="stage name (default: the last conv or pool)")
            p.add_argument("--at", help="output position row,col (default: the centre)")
        if name != "shapes":
            _out(p)
        _model_options(p)
    return top


def _stage_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("with --model/--net: which stage and where")
    g.add_argument("--stage", help="stage name, e.g. conv1")
    g.add_argument("--channel", type=int, default=0, help="output channel (default 0)")
    g.add_argument("--at", default="0,0", help="top-left output position row,col (default 0,0)")
    g.add_argument("--patch", type=int, default=3, help="output positions per side (default 3)")


# -- running -------------------------------------------------------------------------
def _matrix(text: str, what: str) -> np.ndarray:
    try:
        rows = [[float(v) for v in r.split(",")] for r in text.strip().split(";") if r.strip()]
        arr = np.array(rows, dtype=np.float64)
    except ValueError:
        arr = None
    if arr is None or arr.ndim != 2 or arr.size == 0:
        raise RenderError(f'--{what} must be rows of numbers like "1,0,1;0,1,0"; got {text!r}')
    return arr


def _pos(text: str | None, what: str = "--at") -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        r, c = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise RenderError(f"{what} must be row,col such as 120,200; got {text!r}") from None
    return r, c


def _padding(text: str):
    return text if text in ("valid", "same") else int(text) if text.isdigit() else _bad_padding(text)


def _bad_padding(text: str):
    raise RenderError(f"--padding must be a number, valid or same; got {text!r}")


def _trace(args):
    if not (getattr(args, "model", None) or getattr(args, "net", None)):
        return None
    if args.model and args.net:
        raise RenderError("give either --model or --net, not both")
    image = args.image or str(files("convlens") / "data" / "chelsea.png")
    # the same options and preprocessing as every other command
    return trace_from_args(args, load_batch(args, [image]))


def _need_stage(args, trace, kinds: tuple[str, ...]) -> str:
    if args.stage:
        return args.stage
    names = [s.name for s in trace.stages if s.kind in kinds]
    listed = ", ".join(names) if len(names) <= 8 else (
        f"{', '.join(names[:4])} ... {names[-1]} ({len(names)} in all)")
    raise RenderError(f"--stage is needed with --model/--net; {'/'.join(kinds)} stages are: "
                      f"{listed or '(none)'}")


def _source(args):
    """``(network, input shape or None)``: a Trace for --model/--net, else the spec."""
    trace = _trace(args)
    if trace is not None:
        return trace, None
    if not args.spec:
        raise RenderError("give a network: alexnet, lenet5, a spec string, --model or --net")
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3:
            raise RenderError(f"--input-shape must be C,H,W such as 3,224,224; got {args.input_shape!r}")
    elif args.image and not _is_reference(args.spec):  # a spec string sized by the image
        h, w = _user_image(args).shape[:2]
        shape = (3, h, w)
    return args.spec, shape


def _is_reference(spec: str) -> bool:
    from convlens.explain.layers import REFERENCE_SPECS

    return spec.strip().lower().replace("-", "").replace("_", "") in REFERENCE_SPECS


def _user_image(args) -> np.ndarray:
    from convlens.images import load_image

    return load_image(args.image)


def run(args: argparse.Namespace) -> int:
    """Run ``convlens explain <what>``; prints the files written; returns 0."""
    from convlens.explain import activations, architecture, conv, pool, receptive, shapes

    what = args.explain_command
    if what == "shapes":
        src, shape = _source(args)
        print(shapes.explain_shapes(src, shape))
        return 0
    out = Path(args.out)
    written: list[Path] = []
    if what in ("conv", "pool"):
        trace = _trace(args)
        if trace is not None:
            name = _need_stage(args, trace, (what,))
            fn = conv.conv_animation_from_stage if what == "conv" else pool.pool_animation_from_stage
            anim = fn(trace, name, channel=args.channel, at=_pos(args.at), size=args.patch)
            stem = f"{what}_{name}_ch{args.channel}"
        elif what == "conv":
            anim = conv.conv_animation(
                _matrix(args.input, "input") if args.input else None,
                _matrix(args.kernel, "kernel") if args.kernel else None, args.bias,
                stride=args.stride, padding=_padding(args.padding), dilation=args.dilation)
            stem = "conv"
        else:
            anim = pool.pool_animation(_matrix(args.input, "input") if args.input else None,
                                       args.pool, args.stride, _padding(args.padding), args.mode)
            stem = f"{args.mode}pool"
        written.append(anim.save_gif(out / f"{stem}.gif"))
        written += anim.save_frames(out / f"{stem}_frames", "frame")
        if args.svg:
            written.append(anim.save_svg(out / f"{stem}.svg"))
    elif what == "activations":
        written.append(activations.activation_table().save(out / "activations.png"))
        trace = _trace(args)
        if trace is not None:
            name = _need_stage(args, trace, ("activation",))
            written.append(activations.activation_histogram(trace, name).save(out / f"histogram_{name}.png"))
    elif what == "architecture":
        src, shape = _source(args)
        title = _title(src)
        written.append(architecture.architecture_diagram(src, shape, title=title).save(out / "architecture.png"))
        path = out / "architecture.svg"
        path.write_text(architecture.architecture_svg(src, shape, title=title), encoding="utf-8")
        written.append(path)
    elif what == "receptive-field":
        src, shape = _source(args)
        stage = args.stage or _last_windowed(src, shape)
        # a spec with --image: the field drawn on the user's picture (a Trace has its own)
        picture = _user_image(args) if args.image and isinstance(src, str) else None
        fig = receptive.receptive_field_figure(src, stage, _pos(args.at), image=picture,
                                               in_shape=shape)
        written.append(fig.save(out / f"receptive_field_{stage}.png"))
        written.append(receptive.receptive_field_growth_figure(src, shape, title=_title(src))
                       .save(out / "receptive_field_growth.png"))
        rf = receptive.receptive_field(src, stage, _pos(args.at), shape)
        print(f"{stage} at {rf.position}: input rows {rf.rows[0]}..{rf.rows[1]}, cols "
              f"{rf.cols[0]}..{rf.cols[1]} ({rf.size[0]}x{rf.size[1]} pixels)")
    else:  # pragma: no cover - argparse refuses unknown commands
        raise ConvlensError(f"unknown explain command {what!r}")
    for path in written:
        print(path)
    return 0


def _title(src) -> str:
    if isinstance(src, str):
        return {"alexnet": "AlexNet", "lenet5": "LeNet-5"}.get(src.strip().lower().replace("-", ""), "Architecture")
    return f"{getattr(src, 'model_name', '') or 'Architecture'}"


def _last_windowed(src, shape) -> str:
    from convlens.explain.layers import layer_infos

    infos = [i for i in layer_infos(src, shape)[1] if i.windowed]
    if not infos:
        raise RenderError("this network has no conv or pool stage; give --stage")
    return infos[-1].name
