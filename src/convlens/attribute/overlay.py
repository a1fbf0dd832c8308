"""Attribution maps drawn over their images, with the colour scale stated.

Each image gets a row: the image itself, the map alone (its own pixels, stretched to the
image), and the map blended over a grey copy of the image.  The colour bar under the map
gives the real values it maps: a sequential map over ``[0, max]`` for maps >= 0
(Grad-CAM, saliency), a diverging map symmetric about 0 for signed ones (gradient x
input); the caption says whether the range is per image or shared by the batch and how
strongly the colours are blended.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from convlens.errors import RenderError
from convlens.images import resize
from convlens.render.colorbar import colorbar, legend
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.layout import Block, hstack, vstack
from convlens.render.panel import finish, header
from convlens.render.scale import Scale
from convlens.render.text import fmt
from convlens.render.tiles import photo_pixels, tile
from convlens.attribute.base import Attribution
from convlens.attribute.registry import title as method_title

__all__ = ["overlay", "overlay_map", "blend", "default_clip"]



def blend(image: np.ndarray, m: np.ndarray, scale: Scale, alpha: float) -> np.ndarray:
    """``(H, W, 3)`` uint8: the map's colours over a grey copy of ``image`` at ``alpha``."""
    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    base = np.repeat(grey[..., None], 3, axis=-1)
    col = scale.colorize(m).astype(np.float64) / 255.0
    out = (1.0 - alpha) * base + alpha * col
    return photo_pixels(out)


def _scale(m: np.ndarray, signed: bool, cmap: CmapName | None, clip: float | None) -> Scale:
    a = np.abs(m) if signed else np.maximum(m, 0.0)
    top = float(np.percentile(a, clip) if clip is not None else a.max()) if a.size else 0.0
    if top <= 0 and a.size:
        top = float(a.max())
    if signed:
        return Scale.from_range(-top if top > 0 else -1e-12, top, norm="map", cmap=cmap)
    return Scale.from_range(0.0, top, norm="map", cmap=cmap)


def _clip_note(m: np.ndarray, clip: float | None, signed: bool) -> str:
    if clip is None:
        return ""
    top = float(np.max(np.abs(m))) if m.size else 0.0
    return f"; {'|values|' if signed else 'values'} above the {clip:g}th percentile drawn " \
           f"in the end colour (max {fmt(top)})"


def default_clip(attr: Attribution) -> float | None:
    """99.5 for maps of input gradients (a few pixels dwarf the rest), None for CAMs."""
    return 99.5 if attr.stage == "input" else None


def overlay_map(image: np.ndarray, m: np.ndarray, *, signed: bool = False, title: str = "map",
                subtitle: str | None = None, alpha: float = 0.5, cmap: CmapName | None = None,
                clip: float | None = None, size: int = 256) -> Figure:
    """One image ``(H, W, 3)`` in [0, 1] with one map ``(h, w)`` (any resolution);
    ``clip``: a percentile of the map's (absolute) values to end the colour scale at."""
    m = np.asarray(m, dtype=np.float64)
    caption = "range of this map" + _clip_note(m, clip, signed)
    return _figure([_row(np.asarray(image), m, signed, alpha, cmap,
                         _scale(m, signed, cmap, clip), size, caption, 0)],
                   title, subtitle, {"method": title})


def _row(image: np.ndarray, m: np.ndarray, signed: bool, alpha: float, cmap: CmapName | None,
         scale: Scale, size: int, caption: str, index: int) -> Block:
    if not 0.0 <= alpha <= 1.0:
        raise RenderError(f"alpha={alpha!r} is not valid; expected a number from 0 to 1")
    h, w = image.shape[:2]
    big = resize(m.astype(np.float32), (h, w)) if m.shape != (h, w) else m
    rec = {"image": index, **scale.as_meta()}
    pic = tile(photo_pixels(image), {**rec, "view": "image"}, box=size)
    raw = tile(scale.colorize(big), {**rec, "view": "map"}, box=size)
    mixed = tile(blend(image, big, scale, alpha), {**rec, "view": "overlay", "alpha": alpha},
                 box=size)
    bar, labels = colorbar(scale, min(size, raw.width), caption=caption)
    note = legend([f"map {m.shape[0]}x{m.shape[1]}, stretched to {h}x{w} (bilinear)",
                   f"colours blended {round(alpha * 100)}% over a grey copy"], mixed.width)
    cols = [vstack([pic, legend([f"image {index}", f"{h}x{w}"], pic.width)], gap=3),
            vstack([raw, bar], gap=3), vstack([mixed, note], gap=3)]
    block = hstack(cols, gap=10)
    block.records.append({"row": index, "labels": labels, **scale.as_meta(),
                          "box": (0, 0, block.width, block.height)})
    return block


def _figure(rows: Sequence[Block], title: str, subtitle: str | None, meta: dict) -> Figure:
    body = vstack(list(rows), gap=14)
    top = header(title, subtitle, max(body.width, 300))
    return finish(vstack([top, body], gap=8), {"view": "attribution", **meta})


def overlay(attr: Attribution, images: int | Sequence[int] | None = None, *,
            alpha: float = 0.5, cmap: CmapName | None = None, shared: bool = False,
            clip: float | None | str = "auto", size: int = 256) -> Figure:
    """The maps of ``attr`` over their images, one row per image (all by default).

    ``shared``: one colour range for every row (compare images) instead of one per image.
    ``cmap``: a colour map name (default viridis for maps >= 0, RdBu_r for signed maps).
    ``clip``: end the colour scale at this percentile of the (absolute) values, the rest
    drawn in the end colour and the true maximum stated; ``"auto"`` is 99.5 for input
    gradients, whose few largest pixels would otherwise leave the rest black, and no
    clipping for class activation maps.
    """
    if not isinstance(attr, Attribution):
        raise RenderError(f"overlay needs an Attribution (from gradcam, saliency...); got "
                          f"{type(attr).__name__}")
    n = attr.batch_size
    idx = list(range(n)) if images is None else ([images] if isinstance(images, int) else list(images))
    for i in idx:
        if not (isinstance(i, (int, np.integer)) and 0 <= i < n):
            raise RenderError(f"image {i!r} is out of range; this attribution has {n} "
                              f"image(s) (0..{n - 1})")
    if isinstance(clip, str):
        if clip != "auto":
            raise RenderError(f"clip={clip!r} is not valid; expected a percentile (0-100), "
                              "None or 'auto'")
        clip = default_clip(attr)
    if clip is not None and not 0 < float(clip) <= 100:
        raise RenderError(f"clip={clip!r} is not valid; expected a percentile in (0, 100]")
    maps = attr.maps.astype(np.float64)
    rows = []
    for i in idx:
        src = maps[idx] if shared else maps[i]
        caption = ("range shared by the batch" if shared else "range of this image's map") + \
            _clip_note(src, clip, attr.signed)
        rows.append(_row(attr.images[i], maps[i], attr.signed, alpha, cmap,
                         _scale(src, attr.signed, cmap, clip), size, caption, i))
    where = "the input pixels" if attr.stage == "input" else f"stage {attr.stage}"
    labels = "; ".join(f"image {i}: {attr.label(i)}, score {fmt(attr.scores[i])}" for i in idx)
    title = f"{method_title(attr.method)} at {where} · {attr.model_name}"
    return _figure(rows, title, labels, {"method": attr.method, "title": title, "stage": attr.stage,
                                         "targets": [attr.targets[i] for i in idx],
                                         "shared": shared})
