"""``convlens attribute IMAGE... --model M [--method ...] -o DIR``.

The main CLI calls :func:`add_parser` with its sub-parsers and dispatches to :func:`run`.
User errors are raised as ``ConvlensError`` (one line) for the main CLI to print.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convlens.cli.common import (
    FORMATTER, add_images, add_network, add_out, load_batch, model_options, parse_size, preprocess_from_args,
)
from convlens.errors import ConvlensError

__all__ = ["add_parser", "run", "method_choices"]


def method_choices() -> tuple[str, ...]:
    """``--method`` choices: every registered attribution method, maps first."""
    from convlens.attribute import methods

    return tuple(m.name for m in methods("cam", "gradient")) + tuple(
        m.name for m in methods("channel"))

_EXAMPLES = """examples:
  convlens attribute cat.jpg --model zoo:efficientnet-lite0 -o out/            # Grad-CAM, top class
  convlens attribute cat.jpg dog.jpg --model zoo:efficientnet-lite0 --class "tabby" -o out/
  convlens attribute cat.jpg --model zoo:efficientnet-lite0 --method layercam --stage blocks.8.add -o out/
  convlens attribute cat.jpg --model zoo:efficientnet-lite0 --method smoothgrad --samples 32 -o out/
  convlens attribute cat.jpg --model zoo:efficientnet-lite0 --sanity -o out/   # + randomisation check
  convlens attribute --model zoo:efficientnet-lite0 --method maximize --stage blocks.8.project.bn \\
      --channel 0,1,2,3 --size 128 --steps 128 -o out/
  convlens attribute cat.jpg --model zoo:efficientnet-lite0 --method stimuli --stage blocks.1.expand.act --channel 5 -o out/
  convlens attribute digit.png --model zoo:lenet --backend keras --stage conv2 -o out/

Without IMAGE the bundled cat is used.  Stage names are the ones `convlens run` lists.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``attribute`` to the main CLI's sub-parsers; returns its parser."""
    p = subparsers.add_parser(
        "attribute", help="where the network looks (Grad-CAM, saliency) and what a channel wants",
        description="Attribution maps, activation maximisation and top stimuli, for PyTorch "
                    "and Keras models.", epilog=_EXAMPLES,
        formatter_class=FORMATTER)
    add_images(p, nargs="*", help="image files (default: the cat)")
    add_network(p, net=False)
    p.add_argument("--method", choices=method_choices(), default="gradcam",
                   help="%(choices)s (default: %(default)s)")
    p.add_argument("--stage", help="stage name (default: the last spatial stage; maximize: the "
                                   "class logits)")
    p.add_argument("--class", dest="target", metavar="CLASS",
                   help="class index or name, or one per image comma-separated (default: top class)")
    p.add_argument("--channel", help="maximize / stimuli: channel(s), comma-separated")
    add_out(p, folder=True, required=True)
    p.add_argument("--steps", type=int, default=128, help="maximize: steps (default: %(default)s)")
    p.add_argument("--samples", type=int, default=25, help="smoothgrad: noisy copies "
                                                           "(default: %(default)s)")
    p.add_argument("--noise", type=float, default=0.15, help="smoothgrad: noise as a fraction of "
                                                             "the input range (default: %(default)s)")
    p.add_argument("--top", type=int, default=8, help="stimuli: how many (default: %(default)s)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the randomisation sanity check (sanity.png)")
    p.set_defaults(handler=run)
    return p


def _targets(text: str | None) -> object:
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")] if "," in text else [text.strip()]
    vals: list[object] = [int(t) if t.lstrip("-").isdigit() else t for t in parts]
    return vals if len(vals) > 1 else vals[0]


def _channels(text: str | None, method: str) -> list[int]:
    if text is None:
        raise ConvlensError(f"--method {method} needs --channel, e.g. --channel 0,1,2")
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConvlensError(f"--channel must be integers separated by commas; got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from convlens import attribute as A
    from convlens.images import cat
    from convlens.capture.files import load_model
    from convlens.pipeline import choose_preprocess
    from convlens.render.figure import save_png
    from convlens.render.tiles import photo_pixels

    out = Path(args.out)
    loaded = load_model(args.model, backend=args.backend, **model_options(args))
    images = load_batch(args) if args.images else cat()
    changes = preprocess_from_args(args)
    # the model's own preprocessing (LeNet: inverted for light digits, as predict and run
    # do) unless the command line says otherwise
    pre = choose_preprocess(loaded.preprocess, changes) if changes else None
    out.mkdir(parents=True, exist_ok=True)
    if args.method == "maximize":
        chans = _channels(args.channel, "maximize")
        res = A.maximize(loaded, args.stage, chans, size=parse_size(args.size),
                         steps=args.steps, seed=args.seed, preprocess=pre)
        A.maximize_figure(res).save(out / "maximize.png")
        for k, c in enumerate(res.channels):
            save_png(Image.fromarray(photo_pixels(res.images[k])), out / f"maximize_{c}.png")
        for c, s, f in zip(res.channels, res.start, res.final):
            print(f"{res.stage} {c}: {s:.4g} -> {f:.4g}")
        print(f"wrote maximize.png and {len(res.channels)} image(s) to {out}/ "
              f"({res.seconds:.1f} s)")
        return 0
    if args.method == "stimuli":
        if args.stage is None:
            raise ConvlensError("--method stimuli needs --stage and --channel")
        chans = _channels(args.channel, "stimuli")
        for c in chans:
            ts = A.top_stimuli(loaded, images, args.stage, c, k=args.top, preprocess=pre)
            A.stimuli_figure(ts).save(out / f"stimuli_{c}.png")
            for n, s in enumerate(ts.items, 1):
                print(f"channel {c} #{n}: image {s.image} at {s.position} value {s.value:.4g} "
                      f"box rows {s.box[0]}..{s.box[2]} cols {s.box[1]}..{s.box[3]}")
        print(f"wrote {len(chans)} stimuli figure(s) to {out}/")
        return 0
    target = _targets(args.target)
    method = A.method_named(args.method, "cam", "gradient")
    given = {"noise": args.noise, "samples": args.samples, "seed": args.seed}
    attr = method.function(loaded, images, args.stage, target, preprocess=pre,
                           **{k: given[k] for k in method.options})
    stem = args.method.replace("+", "p")
    A.overlay(attr).save(out / f"{stem}.png")
    np.savez(out / f"{stem}.npz", maps=attr.maps, targets=np.asarray(attr.targets),
             scores=attr.scores)
    (out / f"{stem}.json").write_text(json.dumps({
        "method": attr.method, "stage": attr.stage, "model": attr.model_name,
        "targets": attr.targets, "target_names": attr.target_names,
        "scores": [float(s) for s in attr.scores], "map_shape": list(attr.maps.shape[1:]),
    }, indent=2), encoding="utf-8")
    for i in range(attr.batch_size):
        print(f"image {i}: {attr.label(i)} score {attr.scores[i]:.4g}; {attr.method} at "
              f"{attr.stage}, map {attr.maps.shape[1]}x{attr.maps.shape[2]}")
    if args.sanity:
        sys.stderr.write("running the sanity check (cascading randomisation)...\n")
        method = args.method if method.deterministic else "saliency"
        rep = A.sanity(loaded, images, attr.stage if attr.stage != "input" else None,
                       attr.targets[0], method=method, seed=args.seed, preprocess=pre)
        A.sanity_figure(rep).save(out / "sanity.png")
        print(rep.summary())
    print(f"wrote {stem}.png, {stem}.npz, {stem}.json{' and sanity.png' if args.sanity else ''} "
          f"to {out}/")
    return 0
