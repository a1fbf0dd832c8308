"""Text for figures: Pillow's bundled default font (deterministic), sizes, number format.

The bundled font has no Greek letters or arrows, so labels stay ASCII plus ``±`` and
``·`` (``sd``, ``->``, ``...``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "TITLE", "LABEL", "SMALL", "INK", "MUTED", "BACKGROUND",
    "font", "text_width", "line_height", "fit", "wrap_text", "text_image", "fmt",
    "text_pixels", "TEXT_MARGIN", "stamp", "fmt_many", "packed_text", "packed_texts", "packed_texts_many", "text_widths",
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
    """Pixels ``text`` advances (``ceil`` of the font's length): the sum of the advances
    of its characters where no pair of them is kerned (see :func:`text_widths`), else the
    font's own measure of the whole text."""
    adv = _advances(size, tuple(set(text)))
    if adv is not None:
        return -(-sum(adv[c] for c in text) // 64)
    return int(math.ceil(font(size).getlength(text)))


def text_widths(texts: Sequence[str], size: int = LABEL) -> np.ndarray:
    """``[text_width(t, size) for t in texts]`` as an integer array, for thousands of
    labels at once: the advances of the characters summed by NumPy.  That is exact when
    no pair of the characters is kerned (checked once per character and size against the
    font's own measure of every pair); otherwise each text is measured on its own."""
    n = len(texts)
    if n == 0:
        return np.zeros(0, np.intp)
    arr = np.array(texts, dtype=str)
    codes = arr.view(np.uint32).reshape(n, -1)  # padded with 0 (texts hold no NUL)
    top = int(codes.max(initial=0))
    if top >= 1 << 20:  # pragma: no cover - far outside the labels drawn here
        return np.array([_measured_width(t, size) for t in texts], np.intp)
    present = np.flatnonzero(np.bincount(codes.ravel(), minlength=1)).tolist()
    adv = _advances(size, tuple(chr(c) for c in present if c))
    if adv is None:
        return np.array([_measured_width(t, size) for t in texts], np.intp)
    table = np.zeros(top + 1, np.int64)
    for c in present:
        if c:
            table[c] = adv[chr(c)]
    units = table[codes].sum(axis=1)  # 1/64 pixel
    return (-(-units // 64)).astype(np.intp)  # ceil, as text_width


def _measured_width(text: str, size: int) -> int:
    return int(math.ceil(font(size).getlength(text)))


_ADVANCES: dict[int, dict[str, int]] = {}
_KERNED: set[int] = set()


def _advances(size: int, chars: tuple[str, ...]) -> dict[str, int] | None:
    """Advance of each character in 1/64 pixel, once every pair of the characters seen
    so far (at this size) measures as the sum of its two advances; None if one does not."""
    if size in _KERNED:
        return None
    known = _ADVANCES.setdefault(size, {})
    new = [c for c in chars if c not in known]
    if new:
        f = font(size)
        if any(not c.isprintable() for c in new):
            return None  # line breaks and such: measured whole, by the font
        trial = dict(known)
        for c in new:
            trial[c] = int(round(f.getlength(c) * 64))
        for a in new:
            for b in trial:
                for pair in (a + b, b + a):
                    if int(round(f.getlength(pair) * 64)) != trial[pair[0]] + trial[pair[1]]:
                        _KERNED.add(size)
                        return None
        known.update(trial)  # published once checked (another thread may be reading)
    return known


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


def packed_text(text: str, size: int, color: tuple[int, ...]) -> np.ndarray:
    """:func:`text_pixels` as read-only packed pixels (see :mod:`.packed`), cached."""
    return packed_texts(size, color)(text)


_PACKED: dict[tuple[int, tuple[int, ...]], dict[str, np.ndarray]] = {}
_PACKED_MAX = 65536
"""Texts kept per size and colour (the cache starts again when full)."""


def packed_texts(size: int, color: tuple[int, ...]) -> Callable[[str], np.ndarray]:
    """A function ``text -> packed_text(text, size, color)`` looking texts up in a plain
    dict (for many labels of one size and colour: no cache key to build per text)."""
    from convlens.render.packed import pack

    cache = _PACKED.setdefault((size, tuple(color)), {})
    get = cache.get

    def lookup(text: str) -> np.ndarray:
        arr = get(text)
        if arr is None:
            if len(cache) >= _PACKED_MAX:
                cache.clear()
            arr = pack(text_pixels(text, size, color))
            arr.flags.writeable = False
            cache[text] = arr
        return arr

    return lookup


def packed_texts_many(texts: Sequence[str], size: int, color: tuple[int, ...]) -> list[np.ndarray]:
    """``[packed_text(t, size, color) for t in texts]``, the texts not cached yet drawn all
    at once from cached glyphs (:mod:`.glyphs`: the same pixels, without one FreeType
    call per text)."""
    from convlens.render.glyphs import draw_coverage, ink_table
    from convlens.render.packed import pack

    cache = _PACKED.setdefault((size, tuple(color)), {})
    found = {t: cache.get(t) for t in texts}  # what this call uses, whatever other threads do
    missing = [t for t, arr in found.items() if arr is None]
    if missing:
        if len(cache) + len(missing) > _PACKED_MAX:
            cache.clear()
        table = pack(ink_table(color))
        for t, cov in zip(missing, draw_coverage(missing, size)):
            arr = table[cov] if cov is not None else pack(text_pixels(t, size, color))
            arr.flags.writeable = False
            found[t] = cache[t] = arr
    return [found[t] for t in texts]  # type: ignore[misc]


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


def fmt_many(values: np.ndarray | list[float]) -> list[str]:
    """``[fmt(v) for v in values]``, with the case analysis done by NumPy over the whole
    array and each string made by one format call (thousands of tile labels at once)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    out: list[str] = ["0"] * v.size  # zeros (and -0.0) stay "0"
    if not v.size:
        return out
    a = np.abs(v)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(v)
        nonzero = finite & (v != 0)
        sci = nonzero & ((a < 1e-3) | (a >= 1e5))
        big = nonzero & ~sci & (a >= 100)
        mid = nonzero & ~sci & (a < 100)
    if mid.all():  # the usual case: one format for everything
        return [f"{x:.3g}" for x in v.tolist()]
    for mask, form in ((big, "{:.0f}".format), (mid, "{:.3g}".format), (sci, _sci), (~finite, str)):
        idx = np.flatnonzero(mask)
        for i, s in zip(idx.tolist(), map(form, v[idx].tolist())):
            out[i] = s
    return out


def _sci(v: float) -> str:
    mant, exp = f"{v:.2e}".split("e")
    return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"
