"""A flat stage ``(N,)`` as a bar chart over a 1-D colour strip, with its values stated.

Bars grow from the scale's baseline (0, or the mean when standardised).  When there
are more values than pixel columns, each column shows the lowest and the highest
value of its bin (an envelope), so no spike is dropped.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from convlens.render.layout import Block, hstack, pad, vstack
from convlens.render.scale import Scale
from convlens.render.text import INK, MUTED, SMALL, font, line_height, text_image, text_width, fmt

__all__ = ["bar_chart"]

AXIS = (170, 170, 170)
BAR = (70, 70, 70)
"""Bars are one neutral ink (their height is the value); the strip under them carries the
colour scale, so values near the diverging map's white centre stay visible."""


def _columns(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per-column (min, max), pixels per value and values per column."""
    n = values.size
    if n <= width:
        return values, values, max(1, width // n), 1
    per_col = math.ceil(n / width)
    cols = math.ceil(n / per_col)
    padded = np.full(cols * per_col, np.nan)
    padded[:n] = values
    padded = padded.reshape(cols, per_col)
    with warnings.catch_warnings():  # all-NaN bins are fine: they draw nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(padded, axis=1), np.nanmax(padded, axis=1), 1, per_col


def bar_chart(
    values: np.ndarray, scale: Scale, width: int = 480, height: int = 120, strip: int = 8,
    record: dict[str, Any] | None = None, annotate: bool = True,
) -> Block:
    """Bars of ``values`` about ``width`` px wide and ``height`` px high on ``scale``.

    The record gets ``box`` (the plot area), ``strip_box`` (the colour strip),
    ``px_per_value`` and ``values_per_column``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    cmin, cmax, px, per_col = _columns(v, max(8, int(width)))
    ncol = cmin.size
    h = max(16, int(height))

    u_lo, u_hi = scale.to_unit(cmin), scale.to_unit(cmax)
    u_base = float(scale.to_unit(np.array(scale.center)))
    y = lambda u: np.rint((1.0 - np.nan_to_num(u, nan=u_base)) * (h - 1)).astype(np.int64)  # noqa: E731
    yb = int(y(np.array(u_base)))
    top = np.minimum(y(u_hi), yb)
    bottom = np.maximum(y(u_lo), yb)
    rows = np.arange(h)[:, None]
    mask = (rows >= top[None, :]) & (rows <= bottom[None, :])
    # each strip column's colour: its value farthest from the baseline
    far = np.where(np.abs(cmax - scale.center) >= np.abs(cmin - scale.center), cmax, cmin)
    colours = scale.colorize(far)  # (ncol, 3)
    plot = np.full((h, ncol, 3), 255, dtype=np.uint8)
    plot[yb, :] = AXIS
    plot[mask] = BAR
    plot = np.repeat(plot, px, axis=1)
    if px >= 4:  # a white gap between wide bars so neighbours stay distinguishable
        gap = plot[:, px - 1::px]
        gap[np.all(gap == BAR, axis=-1)] = 255
    strip_px = np.repeat(np.broadcast_to(colours[None], (max(1, strip), ncol, 3)), px, axis=1)

    # y labels (vmax top, vmin bottom, then the baseline) in a left gutter
    ticks = [(0, fmt(scale.vmax)), (h - 1, fmt(scale.vmin)), (yb, fmt(scale.center))]
    if scale.vmin == scale.vmax:
        ticks = [(yb, f"constant {fmt(scale.vmin)}")]
    lh = line_height(SMALL)
    half = lh // 2
    gutter = max(text_width(t, SMALL) for _, t in ticks) + 6
    left = Image.new("RGB", (gutter, h + lh), (255, 255, 255))
    d = ImageDraw.Draw(left)
    placed: list[int] = []
    for ty, text in ticks:  # plot row ty sits at gutter row ty + half: centre the text on it
        if any(abs(ty - p) < lh for p in placed):
            continue
        placed.append(ty)
        d.text((gutter - 5 - text_width(text, SMALL), ty), text, font=font(SMALL), fill=INK)
        d.line([gutter - 3, ty + half, gutter - 1, ty + half], fill=INK)
    plot_img = Image.fromarray(np.ascontiguousarray(plot))
    pw = plot_img.width
    rec = dict(record or {})
    rec.update(px_per_value=px, values_per_column=per_col)
    # a 1-px frame around (never over) the plot area
    plot_block = pad(Block(plot_img, [dict(rec, box=(0, 0, pw, h))]), 1, half, 1, lh - half)
    ImageDraw.Draw(plot_block.image).rectangle([0, half - 1, pw + 1, half + h], outline=AXIS)
    chart = hstack([Block(left), plot_block])
    strip_img = Image.fromarray(np.ascontiguousarray(strip_px))
    strip_block = pad(Block(strip_img), left=gutter + 1, top=2)
    x_labels = Image.new("RGB", (gutter + pw + 2, lh), (255, 255, 255))
    dx = ImageDraw.Draw(x_labels)
    dx.text((gutter + 1, 0), "0", font=font(SMALL), fill=MUTED)
    last = str(n - 1)
    dx.text((gutter + 1 + pw - text_width(last, SMALL), 0), last, font=font(SMALL), fill=MUTED)
    parts: list[Block | Image.Image] = [chart, strip_block, x_labels]
    if annotate and n:
        finite = np.isfinite(v)
        if finite.any():
            hi_i = int(np.nanargmax(np.where(finite, v, -np.inf)))
            lo_i = int(np.nanargmin(np.where(finite, v, np.inf)))
            notes = [f"max {fmt(v[hi_i])} at #{hi_i}", f"min {fmt(v[lo_i])} at #{lo_i}"]
        else:
            notes = ["no finite values"]
        full = gutter + pw + 2
        if text_width(" · ".join(notes), SMALL) <= full:
            notes = [" · ".join(notes)]
        parts.extend(text_image(t, SMALL, MUTED, width=full) for t in notes)
        rec_notes = [" · ".join(notes)]
    else:
        rec_notes = []
    out = vstack(parts, gap=1)
    # the strip sits right under the chart: record where, for tests and hit-testing
    (x0, _, x1, y1) = out.records[0]["box"]
    sy = chart.height + 1 + 2
    out.records[0]["strip_box"] = (x0, sy, x1, sy + strip_img.height)
    out.records[0]["notes"] = rec_notes
    return out
