"""Text for figures: Pillow's bundled default font (deterministic), sizes, number format.

The bundled font has no Greek letters or arrows, so labels stay ASCII plus ``±`` and
``·`` (``sd``, ``->``, ``...``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "TITLE", "LABEL", "SMALL", "INK", "MUTED", "BACKGROUND",
    "font", "text_width", "line_height", "fit", "wrap_text", "text_image", "fmt",
    "text_pixels", "TEXT_MARGIN", "stamp",
]

TITLE = 14
LABEL = 12
SMALL = 11
INK = (25, 25, 25)
MUTED = (95, 95, 95)
BACKGROUND = (255, 255, 255)


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=65536)
def text_width(text: str, size: int = LABEL) -> int:
    return int(math.ceil(font(size).getlength(text)))


def line_height(size: int = LABEL) -> int:
    f = font(size)
    if hasattr(f, "getmetrics"):
        ascent, descent = f.getmetrics()
        return int(ascent + descent)
    return size + 2  # pragma: no cover - bitmap fallback


def fit(text: str, width: int, size: int = LABEL) -> str:
    """``text`` cut (with ``...``) to fit ``width`` pixels."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "...", size) > width:
        text = text[:-1]
    return text + "..."


def wrap_text(text: str, width: int, size: int = LABEL) -> list[str]:
    """``text`` broken at spaces into lines that fit ``width`` pixels (an over-long
    word is cut with ``...``)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if current and text_width(trial, size) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    lines.append(current)
    return [fit(line, width, size) for line in lines]


def text_image(
    text: str, size: int = LABEL, color: tuple[int, int, int] = INK, width: int | None = None,
    align: str = "left",
) -> Image.Image:
    """One line of text on white; cut to ``width`` if given, aligned within it."""
    key = color if isinstance(color, (int, str)) else tuple(color)
    return _text_image(text, size, key, width, align).copy()


@lru_cache(maxsize=8192)  # labels repeat a lot (channel numbers, ranges): draw each once
def _text_image(text: str, size: int, color: Any, width: int | None,
                align: str) -> Image.Image:
    if width is not None:
        text = fit(text, width, size)
    tw = text_width(text, size)
    w = max(1, width if width is not None else tw)
    img = Image.new("RGB", (w, line_height(size)), BACKGROUND)
    x = {"left": 0, "center": (w - tw) // 2, "right": w - tw}[align]
    ImageDraw.Draw(img).text((x, 0), text, font=font(size), fill=color)
    return img


TEXT_MARGIN = 3
"""Pixels kept on each side of :func:`text_pixels` (for glyphs reaching past the advance)."""


@lru_cache(maxsize=65536)
def text_pixels(text: str, size: int, color: tuple[int, ...]) -> np.ndarray:
    """``text`` drawn as :func:`text_image` draws it, as a read-only ``(h, w, 3)`` uint8
    array with :data:`TEXT_MARGIN` white pixels on the left and right (the text starts at
    x = TEXT_MARGIN); for composing many labels straight into one array."""
    tw = text_width(text, size)
    img = Image.new("RGB", (tw + 2 * TEXT_MARGIN, line_height(size)), BACKGROUND)
    ImageDraw.Draw(img).text((TEXT_MARGIN, 0), text, font=font(size), fill=color)
    arr = np.asarray(img).copy()
    arr.flags.writeable = False
    return arr


def stamp(canvas: np.ndarray, x: int, y: int, text: str, size: int, color: tuple[int, ...]) -> None:
    """Draw ``text`` into a ``(H, W, 3)`` uint8 ``canvas`` at ``(x, y)`` exactly as
    ``ImageDraw.text`` draws it on white (from the :func:`text_pixels` cache); the area
    must be white, or hold only things darker than the text's white (kept: the darker
    of the two wins), and is clipped to the canvas."""
    arr = text_pixels(text, size, color)
    x -= TEXT_MARGIN
    h, w = arr.shape[:2]
    a0, b0 = max(0, -x), max(0, -y)
    a1, b1 = min(w, canvas.shape[1] - x), min(h, canvas.shape[0] - y)
    if a1 > a0 and b1 > b0:
        region = canvas[y + b0:y + b1, x + a0:x + a1]
        np.minimum(region, arr[b0:b1, a0:a1], out=region)


def fmt(value: float) -> str:
    """A compact, readable number: ``0``, ``-0.42``, ``1.37``, ``123``, ``1.5e-05``."""
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a < 1e-3 or a >= 1e5:
        mant, exp = f"{v:.2e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"
