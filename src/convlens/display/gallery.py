"""A stage's channels as HTML: the first ``first`` tiles shown, the rest behind a
"show all" ``<details>`` (lazy-loading images, no server, no JavaScript).

Every tile is coloured through the same :class:`~convlens.render.Scale` the static
figures use (one shared scale and colour bar for ``norm="stage"``/``"global"``; each
tile's own range written under it for ``"map"``; mean ± 3 sd for ``"standard"``).
A flat ``(B, N)`` stage, or one of 1x1 maps (a global pool), is drawn as
:func:`convlens.render.bars`.
"""
from __future__ import annotations

from convlens.render.colorbar import colorbar
from convlens.render.colormaps import CmapName
from convlens.render.resolve import channel_scales, check_image, check_int, check_options
from convlens.render.scale import NORM_LABELS, Norm, Scale
from convlens.render.text import fmt
from convlens.render.views import bars
from convlens.trace import Stage
from convlens.display.embed import data_uri, escape, heat_tile_png, img_tag

__all__ = ["channel_gallery", "tile_html"]


def tile_html(png: bytes, stored: tuple[int, int], thumb: int, label: str, sub: str = "",
              lazy: bool = False) -> str:
    """One channel tile: the picture drawn ``thumb`` px on its longer side, labelled."""
    w, h = stored
    k = thumb / max(w, h)
    width = max(1, round(w * k))
    img = img_tag(data_uri(png), label, width=width, lazy=lazy, cls="cl-px")
    cap = escape(label) + (f"<br><span class='cl-muted'>{escape(sub)}</span>" if sub else "")
    return f"<figure class='cl-tile'>{img}<figcaption>{cap}</figcaption></figure>"


def _sub(scale: Scale, norm: Norm) -> str:
    if norm == "map":
        return scale.describe()
    if norm == "standard":
        return f"mean {fmt(scale.mean or 0.0)}, sd {fmt(scale.std or 0.0)}"
    return ""


def _bar_html(scale: Scale, norm: Norm, length: int) -> str:
    if norm == "standard":
        block, _ = colorbar(scale, length, sigma_units=True,
                            caption=f"each map standardised: (x - mean) / sd · {scale.cmap}")
    else:
        block, _ = colorbar(scale, length, caption=f"{NORM_LABELS[norm]} · {scale.cmap}")
    return img_tag(data_uri(block.image), f"colour bar: {scale.describe()}", cls="cl-bar")


def channel_gallery(
    stage: Stage, image: int = 0, norm: Norm = "stage", cmap: CmapName | None = None,
    first: int = 16, thumb: int = 64, limit: int | None = None,
    vrange: tuple[float, float] | None = None,
) -> str:
    """HTML of one image's channels of ``stage`` (see module docs).

    Channels ``0 .. limit - 1`` are embedded (all of them when ``limit`` is None); the
    first ``first`` are shown and the others sit in a closed ``<details>`` ("show all").
    A line says how many channels were left out.  Tiles are stored at most ``thumb`` px
    per side (values area-averaged first).
    """
    i = check_image(stage, image)
    norm, cmap = check_options(norm, cmap)
    first = check_int(first, "first", 1)
    thumb = check_int(thumb, "thumb", 4)
    if limit is not None:
        limit = check_int(limit, "limit", 1)
    if stage.is_spatial and stage.output.shape[2:] == (1, 1):  # 1x1 maps: a vector
        stage = Stage(stage.index, stage.name, stage.kind, stage.op,
                      stage.output.reshape(stage.output.shape[:2]))
    if not stage.is_spatial:
        fig = bars(stage, i, norm, cmap, vrange)
        return ("<div class='cl-gallery'>" + img_tag(data_uri(fig.image), f"{stage.name} values",
                                                     cls="cl-fig") + "</div>")
    total = stage.channels
    last = total if limit is None else min(total, limit)
    chs = list(range(last))
    scales = channel_scales(stage, i, norm, chs, cmap, vrange)
    x = stage.output[i]
    tiles = []
    for c, s in zip(chs, scales, strict=True):
        png, stored = heat_tile_png(x[c], s, thumb)
        tiles.append(tile_html(png, stored, thumb, f"#{c}", _sub(s, norm), lazy=c >= first))
    parts = ["<div class='cl-gallery'>"]
    if norm != "map":
        parts.append(_bar_html(scales[0], norm, min(max(4 * thumb, 160), 420)))
    else:
        parts.append("<div class='cl-muted'>each map on its own range (written under it)</div>")
    parts.append("<div class='cl-grid'>" + "".join(tiles[:first]) + "</div>")
    rest = tiles[first:]
    if rest:
        what = f"show all {total} channels" if last == total else f"show channels 0..{last - 1}"
        parts.append(f"<details class='cl-more'><summary>{what} ({len(rest)} more)</summary>"
                     f"<div class='cl-grid'>{''.join(rest)}</div></details>")
    if total > last:
        parts.append(f"<div class='cl-muted'>channels 0..{last - 1} of {total} included "
                     f"({total - last} left out)</div>")
    parts.append("</div>")
    return "".join(parts)
