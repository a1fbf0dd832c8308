"""Activation maximisation: synthesise the input a channel (or a class) responds to most.

Gradient ascent on the objective ``mean over positions of channel c of stage S`` (a
spatial stage), ``unit c`` (a flat stage) or ``logit c`` (``stage=None``), minus a
smoothness penalty, with the tricks that keep the picture readable (Olah et al., "Feature
Visualization", Distill 2017):

* the image is parameterised by decorrelated Fourier coefficients
  (:class:`~.imageparam.FourierImage`), not raw pixels;
* every step sees it randomly jittered, scaled and rotated (:class:`~.imageparam.Affine`),
  so only patterns that survive small moves are reinforced;
* a total-variation (``penalty="tv"``) or blur (``"blur"``) penalty of weight
  ``penalty_weight``.

Several channels are optimised together as one batch (each image its own channel).
Seeded: the same arguments give the same images.  A progress bar goes to ``progress``
(stderr by default; ``None`` for silence).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, TextIO, get_args

import numpy as np

from convlens.attribute.registry import Method, register_method
from convlens.errors import ModelError
from convlens.preprocess import Preprocess
from convlens.render.colorbar import legend
from convlens.render.figure import Figure
from convlens.render.layout import grid_layout, vstack
from convlens.render.panel import finish, header
from convlens.render.text import fmt
from convlens.render.tiles import photo_pixels, tile
from convlens.trace import nearest_names
from convlens.attribute.base import LOGITS, Subject, channel_seed, subject
from convlens.attribute.imageparam import (
    Adam, Affine, FourierImage, blur_penalty, pointwise, pointwise_adjoint, tv_penalty,
)

__all__ = ["Penalty", "PENALTIES", "Maximization", "maximize", "maximize_figure"]

Penalty = Literal["tv", "blur", "none"]
PENALTIES: tuple[str, ...] = get_args(Penalty)


@dataclass(eq=False)
class Maximization:
    """The result of :func:`maximize`.

    ``images`` ``(N, H, W, 3)`` in [0, 1], one per channel; ``start``/``final`` the
    objective (the channel's mean activation, or the logit) on the starting and on the
    final image, both untransformed; ``history`` ``(steps, N)`` the objective climbed
    (the pre-activation's, see ``pre_activation``) on the transformed images the steps saw.
    """

    images: np.ndarray
    stage: str
    channels: list[int]
    start: np.ndarray
    final: np.ndarray
    history: np.ndarray
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> np.ndarray:
        """``final - start`` per channel."""
        return self.final - self.start


def _size(sub: Subject, size: int | tuple[int, int] | None, pre: Preprocess) -> tuple[int, int]:
    if size is None:
        if sub.framework == "keras":
            from convlens.capture.keras import expected_input
            fixed = expected_input(sub.backend.model)[1]  # type: ignore[attr-defined]
            if fixed is not None:
                return fixed
        return pre.size if pre.size is not None else (128, 128)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        h = w = 0
    if h < 8 or w < 8:
        raise ModelError(f"size={size!r} is not valid; expected a side of at least 8 pixels, "
                         "e.g. 128 or (128, 128)")
    return h, w


_MONOTONE = ("relu", "relu6", "leaky_relu", "elu")


def _input_stage(sub: Subject, stage: str, chw: tuple[int, int, int]) -> str | None:
    """The stage feeding ``stage`` when ``stage`` is a ReLU-family activation of the
    same shape (the stage just before it in execution order), else None."""
    stages = sub.backend.stages(np.zeros((1, *chw), np.float32))
    names = [s.name for s in stages]
    if stage not in names:
        raise ModelError(f"no stage named {stage!r} in {sub.name}; {nearest_names(stage, names)}")
    i = names.index(stage)
    s = stages[i]
    if i == 0 or s.kind != "activation" or s.function not in _MONOTONE:
        return None
    return names[i - 1] if stages[i - 1].shape == s.shape else None


def _progress(out: TextIO | None, i: int, n: int, label: str, value: float, t0: float) -> None:
    if out is None:
        return
    done = 24 * i // n
    out.write(f"\r{label} [{'#' * done}{'-' * (24 - done)}] {i}/{n} objective {value:.3g} "
              f"{time.perf_counter() - t0:.1f}s")
    if i == n:
        out.write("\n")
    out.flush()


def maximize(
    model: Any, stage: str | None, channels: int | Sequence[int], *,
    size: int | tuple[int, int] | None = None, steps: int = 128, lr: float = 0.05,
    seed: int = 0, jitter: int = 4, zoom: tuple[float, float] = (0.95, 1.05),
    rotate: float = 5.0, penalty: Penalty = "tv", penalty_weight: float = 1.0,
    decorrelate: bool = True, decay: float = 1.0, pre_activation: bool = True,
    preprocess: Preprocess | None = None, progress: TextIO | None = sys.stderr,
) -> Maximization:
    """Images that maximise ``channels`` of ``stage`` (``None``: the class logits).

    ``size``: the side of the images (default: the model's fixed input size, the zoo
    model's input size, or 128); the per-pixel steps of the preprocessing (grey, mean/std)
    are applied to them, resizing is not.  ``steps`` of Adam with learning rate ``lr``;
    each step jitters by up to ``jitter`` pixels, zooms by a factor in ``zoom`` and
    rotates by up to ``rotate`` degrees.  Returns a :class:`Maximization`.

    ``pre_activation``: when ``stage`` is a ReLU-family activation (relu, relu6, leaky
    ReLU, ELU), climb its input instead — the stage just before it — because a channel
    that is zero everywhere has a zero gradient and would never move; ``start`` and
    ``final`` are still measured at ``stage`` itself.
    """
    if penalty not in PENALTIES:
        raise ModelError(f"unknown penalty {penalty!r}; expected one of {', '.join(PENALTIES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ModelError(f"steps={steps!r} is not valid; expected a positive integer")
    chans = [int(channels)] if isinstance(channels, (int, np.integer)) else [int(c) for c in channels]
    if not chans:
        raise ModelError("no channels to maximise; expected at least one channel index")
    sub = subject(model, preprocess)
    pre = sub.preprocess
    if pre is None:
        from convlens.capture import default_preprocess
        pre = default_preprocess(sub.backend.model, (0, 0))  # type: ignore[attr-defined]
    h, w = _size(sub, size, pre)
    target = stage if stage is not None else LOGITS
    measured = (target, channel_seed(chans))
    objective = measured
    if stage is not None and pre_activation:
        before = _input_stage(sub, stage, (pre.channels, h, w))
        if before is not None:
            objective = (before, channel_seed(chans))
    rng = np.random.default_rng(seed)
    image = FourierImage(len(chans), h, w, rng, decay=decay, decorrelate=decorrelate)
    opt = Adam(lr)

    def measure(img: np.ndarray) -> np.ndarray:
        p = sub.backend.run(pointwise(pre, img).astype(np.float32), objective=measured,
                            stop_early=True)
        return np.asarray(p.objective)

    start = measure(image.image())
    history = np.zeros((steps, len(chans)))
    label = f"maximising {stage or 'class'} {','.join(map(str, chans[:4]))}" + \
        ("..." if len(chans) > 4 else "")
    t0 = time.perf_counter()
    for i in range(steps):
        img = image.image()
        t = Affine.random(h, w, rng, jitter, zoom, rotate)
        x = pointwise(pre, t.apply(img))
        p = sub.backend.run(x.astype(np.float32), objective=objective, input_grad=True,
                            stop_early=True)
        gx = p.grads.get("input")
        if gx is None:
            raise ModelError(f"stage {stage!r} does not depend on the input of {sub.name}")
        g_img = t.adjoint(pointwise_adjoint(pre, gx.astype(np.float64)))
        if penalty != "none" and penalty_weight:
            _, gp = (tv_penalty if penalty == "tv" else blur_penalty)(img)
            g_img = g_img - penalty_weight * gp
        opt.step(image.params, image.backward(g_img))
        history[i] = p.objective  # type: ignore[assignment]
        _progress(progress, i + 1, steps, label, float(np.mean(p.objective)), t0)
    final_img = image.image()
    final = measure(final_img)
    return Maximization(
        images=np.ascontiguousarray(final_img.transpose(0, 2, 3, 1), dtype=np.float32),
        stage=stage or "class", channels=chans, start=start, final=final, history=history,
        seconds=time.perf_counter() - t0,
        settings=dict(size=(h, w), steps=steps, lr=lr, seed=seed, jitter=jitter, zoom=tuple(zoom),
                      rotate=rotate, penalty=penalty, penalty_weight=penalty_weight,
                      decorrelate=decorrelate, decay=decay),
    )


def maximize_figure(result: Maximization, size: int = 160, cols: int = 6) -> Figure:
    """The synthesised images in a grid, each labelled with its channel and the objective
    on the grey-ish start image and on the final image."""
    cells = []
    for k, c in enumerate(result.channels):
        body = tile(photo_pixels(result.images[k]), {"channel": c, "start": float(result.start[k]),
                                                     "final": float(result.final[k])}, box=size)
        lines = [f"{'class' if result.stage == 'class' else 'channel'} {c}",
                 f"{fmt(result.start[k])} -> {fmt(result.final[k])}"]
        cells.append(vstack([body, legend(lines, body.width)], gap=2))
    body = grid_layout(cells, cols, gap=8)
    st = result.settings
    what = "class logits" if result.stage == "class" else f"mean of each channel of {result.stage}"
    sub = (f"maximising the {what} (start -> final, on the untransformed images); "
           f"{st['steps']} steps, {st['size'][0]}x{st['size'][1]}, seed {st['seed']}, "
           f"{st['penalty']} penalty {st['penalty_weight']:g}, jitter {st['jitter']} px, "
           f"rotate ±{st['rotate']:g}°".replace("°", " deg"))
    top = header(f"Activation maximisation: {result.stage}", sub, max(body.width, 320))
    return finish(vstack([top, body], gap=8), {
        "view": "maximize", "stage": result.stage, "channels": result.channels,
        "start": [float(v) for v in result.start], "final": [float(v) for v in result.final]})


register_method(Method("maximize", "Activation maximisation", "channel", maximize))
