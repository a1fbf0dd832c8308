"""What every command shares, declared once: the one-line-error parser with "did you
mean", the network options (``--model``/``--net``/``--backend``/``--seed``), ``-o/--out``,
``--layers``, the image options (``--size``, ``--max-size``) and how they become a Trace.

``-o/--out`` means the same everywhere: where the command writes its result — a folder for
commands that write several files (run, demo, attribute, explain), a file for those that
write one (report, compare, stats, predict).
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from convlens.errors import ConvlensError, ImageError, did_you_mean

__all__ = ["Parser", "add_network", "add_preprocess", "preprocess_from_args", "model_options", "add_out", "add_layers", "add_images", "parse_size",
           "load_batch", "trace_from_args", "did_you_mean", "FORMATTER"]

FORMATTER = argparse.RawDescriptionHelpFormatter


_INVALID = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit status 2), with the nearest choice."""

    def error(self, message: str) -> None:  # type: ignore[override]
        m = _INVALID.search(message)
        if m:
            choices = [c.strip().strip("'") for c in m.group(2).split(",")]
            message = (f"{m.group(1)!r} is not one of {', '.join(choices)}"
                       f"{did_you_mean(m.group(1), choices)}")
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def add_network(p: argparse.ArgumentParser, *, required: bool = True, net: bool = True,
                trace: bool = False, model_default: str | None = None, backend: bool = True,
                seed: bool = True, preprocess: bool = True,
                seed_help: str = "weight seed for --net (default: %(default)s)") -> None:
    """``--model`` (a file or ``zoo:NAME``), ``--net SPEC`` (a toy network), optionally
    ``--trace NPZ``; ``--backend`` and ``--seed``."""
    from convlens.capture.adapters import adapters

    files = ", ".join(s for a in adapters() for s in a.suffixes)
    g = p.add_argument_group("the network")
    ex = g.add_mutually_exclusive_group(required=required and model_default is None)
    ex.add_argument("--model", metavar="FILE|zoo:NAME", default=model_default,
                    help=f"a model file ({files}), zoo:NAME, or MODULE:CALLABLE with --weights; "
                         "see 'convlens models'" + (" (default: %(default)s)" if model_default else ""))
    if net:
        ex.add_argument("--net", metavar="SPEC",
                        help='a toy network with seeded weights, e.g. "conv(3, 3x3) relu maxpool(5)"')
    if trace:
        ex.add_argument("--trace", metavar="NPZ", help="a trace saved by convlens run (trace.npz)")
    g.add_argument("--weights", metavar="FILE", help="state dict for --model MODULE:CALLABLE "
                   "(loaded with weights_only=True, strictly)")
    g.add_argument("--trust-model-code", action="store_true",
                   help="allow a pickled torch.save(model) file, which runs code from the file")
    if backend:
        g.add_argument("--backend", choices=("torch", "keras"), default="torch",
                       help="framework that builds --net or a zoo model (default: %(default)s)")
    if seed:
        g.add_argument("--seed", type=int, default=0, help=seed_help)
    if preprocess:
        add_preprocess(p)


def add_preprocess(p: argparse.ArgumentParser) -> None:
    """How images become the model's input; by default the model's own (a zoo model's,
    or what its declared input needs).  Printed in the journey caption and the report."""
    from convlens.preprocess import PRESETS, SCALES

    g = p.add_argument_group("preprocessing (default: the model's own)")
    g.add_argument("--preprocess", metavar="PRESET", choices=tuple(PRESETS),
                   help=f"a named preset: {', '.join(PRESETS)} (imagenet: mean/std in 0..1; "
                        "keras-mobilenet: -1..1; caffe: BGR, 0..255, mean subtracted)")
    g.add_argument("--size", metavar="HxW", help="resize to HxW (the model's input size)")
    g.add_argument("--scale", choices=tuple(SCALES), metavar="RANGE",
                   help=f"the input range the model was trained on: {', '.join(SCALES)} "
                        "(write --scale=-1..1)")
    g.add_argument("--mean", metavar="M[,M,M]", help="subtract per channel (after --scale)")
    g.add_argument("--std", metavar="S[,S,S]", help="divide per channel (after --mean)")
    g.add_argument("--gray", action="store_true", default=None, help="one grey channel (luma)")
    g.add_argument("--bgr", action="store_true", default=None, help="reverse the channel order")


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConvlensError(f"{flag} must be numbers separated by commas, like "
                            f"0.485,0.456,0.406; got {text!r}") from None
    return values


def preprocess_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The preprocessing changes given on the command line (``None``: the model's own)."""
    from convlens.preprocess import SCALES

    out: dict[str, Any] = {}
    if getattr(args, "preprocess", None):
        out["preset"] = args.preprocess
    if getattr(args, "scale", None):
        out.update(SCALES[args.scale])
    if getattr(args, "size", None):
        out["size"] = parse_size(args.size)
    if getattr(args, "mean", None):
        out["mean"] = _numbers(args.mean, "--mean")
    if getattr(args, "std", None):
        out["std"] = _numbers(args.std, "--std")
    if getattr(args, "gray", None):
        out["grayscale"] = True
    if getattr(args, "bgr", None):
        out["bgr"] = True
    return out or None


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """What :func:`convlens.capture.files.load_model` takes from the command line."""
    return {"weights": getattr(args, "weights", None),
            "trust_model_code": bool(getattr(args, "trust_model_code", False))}


def add_out(p: argparse.ArgumentParser, *, folder: bool, default: str | None = None,
            required: bool = False, help: str | None = None) -> None:
    what = "output folder" if folder else "output file"
    text = help or what
    if default is not None:
        text += " (default: %(default)s)"
    p.add_argument("-o", "--out", metavar="DIR" if folder else "FILE", default=default,
                   required=required and default is None, help=text)


def add_layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", metavar="SEL", help="keep only these stages: names, kinds or "
                   "globs, comma-separated (e.g. conv,pool or 'block1*')")


