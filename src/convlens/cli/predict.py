"""``convlens predict IMAGE... --model zoo:efficientnet-lite0 [--top 5]``: what a
classifier sees in each image, as its top classes with probabilities.

Zoo models use :func:`convlens.nets.zoo.predict` (each image gets the model's own
preprocessing, LeNet's automatic inversion included).  A model file (``.keras``,
TorchScript) is captured and read with :meth:`convlens.Trace.predictions`: its last
stage must be a softmax (or dense logits); ``--labels FILE`` names the classes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from convlens.cli.common import FORMATTER, add_network, add_out, model_options, preprocess_from_args, write_text
from convlens.errors import ModelError

__all__ = ["add_parser", "run"]

_EXAMPLES = """examples:
  convlens predict cat.jpg                                  # zoo:efficientnet-lite0, top 5
  convlens predict cat.jpg dog.jpg --model zoo:efficientnet-lite0 --top 3
  convlens predict digit.png --model zoo:lenet --format json
  convlens predict photo.png --model my_model.keras --labels classes.txt
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="a classifier's top classes (with probabilities) for each image",
        description="Print the top classes of a classifier for each image.",
        epilog=_EXAMPLES, formatter_class=FORMATTER)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    add_network(p, net=False, model_default="zoo:efficientnet-lite0", seed=False)
    p.add_argument("--top", type=int, default=5, help="how many classes (default: %(default)s)")
    p.add_argument("--labels", metavar="FILE",
                   help="class names, one a line in class order (for model files)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_out(p, folder=False, help="write to FILE instead of the screen")
    return p


def _labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the class names ({exc.strerror}); expected a "
                         "text file with one class name a line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def predict_files(images: list[str], model: str, top: int = 5, backend: str = "torch",
                  labels: list[str] | None = None, preprocess: dict | None = None,
                  **load: object) -> list[list]:
    """Per image file, its ``top`` predictions (``Prediction(index, name, probability)``),
    each image with the model's own preprocessing (the same :func:`convlens.pipeline.
    choose_preprocess` that ``run`` and ``attribute`` apply) unless ``preprocess`` changes it."""
    from convlens.images import load_image

    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ModelError(f"--top {top!r} is not valid; expected a positive integer")
    pictures = [load_image(p) for p in images]
    if model.startswith("zoo:") and labels is None and not preprocess and not any(load.values()):
        from convlens.nets import zoo

        zm = zoo.load(model, backend=backend)  # type: ignore[arg-type]
        return zoo.predict(zm, pictures, top=top)
    from convlens.capture import capture
    from convlens.capture.files import load_model
    from convlens.pipeline import choose_preprocess

    loaded = load_model(model, backend=backend, **load)  # type: ignore[arg-type]
    names = labels if labels is not None else loaded.class_names
    out = []
    for pic in pictures:
        pre = choose_preprocess(loaded.preprocess, preprocess, pic[None], loaded)
        trace = capture(loaded.model, pic, preprocess=pre, name=loaded.name)
        out.append(trace.predictions(top, names)[0])
    return out


def run(args: argparse.Namespace) -> int:
    preds = predict_files(list(args.images), args.model, args.top, args.backend,
                          _labels(args.labels), preprocess_from_args(args), **model_options(args))
    if args.format == "json":
        rows = [{"image": str(path), "model": args.model,
                 "top": [{"rank": r, "index": p.index, "name": p.name,
                          "probability": p.probability} for r, p in enumerate(ps, 1)]}
                for path, ps in zip(args.images, preds)]
        return write_text(json.dumps(rows, indent=2) + "\n", args.out, "predictions")
    lines = []
    for k, (path, ps) in enumerate(zip(args.images, preds)):
        if k:
            lines.append("")
        lines.append(f"{path}  ({args.model}, top {len(ps)})")
        for r, p in enumerate(ps, 1):
            bar = "#" * int(round(p.probability * 20))
            lines.append(f"  {r:>2}. {p.probability:7.4f}  {bar:<20}  {p.name} ({p.index})")
    return write_text("\n".join(lines) + "\n", args.out, "predictions")
