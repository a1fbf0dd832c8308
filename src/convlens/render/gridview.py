"""``grid()``: every channel of a spatial stage as a tile labelled with its index."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from ..trace import Stage, Trace
from .colorbar import colorbar
from .colormaps import CmapName
from .figure import Figure
from .layout import Block, zoom_factor
from .mosaic import Mosaic, blank
from .panel import header, stage_record
from .resolve import (
    as_stage, channel_scales, check_channels, check_image, check_int, check_options,
    require_spatial,
)
from .scale import NORM_LABELS, Norm
from .scaleset import ScaleSet
from .text import fmt

_MARGIN = 10

__all__ = ["grid"]


def grid(
    stage: Stage | Trace,
    image: int = 0,
    norm: Norm = "map",
    channels: Sequence[int] | None = None,
    max_channels: int | None = None,
    cols: int | None = None,
    cmap: CmapName | None = None,
    tile: int = 96,
    vrange: tuple[float, float] | None = None,
    *,
    layer: str | int | None = None,
) -> Figure:
    """Every channel (or ``channels``, at most ``max_channels``) of one image as a tile.

    Tiles are enlarged by one integer factor (nearest neighbour) to about ``tile``
    pixels and are never shrunk.  ``norm="map"`` labels each tile with its own range;
    ``stage``/``global``/``standard`` share one colour bar (``vrange`` is the range
    ``global`` uses; without it a stage drawn alone uses its own stage range).
    """
    st = as_stage(stage, layer)
    require_spatial(st, "grid")
    i = check_image(st, image)
    norm, cmap = check_options(norm, cmap)
    chs = check_channels(st, channels, max_channels)
    ncols = math.ceil(math.sqrt(len(chs))) if cols is None else check_int(cols, "cols", 1)
    tile = check_int(tile, "tile", 8)
    x = st.output[i]
    _, _, h, w = st.output.shape
    zoom = zoom_factor(h, w, tile)
    maps = x[chs] if chs != list(range(st.channels)) else x
    if norm == "map":
        scales = None
        sset = ScaleSet.per_map(maps, cmap)
    else:
        scales = channel_scales(st, i, norm, chs, cmap, vrange)
        sset = ScaleSet.from_scales(scales)
    labels = [[f"#{c}"] for c in chs]
    if norm == "map":
        for lab, d in zip(labels, sset.describe()):
            lab.append(d)
    elif norm == "standard":
        for lab, s in zip(labels, scales):  # type: ignore[arg-type]
            lab += [f"mean {fmt(s.mean or 0.0)}", f"sd {fmt(s.std or 0.0)}"]
    body = Mosaic(maps, chs, sset, labels, zoom, ncols, sset.metas())

    rec = stage_record(st, i, norm, "grid")
    shown = f"channels {len(chs)} of {st.channels}" if len(chs) < st.channels else f"{st.channels} channels"
    sub = f"{st.kind} · {st.op} · {st.shape_str} · {shown} · image {i} · {NORM_LABELS[norm]}"
    head = header(st.name, sub, max(body.width, 360))
    bar_labels: list[str] = []
    bar = None
    if scales is not None:
        length = min(max(body.width, 160), 420)
        if norm == "standard":
            bar, bar_labels = colorbar(scales[0], length, sigma_units=True,
                                       caption=f"each map standardised: (x - mean) / sd · {scales[0].cmap}")
        else:
            s = scales[0]
            bar, bar_labels = colorbar(s, length, caption=f"{NORM_LABELS[norm]} · {s.cmap}")
            rec.update({k: v for k, v in s.as_meta().items() if k in ("vmin", "vmax", "cmap", "signed",
                                                                       "constant")})
    rec.update(labels=bar_labels, channels=chs, zoom=zoom)
    return _assemble(head, body, bar, rec)


def _assemble(head: Block, body: Mosaic, bar: Block | None, rec: dict) -> Figure:
    """What ``finish(wrap(vstack([head, body, bar], gap=6), rec), {"view": "grid"})``
    gives, drawn into one array: the tiles are drawn in place, their records made once."""
    m = _MARGIN
    parts: list[Block | Mosaic] = [head, body] + ([bar] if bar is not None else [])
    width = max(p.width for p in parts)
    height = sum(p.height for p in parts) + 6 * (len(parts) - 1)
    canvas = blank(height + 2 * m, width + 2 * m)
    y = m
    for p in parts:
        if isinstance(p, Mosaic):
            tiles = p.draw(canvas, m, y)
        else:
            canvas[y:y + p.height, m:m + p.width] = np.asarray(p.image.convert("RGB"))
        y += p.height + 6
    panel = dict(rec, tiles=tiles, box=(m, m, m + width, m + height))
    return Figure(Image.fromarray(canvas), {"view": "grid", "panels": [panel]})
