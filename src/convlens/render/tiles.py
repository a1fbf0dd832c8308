"""Pixels of one map: heatmap colours, RGB composites and photos, framed as tiles."""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from convlens.render.colormaps import BAD_COLOR
from convlens.render.layout import Block, fit_image, pad, upscale
from convlens.render.scale import Scale

__all__ = ["heat_pixels", "rgb_pixels", "photo_pixels", "tile", "heat_tile", "FRAME"]

FRAME = (190, 190, 190)


def heat_pixels(arr: np.ndarray, scale: Scale) -> np.ndarray:
    """A 2-D map as ``(h, w, 3)`` uint8 colours through ``scale``."""
    return scale.colorize(arr)


def rgb_pixels(arr: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """A ``(3, h, w)`` array as an RGB composite: channel 0 -> red, 1 -> green, 2 -> blue,
    all three through one linear map ``[vmin, vmax] -> [0, 255]``
    (``floor(u * 255 + 0.5)``, clipped); one value everywhere -> black; NaN -> magenta."""
    a = np.asarray(arr, dtype=np.float64)
    span = vmax - vmin
    with np.errstate(invalid="ignore"):
        u = np.clip((a - vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(a)
    bad = np.isnan(u).any(axis=0)
    out = np.floor(np.nan_to_num(u) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    if bad.any():
        out[bad] = BAD_COLOR
    return np.ascontiguousarray(out)


def photo_pixels(img: np.ndarray) -> np.ndarray:
    """An ``(h, w, 3)`` float image in [0, 1] as uint8 (clipped, rounded)."""
    a = np.nan_to_num(np.asarray(img, dtype=np.float64))
    return np.floor(np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def tile(
    pixels: np.ndarray, record: dict[str, Any], zoom: int | None = None, box: int | None = None,
    frame: bool = True,
) -> Block:
    """Pixels drawn at an integer ``zoom`` (nearest neighbour), or fitted to a ``box``
    square; a 1-pixel frame goes *around* the data, which the record's ``box`` locates."""
    if box is not None:
        img, z = fit_image(pixels, box)
    else:
        k = max(1, int(zoom or 1))
        img, z = Image.fromarray(np.ascontiguousarray(upscale(pixels, k))), float(k)
    rec = dict(record, zoom=z, box=(0, 0, img.width, img.height))
    block = Block(img, [rec])
    if not frame:
        return block
    block = pad(block, 1, 1, 1, 1)
    ImageDraw.Draw(block.image).rectangle(
        [0, 0, block.width - 1, block.height - 1], outline=FRAME
    )
    return block


def heat_tile(
    arr: np.ndarray, scale: Scale, record: dict[str, Any], zoom: int | None = None,
    box: int | None = None,
) -> Block:
    """A 2-D map as a framed heatmap tile.  Fitted to a ``box`` smaller than the map, the
    *values* are area-averaged before colouring (so every pixel is a colour of the
    scale, never a blend of two colours); otherwise as :func:`tile`."""
    h, w = arr.shape
    if box is None or max(h, w) <= box:
        return tile(heat_pixels(arr, scale), record, zoom=zoom, box=box)
    ratio = box / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    small = np.asarray(
        Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32)).resize(
            size, Image.Resampling.BOX
        )
    )
    block = tile(heat_pixels(small, scale), record, zoom=1)
    block.records[0]["zoom"] = size[0] / w
    return block
