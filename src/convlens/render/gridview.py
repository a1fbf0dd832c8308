"""``grid()``: every channel of a spatial stage as a tile labelled with its index."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from convlens.trace import Stage, Trace
from convlens.render.colorbar import colorbar, legend
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.gridplan import AUTO_TILE, AUTO_WIDTH, Labels, Plan, plan
from convlens.render.layout import Block, zoom_factor
from convlens.render.mosaic import Mosaic
from convlens.render.packed import canvas as packed_canvas, pack, to_image
from convlens.render.panel import stage_record
from convlens.render.resolve import (
    as_stage, channel_scales, check_channels, check_image, check_int, check_options,
    require_spatial,
)
from convlens.render.scale import NORM_LABELS, Norm, count_nonfinite, nonfinite_note
from convlens.render.scaleset import ScaleSet
from convlens.render.text import (
    BACKGROUND, INK, LABEL, MUTED, SMALL, TEXT_MARGIN, TITLE, fit, fmt_many, line_height,
    packed_text, text_widths, wrap_text,
)

_MARGIN = 10
_GAP = 6

__all__ = ["grid", "AUTO_TILE", "AUTO_WIDTH"]


def grid(
    stage: Stage | Trace,
    image: int = 0,
    norm: Norm = "map",
    channels: Sequence[int] | None = None,
    max_channels: int | None = None,
    cols: int | None = None,
    cmap: CmapName | None = None,
    tile: int | None = None,
    vrange: tuple[float, float] | None = None,
    *,
    layer: str | int | None = None,
) -> Figure:
    """Every channel (or ``channels``, at most ``max_channels``) of one image as a tile.

    Each map is enlarged by one integer factor (nearest neighbour: every value stays a
    block of one colour), never shrunk below its own size.  ``norm="map"`` labels each
    tile with its own range; ``stage``/``global``/``standard`` share one colour bar
    (``vrange`` is the range ``global`` uses; without it a stage drawn alone uses its own
    stage range); ``standard`` also labels each tile with its mean and sd.

    ``tile=None`` (the default) sizes the grid for a screen: the largest factor that keeps
    each map within ``AUTO_TILE`` (96) pixels and the grid within ``AUTO_WIDTH`` (1200)
    pixels, at least 1 (a tile may also grow as wide as its labels: that widens nothing),
    in ``cols`` or ``ceil(sqrt(n))`` columns.  If that grid is still wider than 1200
    pixels, the per-tile ranges are written compactly (``±1.2`` for ``-1.2 ... 1.2``,
    ``0..3.4`` for ``0 ... 3.4``, ``all 0``; ``mean±sd`` for ``standard``) with a line
    under the grid saying so, and, unless ``cols`` is given, fewer columns are used.  A
    grid that fits with 96-pixel tiles is exactly the ``tile=96`` grid.

    An explicit ``tile`` (pixels, >= 8) enlarges each map by the largest factor that
    keeps it within ``tile`` pixels (at least 1), in ``cols`` or ``ceil(sqrt(n))``
    columns, with every range written in full, however wide the grid gets.
    """
    st = as_stage(stage, layer)
    require_spatial(st, "grid")
    i = check_image(st, image)
    norm, cmap = check_options(norm, cmap)
    chs = check_channels(st, channels, max_channels)
    ncols = None if cols is None else check_int(cols, "cols", 1)
    tile_px = None if tile is None else check_int(tile, "tile", 8)
    x = st.output[i]
    _, _, h, w = st.output.shape
    maps = x[chs] if chs != list(range(st.channels)) else x
    if norm == "map":
        scales = None
        sset = ScaleSet.per_map(maps, cmap)
    else:
        scales = channel_scales(st, i, norm, chs, cmap, vrange)
        sset = ScaleSet.from_scales(scales)

    def full() -> Labels:
        return _labels(chs, sset, norm, compact=False)

    def compact() -> Labels:
        return _labels(chs, sset, norm, compact=True)

    if tile_px is None:
        layout = plan(len(chs), h, w, full, compact if norm in ("map", "standard") else None, ncols)
    else:
        sq = math.ceil(math.sqrt(len(chs)))
        layout = Plan(zoom_factor(h, w, tile_px), ncols or sq, *full(), False)
    body = Mosaic(maps, chs, sset, layout.labels, layout.zoom, layout.cols, layout.widths)

    rec = stage_record(st, i, norm, "grid")
    shown = f"channels {len(chs)} of {st.channels}" if len(chs) < st.channels else f"{st.channels} channels"
    sub = f"{st.kind} · {st.op} · {st.shape_str} · {shown} · image {i} · {NORM_LABELS[norm]}"
    head_w = max(body.width, 360)
    head = [(st.name, TITLE, INK)] + [(t, LABEL, MUTED) for t in wrap_text(sub, head_w, LABEL)]
    feet: list[Block] = []
    bar_labels: list[str] = []
    if scales is not None:
        length = min(max(body.width, 160), 420)
        if norm == "standard":
            bar, bar_labels = colorbar(scales[0], length, sigma_units=True,
                                       caption=f"each map standardised: (x - mean) / sd · {scales[0].cmap}")
        else:
            s = scales[0]
            bar, bar_labels = colorbar(s, length, caption=f"{NORM_LABELS[norm]} · {s.cmap}")
            rec.update({k: v for k, v in s.as_meta().items() if k in ("vmin", "vmax", "cmap", "signed",
                                                                       "constant", "empty")})
        feet.append(bar)
    rec.update(labels=bar_labels, channels=chs, zoom=layout.zoom)
    if layout.compact:
        note = sset.compact_key()
        feet.append(legend([note], max(body.width, 360)))
        rec["notes"] = [note]
    counts = count_nonfinite(maps)  # NaN (magenta) and inf (the end colours), named
    rec.update(nan=counts["nan"], inf=counts["inf"])
    bad = nonfinite_note(counts)
    if bad:
        feet.append(legend([bad], max(body.width, 360)))
        rec["nonfinite"] = bad
    return _assemble(head, head_w, body, feet, rec)


def _labels(chs: list[int], sset: ScaleSet, norm: Norm, compact: bool) -> Labels:
    """The label rows of the tiles -- channel numbers, then the range (``map``) or mean
    and sd (``standard``), in full or compact -- and their widths."""
    rows = [[f"#{c}" for c in chs]]
    if norm == "map":
        rows.append(sset.compact() if compact else sset.describe())
    elif norm == "standard":
        if compact:
            rows.append(sset.compact())
        else:  # standardised scales carry their means and sds
            rows.append([f"mean {m}" for m in fmt_many(np.asarray(sset.mean))])
            rows.append([f"sd {s}" for s in fmt_many(np.asarray(sset.std))])
    return rows, np.stack([text_widths(r, SMALL) for r in rows])


def _assemble(head: list[tuple[str, int, tuple[int, int, int]]], head_w: int, body: Mosaic,
              feet: list[Block], rec: dict) -> Figure:
    """The figure drawn into one packed array: the header lines (as ``panel.header``
    draws them), the tiles, then each of ``feet``, 6 pixels apart, with a 10-pixel margin
    (what ``finish(wrap(vstack([header, body, *feet], gap=6), rec), {"view": "grid"})``
    gives)."""
    m = _MARGIN
    head_h = sum(line_height(size) for _, size, _ in head) + (len(head) - 1)
    parts_h = [head_h, body.height] + [f.height for f in feet]
    width = max([head_w, body.width] + [f.width for f in feet])
    height = sum(parts_h) + _GAP * (len(parts_h) - 1)
    canvas = packed_canvas(height + 2 * m, width + 2 * m, BACKGROUND)
    y = m
    for text, size, color in head:
        lh = line_height(size)
        _stamp_packed(canvas[y:y + lh, m:m + head_w], fit(text, head_w, size), size, color)
        y += lh + 1
    y = m + head_h + _GAP
    tiles = body.draw(canvas, m, y)
    y += body.height + _GAP
    for f in feet:
        canvas[y:y + f.height, m:m + f.width] = pack(np.asarray(f.image.convert("RGB")))
        y += f.height + _GAP
    panel = dict(rec, tiles=tiles, box=(m, m, m + width, m + height))
    return Figure(to_image(canvas), {"view": "grid", "panels": [panel], "nan": rec["nan"],
                                     "inf": rec["inf"]})


def _stamp_packed(region: np.ndarray, text: str, size: int, color: tuple[int, int, int]) -> None:
    """``text`` drawn at the left edge of a white packed ``region`` (clipped to it), as
    ``text_image(text, size, color, width=region width)`` draws it: on white, the text's
    pixels are the picture's pixels."""
    arr = packed_text(text, size, color)
    h = min(region.shape[0], arr.shape[0])
    w = min(region.shape[1], arr.shape[1] - TEXT_MARGIN)
    region[:h, :w] = arr[:h, TEXT_MARGIN:TEXT_MARGIN + w]
