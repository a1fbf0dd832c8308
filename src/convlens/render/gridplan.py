"""How big ``grid()`` draws the tiles when no ``tile`` size is given: one integer zoom
per stage, chosen so the grid stays readable on a screen (pure arithmetic on sizes)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from convlens.render.layout import zoom_factor
from convlens.render.mosaic import CELL_GAP

__all__ = ["AUTO_TILE", "AUTO_WIDTH", "Labels", "Plan", "plan", "grid_width"]

AUTO_TILE = 96
"""The largest tile (pixels) the automatic size draws: a map is enlarged at most to this."""
AUTO_WIDTH = 1200
"""The width (pixels) the automatic size keeps the tiles of a grid within, when it can."""


Labels = tuple[list[list[str]], np.ndarray]
"""Label rows (row ``j`` holds label ``j`` of every tile) and their pixel widths
(``(rows, n)``)."""

MIN_FULL_LABEL = 30
"""No range written in full (``0 ... 1``, ``constant 0``, ``mean 0``) is narrower (pixels)."""


@dataclass(frozen=True)
class Plan:
    """The zoom, the number of columns, the label rows to draw (with their widths), and
    whether they are the compact ranges (see ``ScaleSet.compact``)."""

    zoom: int
    cols: int
    labels: list[list[str]]
    widths: np.ndarray
    compact: bool


def grid_width(n: int, cols: int, map_w: int, zoom: int, label_w: int) -> int:
    """Width in pixels of the tiles of ``n`` maps ``map_w`` wide at ``zoom`` in ``cols``
    columns, with labels at most ``label_w`` wide (as ``Mosaic`` lays them out)."""
    cols = max(1, min(cols, n))
    return cols * max(map_w * zoom + 2, label_w) + CELL_GAP * (cols - 1)


def _zoom(n: int, cols: int, h: int, w: int, label_w: int) -> int:
    """The largest zoom <= the ``AUTO_TILE`` zoom at which the grid is at most
    ``AUTO_WIDTH`` wide -- or at which the tiles are no wider than their labels (that costs
    no width) -- and at least 1."""
    cols = max(1, min(cols, n))
    budget = (AUTO_WIDTH - CELL_GAP * (cols - 1)) // cols
    fits = (budget - 2) // w
    free = (label_w - 2) // w
    return max(1, min(zoom_factor(h, w, AUTO_TILE), max(fits, free)))


def plan(n: int, h: int, w: int, full: Callable[[], Labels],
         compact: Callable[[], Labels] | None, cols: int | None) -> Plan:
    """The automatic layout of ``n`` ``h x w`` maps whose labels are ``full()`` (or, when
    those make the grid too wide, ``compact()``; None: there is no compact form):

    1. ``cols`` (default ``ceil(sqrt(n))``) columns, full labels, the zoom of :func:`_zoom`,
       if that grid is at most ``AUTO_WIDTH`` wide;
    2. else the same with compact labels, if that fits;
    3. else, when ``cols`` is not given, as many columns as fit ``AUTO_WIDTH`` at zoom 1
       (at least one), and the zoom for those; with ``cols`` given, step 2 (or 1) as is.

    Full labels are not even made when ``MIN_FULL_LABEL``-pixel cells would not fit.
    """
    ncols = cols if cols is not None else math.ceil(math.sqrt(n))
    hopeless = compact is not None and grid_width(n, ncols, 0, 0, MIN_FULL_LABEL) > AUTO_WIDTH
    rows, widths = compact() if hopeless else full()  # type: ignore[misc]
    is_compact = hopeless
    lw = int(widths.max(initial=0))
    z = _zoom(n, ncols, h, w, lw)
    if grid_width(n, ncols, w, z, lw) <= AUTO_WIDTH:
        return Plan(z, ncols, rows, widths, is_compact)
    if compact is not None and not is_compact:
        rows, widths = compact()
        is_compact = True
        lw = int(widths.max(initial=0))
        z = _zoom(n, ncols, h, w, lw)
        if grid_width(n, ncols, w, z, lw) <= AUTO_WIDTH:
            return Plan(z, ncols, rows, widths, True)
    if cols is None:
        ncols = max(1, (AUTO_WIDTH + CELL_GAP) // (max(w + 2, lw) + CELL_GAP))
        z = _zoom(n, ncols, h, w, lw)
    return Plan(z, ncols, rows, widths, is_compact)
