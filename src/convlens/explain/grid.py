"""Grids of numbers, the building block of the convolution and pooling animations."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from convlens.explain.canvas import Canvas, text_width

__all__ = ["fmt", "draw_grid", "grid_size", "diverging", "PALETTE", "fit_text"]

PALETTE = {
    "ink": "#1f2328", "muted": "#6e7781", "line": "#8c959f", "pad": "#eaeef2",
    "window": "#fff1a8", "window_edge": "#d4a72c", "kernel": "#dbeafe", "kernel_ink": "#1d4ed8",
    "product": "#dcfce7", "out": "#ffedd5", "out_now": "#fb923c", "pick": "#f97316",
    "accent": "#cf222e", "blue": "#0969da", "orange": "#e36209", "green": "#1a7f37",
    "box": "#b6d4fe", "box_edge": "#3b6fb6", "dense": "#fcd5b5", "dense_edge": "#c2410c",
}


def fmt(v: float, digits: int = 2, integers: bool = True) -> str:
    """A number as short text with ``digits`` decimals (fewer for large magnitudes);
    whole numbers without decimals when ``integers``; ``-0.00`` is written ``0.00``."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if (integers or digits == 0) and abs(v - round(v)) < 1e-9 and abs(v) < 1e6:
        return str(int(round(v)))
    a = abs(v)
    d = digits if a < 10 else max(digits - 1, 0) if a < 100 else 0
    s = f"{v:.{d}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def fit_text(text: str, size: int, width: float) -> int:
    """The largest font size <= ``size`` at which ``text`` fits in ``width`` pixels."""
    while size > 7 and text_width(text, size) > width:
        size -= 1
    return size


def diverging(v: float, vmax: float) -> str:
    """Blue (negative) - white (0) - red (positive) colour for ``v`` on ``[-vmax, vmax]``."""
    t = 0.0 if vmax <= 0 else max(-1.0, min(1.0, v / vmax))
    end = (203, 24, 29) if t > 0 else (33, 102, 172)
    a = abs(t)
    rgb = [round(255 + (e - 255) * a) for e in end]
    return "#%02x%02x%02x" % tuple(rgb)


def grid_size(shape: Sequence[int], cell: int) -> tuple[int, int]:
    """(width, height) of a grid of ``shape`` (rows, cols) cells."""
    return shape[1] * cell, shape[0] * cell


def draw_grid(
    cv: Canvas, x: float, y: float, values: np.ndarray, cell: int, *,
    fills: np.ndarray | None = None, inks: np.ndarray | None = None,
    show: np.ndarray | None = None, numbers: bool = True, digits: int = 2,
    integers: bool = True,
    edge: str = PALETTE["line"], font_size: int | None = None,
) -> tuple[float, float, float, float]:
    """Draw a ``(rows, cols)`` grid of numbers at (x, y); returns its bounding box.

    ``fills`` / ``inks`` are per-cell colours (``None`` entries: white / ink);
    ``show`` is a boolean mask of cells whose number is written (default: all);
    with ``numbers=False`` only the colours are drawn.
    """
    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    size = font_size or max(8, int(cell * 0.34))
    for i in range(rows):
        for j in range(cols):
            x0, y0 = x + j * cell, y + i * cell
            fill = fills[i, j] if fills is not None and fills[i, j] else "#ffffff"
            cv.rect(x0, y0, x0 + cell, y0 + cell, fill=fill, outline=edge)
            if numbers and (show is None or show[i, j]):
                s = fmt(values[i, j], digits, integers)
                ink = inks[i, j] if inks is not None and inks[i, j] else PALETTE["ink"]
                cv.text(x0 + cell / 2, y0 + cell / 2, s, fit_text(s, size, cell - 4), ink, "mm")
    return x, y, x + cols * cell, y + rows * cell


def empty_colours(shape: Sequence[int]) -> np.ndarray:
    """A ``(rows, cols)`` object array of ``None`` colours, to fill in."""
    return np.full(tuple(shape), None, dtype=object)
