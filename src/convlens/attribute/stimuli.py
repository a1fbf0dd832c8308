"""Top stimuli: where in the images one channel of a stage fires most.

The channel's map is read from a :func:`convlens.capture` of the images; its ``k``
largest values (no two within ``min_distance`` positions of each other in the same
image, so the list is not one peak and its neighbours) are traced back to the input with
:func:`convlens.explain.receptive.receptive_field` — the exact window arithmetic of every
conv and pool in between — and drawn as boxes on the images and as crops.  Boxes are
in the coordinates of the images as given (scaled back when the preprocessing resized
them) and clipped to the image; the receptive field is every pixel that *can* change the
value, not only the pixels that did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from convlens.capture import capture
from convlens.attribute.registry import Method, register_method
from convlens.errors import ModelError
from convlens.explain.receptive import receptive_field
from convlens.preprocess import Preprocess
from convlens.render.colorbar import legend
from convlens.render.figure import Figure
from convlens.render.layout import grid_layout, hstack, vstack
from convlens.render.panel import finish, header
from convlens.render.text import fmt
from convlens.render.tiles import photo_pixels, tile
from convlens.trace import Trace
from convlens.attribute.base import subject

__all__ = ["Stimulus", "TopStimuli", "top_stimuli", "stimuli_figure"]

_COLORS = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#a259ff", "#ff6fb5", "#2e86de",
           "#f29e4c"]


@dataclass(frozen=True)
class Stimulus:
    """One strong response: image ``image``, stage position ``position`` (row, col),
    ``value``; ``box`` ``(top, left, bottom, right)`` (inclusive) in the image's pixels;
    ``crop`` those pixels."""

    image: int
    position: tuple[int, int]
    value: float
    box: tuple[int, int, int, int]
    crop: np.ndarray


@dataclass(eq=False)
class TopStimuli:
    stage: str
    channel: int
    items: list[Stimulus]
    images: np.ndarray
    field_size: tuple[int, int]
    """Receptive field (rows, cols) of one position, in model-input pixels, unclipped."""
    jump: tuple[int, int]
    """Model-input pixels between neighbouring positions of the stage."""
    model_name: str


def _peaks(m: np.ndarray, k: int, min_distance: int) -> list[tuple[int, int, int]]:
    """``(image, row, col)`` of the ``k`` largest values, greedily, none within
    ``min_distance`` (Chebyshev) of an earlier one in the same image; ties in index order."""
    order = np.argsort(-m.ravel(), kind="stable")
    taken: list[tuple[int, int, int]] = []
    b, h, w = m.shape
    for flat in order:
        i, rc = divmod(int(flat), h * w)
        r, c = divmod(rc, w)
        if any(j == i and max(abs(r - y), abs(c - x)) <= min_distance for j, y, x in taken):
            continue
        taken.append((i, r, c))
        if len(taken) == k:
            break
    return taken


def top_stimuli(model: Any, images: Any, stage: str, channel: int, k: int = 8, *,
                min_distance: int = 1, preprocess: Preprocess | None = None) -> TopStimuli:
    """The ``k`` image regions where ``channel`` of ``stage`` responds most.

    ``model``: a model (torch, Keras, zoo, loaded) — or a :class:`~convlens.Trace` already
    captured, with ``images=None``.  ``min_distance``: peaks closer than this many stage
    positions (in the same image) to a stronger one are skipped.
    """
    if isinstance(model, Trace):
        if images is not None:
            raise ModelError("top_stimuli got a Trace and images; a Trace brings its own images "
                             "— pass images=None")
        trace, name = model, model.model_name
    else:
        sub = subject(model, preprocess)
        trace = capture(sub.backend.model, images, preprocess=sub.preprocess)  # type: ignore[attr-defined]
        name = sub.name
    st = trace[stage]
    if not st.is_spatial:
        spatial = [s.name for s in trace.stages if s.is_spatial]
        raise ModelError(f"stage {stage!r} is {st.shape_str}, not a spatial map; top stimuli "
                         f"need one of: {', '.join(spatial)}")
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) \
            or not 0 <= channel < st.channels:
        raise ModelError(f"channel {channel!r} is out of range; {stage} has {st.channels} "
                         f"channels (0..{st.channels - 1})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ModelError(f"k={k!r} is not valid; expected a positive integer")
    m = st.output[:, int(channel)].astype(np.float64)
    ih, iw = trace.input.shape[1:3]
    mh, mw = (trace.model_input.shape[2:] if trace.model_input is not None else (ih, iw))
    sy, sx = ih / mh, iw / mw
    items = []
    rf = None
    for i, r, c in _peaks(m, int(k), int(min_distance)):
        rf = receptive_field(trace, stage, (r, c))
        (r0, r1), (c0, c1) = rf.clipped
        top, bottom = int(np.floor(r0 * sy)), min(ih - 1, int(np.ceil((r1 + 1) * sy)) - 1)
        left, right = int(np.floor(c0 * sx)), min(iw - 1, int(np.ceil((c1 + 1) * sx)) - 1)
        crop = np.array(trace.input[i, top:bottom + 1, left:right + 1])
        items.append(Stimulus(i, (r, c), float(m[i, r, c]), (top, left, bottom, right), crop))
    if rf is None:
        raise ModelError(f"stage {stage!r} has an empty map; nothing to rank")
    return TopStimuli(stage, int(channel), items, trace.input, rf.size, rf.jump, name)


def stimuli_figure(ts: TopStimuli, size: int = 300, crop_px: int = 96) -> Figure:
    """Each image with its numbered boxes, then the crops, strongest first."""
    panels = []
    for i in sorted({s.image for s in ts.items}):
        img = Image.fromarray(photo_pixels(ts.images[i]))
        scale = min(size / img.width, size / img.height, 4.0)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(img)
        for n, s in enumerate(ts.items):
            if s.image != i:
                continue
            t, l, b, r = s.box
            col = _COLORS[n % len(_COLORS)]
            draw.rectangle([l * scale, t * scale, (r + 1) * scale - 1, (b + 1) * scale - 1],
                           outline=col, width=2)
            if (r + 1 - l) * scale >= 24:  # a label only where it fits inside the box
                draw.text((l * scale + 3, t * scale + 2), f"#{n + 1}", fill=col)
        panels.append(vstack([tile(np.asarray(img), {"image": i, "view": "boxes"}),
                              legend([f"image {i}"], img.width + 2)], gap=2))
    crops = []
    for n, s in enumerate(ts.items):
        body = tile(photo_pixels(s.crop), {"rank": n + 1, "image": s.image, "value": s.value,
                                           "position": s.position}, box=crop_px)
        crops.append(vstack([body, legend([f"#{n + 1} image {s.image}", f"at {s.position}: "
                                           f"{fmt(s.value)}"], crop_px + 2)], gap=2))
    body = vstack([hstack(panels, gap=10), grid_layout(crops, 8, gap=8)], gap=12)
    sub = (f"{len(ts.items)} strongest positions; boxes are receptive fields of "
           f"{ts.field_size[0]}x{ts.field_size[1]} model-input pixels (clipped to the image), "
           f"{ts.jump[0]}x{ts.jump[1]} apart")
    top = header(f"Top stimuli of {ts.stage}, channel {ts.channel} · {ts.model_name}", sub,
                 max(body.width, 320))
    return finish(vstack([top, body], gap=8), {
        "view": "top_stimuli", "stage": ts.stage, "channel": ts.channel,
        "items": [{"image": s.image, "position": s.position, "value": s.value,
                   "rect": s.box} for s in ts.items]})


register_method(Method("stimuli", "Top stimuli", "channel", top_stimuli))