def add_images(p: argparse.ArgumentParser, *, nargs: str = "+",
               help: str = "image files (PNG, JPEG, ...)") -> None:
    p.add_argument("images", nargs=nargs, metavar="IMAGE", help=help)
    p.add_argument("--max-size", type=int, metavar="PX", default=None,
                   help="shrink larger images so the longer side is PX pixels (aspect kept)")


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]
        h, w = parts if len(parts) == 2 else (parts[0], parts[0]) if len(parts) == 1 else (0, -1)
        if w < 0:
            raise ValueError
    except ValueError:
        raise ConvlensError(f"--size must look like 224x224 (or 224 for a square); got "
                            f"{text!r}") from None
    if h < 1 or w < 1:
        raise ConvlensError(f"--size must be positive, like 224x224; got {text!r}")
    return h, w


def load_batch(args: argparse.Namespace, images: Any = None) -> Any:
    """The images of the command line as one batch, after ``--size`` / ``--max-size``."""
    from convlens.images import as_batch, load_image

    paths = list(images if images is not None else args.images)
    max_size = getattr(args, "max_size", None)
    if max_size is not None and max_size < 1:
        raise ConvlensError(f"--max-size {max_size} is not valid; expected a positive number "
                            "of pixels, e.g. 1024")
    pictures = [shrink(p, max_size) if hasattr(p, "shape") else load_image(p, max_size=max_size)
                for p in paths] if max_size else paths
    size = parse_size(getattr(args, "size", None))
    try:
        return as_batch(pictures)
    except ImageError:
        if size is None:
            raise
        return as_batch(pictures, size=size)  # different sizes: --size makes them one


def shrink(image: Any, max_size: int) -> Any:
    """``image`` with its longer side at most ``max_size`` pixels (aspect kept)."""
    from convlens.images import resize

    h, w = image.shape[:2]
    if max(h, w) <= max_size:
        return image
    k = max_size / max(h, w)
    return resize(image, (max(1, round(h * k)), max(1, round(w * k))))


BIG_PIXELS = 2048 * 2048
"""Images larger than this (4.2 MP) get a one-line estimate before the capture."""
PROBE_SIDE = 128


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GB" if n >= 2 ** 30 else f"{n / 2 ** 20:.0f} MB"


def estimate_bytes(args: argparse.Namespace, batch: Any) -> int | None:
    """What capturing ``batch`` will hold, measured on a copy shrunk to a 128-pixel side
    and scaled by the area; ``None`` when the model resizes its input to a fixed size
    (then the size of the image barely matters)."""
    b, h, w = batch.shape[:3]
    probe = shrink(batch[0], PROBE_SIDE)[None]
    small = _capture(args, probe)
    ph, pw = probe.shape[1:3]
    if small.model_input is not None and tuple(small.model_input.shape[2:]) != (ph, pw):
        return None
    per = small.nbytes - small.input.nbytes
    return int(per * (h * w) / (ph * pw) * b + batch.nbytes)


def announce_size(args: argparse.Namespace, batch: Any) -> None:
    """Before heavy work on a big image, say how big and what it will take."""
    b, h, w = batch.shape[:3]
    if h * w <= BIG_PIXELS:
        return
    total = estimate_bytes(args, batch)
    if total is None:
        return
    side = 1024
    k = min(1.0, side / max(h, w)) ** 2
    sys.stderr.write(
        f"convlens: {b} image{'s' if b > 1 else ''} of {h}x{w} ({h * w / 1e6:.1f} MP): every "
        f"stage at this size takes about {_gib(total)} in memory (and in trace.npz); "
        f"--max-size {side} would make it about {_gib(total * k)}\n")


def _capture(args: argparse.Namespace, batch: Any, **extra: Any) -> Any:
    from convlens.pipeline import make_trace

    return make_trace(batch, net=getattr(args, "net", None), model=getattr(args, "model", None),
                      backend=getattr(args, "backend", "torch"), seed=getattr(args, "seed", 0),
                      layers=getattr(args, "layers", None),
                      preprocess=preprocess_from_args(args), **model_options(args), **extra)


def progress(text: str) -> None:
    """One status line on stderr, rewritten in place."""
    sys.stderr.write(f"\r{text}")
    sys.stderr.flush()


def write_text(text: str, out: str | None, what: str) -> int:
    """Print ``text``, or write it to ``out`` and say so; returns exit status 0."""
    if not out:
        sys.stdout.write(text)
        return 0
    from pathlib import Path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {what} to {path}")
    return 0


def trace_from_args(args: argparse.Namespace, batch: Any, **extra: Any) -> Any:
    """Capture ``batch`` through the command line's network (``--model`` or ``--net``),
    first saying what a big image will take."""
    announce_size(args, batch)
    return _capture(args, batch, **extra)
