"""``grid()``: every channel of a spatial stage as a tile labelled with its index."""
from __future__ import annotations

import math
from typing import Sequence

from ..trace import Stage, Trace
from .colorbar import colorbar
from .colormaps import CmapName
from .figure import Figure
from .layout import Block, grid_layout, vstack, zoom_factor
from .panel import finish, header, stage_record, wrap
from .resolve import (
    as_stage, channel_scales, check_channels, check_image, check_int, check_options,
    require_spatial,
)
from .scale import NORM_LABELS, Norm
from .text import INK, MUTED, SMALL, fmt, text_image, text_width
from .tiles import heat_pixels, tile as draw_tile

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
    scales = channel_scales(st, i, norm, chs, cmap, vrange)
    x = st.output[i]
    _, _, h, w = st.output.shape
    zoom = zoom_factor(h, w, tile)

    cells: list[Block] = []
    for c, s in zip(chs, scales):
        labels = [f"#{c}"]
        if norm == "map":
            labels.append(s.describe())
        elif norm == "standard":
            labels += [f"mean {fmt(s.mean or 0.0)}", f"sd {fmt(s.std or 0.0)}"]
        body = draw_tile(heat_pixels(x[c], s), {"channel": c, **s.as_meta(), "labels": labels}, zoom=zoom)
        width = max(body.width, *(text_width(t, SMALL) for t in labels))
        texts = [text_image(t, SMALL, INK if k == 0 else MUTED, width=width, align="center")
                 for k, t in enumerate(labels)]
        cells.append(vstack([texts[0], body, *texts[1:]], gap=1, align="center"))
    body = grid_layout(cells, ncols, gap=6)

    rec = stage_record(st, i, norm, "grid")
    parts: list[Block] = []
    shown = f"channels {len(chs)} of {st.channels}" if len(chs) < st.channels else f"{st.channels} channels"
    sub = f"{st.kind} · {st.op} · {st.shape_str} · {shown} · image {i} · {NORM_LABELS[norm]}"
    parts.append(header(st.name, sub, max(body.width, 360)))
    parts.append(body)
    labels: list[str] = []
    if norm != "map":
        length = min(max(body.width, 160), 420)
        if norm == "standard":
            bar, labels = colorbar(scales[0], length, sigma_units=True,
                                   caption=f"each map standardised: (x - mean) / sd · {scales[0].cmap}")
        else:
            s = scales[0]
            bar, labels = colorbar(s, length, caption=f"{NORM_LABELS[norm]} · {s.cmap}")
            rec.update({k: v for k, v in s.as_meta().items() if k in ("vmin", "vmax", "cmap", "signed",
                                                                       "constant")})
        parts.append(bar)
    rec.update(labels=labels, channels=chs, zoom=zoom)
    panel = wrap(vstack(parts, gap=6), rec)
    return finish(panel, {"view": "grid"})
