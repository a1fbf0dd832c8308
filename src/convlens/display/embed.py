"""Pictures as ``data:`` URIs, and heatmap tiles as small palette PNGs.

Everything the notebook views and the report embed goes through here, so no page ever
points at a file or a URL.  A heatmap tile is stored at (at most) ``thumb`` pixels per
side with its colours as a palette PNG: the colours of the colour map it uses *are*
the palette, so the tile is exactly what :meth:`Scale.colorize` would draw, at about a third
of the bytes of an RGB PNG.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from convlens.render.colormaps import lut, unit_to_index
from convlens.render.scale import Scale

__all__ = ["png_bytes", "data_uri", "img_tag", "heat_tile_png", "escape", "shrink_values"]

escape = html.escape


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes, deterministic (no metadata, fixed compression)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def data_uri(payload: bytes | Image.Image, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` for raw bytes or a Pillow image (as PNG)."""
    if isinstance(payload, Image.Image):
        payload = png_bytes(payload)
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def img_tag(src: str, alt: str, *, width: int | None = None, lazy: bool = False,
            cls: str | None = None, title: str | None = None) -> str:
    """An ``<img>`` element; ``src`` must already be a ``data:`` URI."""
    attrs = [f'src="{src}"', f'alt="{escape(alt)}"']
    if width is not None:
        attrs.append(f'width="{int(width)}"')
    if lazy:
        attrs.append('loading="lazy"')
    if cls:
        attrs.append(f'class="{escape(cls)}"')
    if title:
        attrs.append(f'title="{escape(title)}"')
    return "<img " + " ".join(attrs) + ">"


def shrink_values(arr: np.ndarray, thumb: int) -> np.ndarray:
    """A 2-D map reduced by area averaging so its longer side is at most ``thumb``
    (the *values* are averaged, before any colouring); smaller maps are returned as is."""
    a = np.asarray(arr, dtype=np.float32)
    h, w = a.shape
    if max(h, w) <= thumb:
        return a
    ratio = thumb / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.BOX))


def heat_tile_png(arr: np.ndarray, scale: Scale, thumb: int) -> tuple[bytes, tuple[int, int]]:
    """One map coloured through ``scale`` as PNG bytes, at most ``thumb`` px per side;
    returns the bytes and the stored ``(width, height)``.  Browsers enlarge it (CSS
    ``image-rendering: pixelated``) so values stay sharp squares."""
    small = shrink_values(arr, thumb)
    idx = unit_to_index(scale.to_unit(small))
    if (idx < 0).any():  # NaN/inf: the magenta "bad" colour is not in the palette
        image = Image.fromarray(scale.colorize(small))
    else:
        used, inverse = np.unique(idx, return_inverse=True)  # palette: only the colours used
        h, w = idx.shape
        image = Image.frombytes("P", (w, h), inverse.astype(np.uint8).reshape(h, w).tobytes())
        image.putpalette(lut(scale.cmap)[used].tobytes())
    return png_bytes(image), (image.width, image.height)
