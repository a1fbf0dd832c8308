"""Many labelled map tiles drawn straight into one NumPy canvas: the body of ``grid()``.

It draws what composing one :class:`~convlens.render.layout.Block` per tile draws
(``tiles.tile`` framed tiles, ``text_image`` labels, ``vstack`` cells, ``grid_layout``)
pixel for pixel and with the same tile records, but with the arithmetic of that layout
done once: colours for the whole stack at once (:class:`ScaleSet`), one canvas, each
label drawn once per distinct text (cached), no per-tile images or record copies.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

from .layout import Block, zoom_factor
from .scaleset import ScaleSet
from .text import BACKGROUND, INK, MUTED, SMALL, TEXT_MARGIN, line_height, text_pixels, text_width
from .tiles import FRAME

__all__ = ["Mosaic", "heat_grid", "blank", "CELL_GAP"]

CELL_GAP = 6
"""Pixels between cells (as ``grid_layout(..., gap=6)``)."""


def blank(height: int, width: int) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 canvas of the background colour."""
    if len(set(BACKGROUND)) == 1:
        return np.full((height, width, 3), BACKGROUND[0], np.uint8)  # one memset
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[...] = BACKGROUND
    return canvas


class Mosaic:
    """Tiles of ``maps`` (``(n, h, w)``, map ``k`` is channel ``channels[k]``) coloured by
    ``scales``, enlarged ``zoom`` times, framed, labelled (first label in ink above, the
    rest muted below), centred in equal cells, ``cols`` cells a row.

    Laid out on construction (``width``, ``height``); :meth:`draw` paints it into a
    white canvas and returns one record per tile, boxes offset by ``(dx, dy)``."""

    def __init__(
        self, maps: np.ndarray, channels: Sequence[int], scales: ScaleSet,
        labels: list[list[str]], zoom: int, cols: int, metas: list[dict[str, Any]],
    ):
        self.maps, self.channels, self.scales = maps, channels, scales
        self.labels, self.zoom, self.metas = labels, zoom, metas
        n, h, w = maps.shape
        self.lh = line_height(SMALL)
        nl = len(labels[0])
        self.bw, self.bh = w * zoom + 2, h * zoom + 2
        self.widths = [[text_width(t, SMALL) for t in lab] for lab in labels]
        self.cell_w = [max(self.bw, *ws) for ws in self.widths]
        self.cell_h = nl * self.lh + self.bh + nl
        self.cols = max(1, min(int(cols), n))
        rows = (n + self.cols - 1) // self.cols
        self.cw = max(self.cell_w)
        self.width = self.cols * self.cw + CELL_GAP * (self.cols - 1)
        self.height = rows * self.cell_h + CELL_GAP * (rows - 1)

    def draw(self, canvas: np.ndarray, dx: int = 0, dy: int = 0) -> list[dict[str, Any]]:
        n, h, w = self.maps.shape
        zoom, lh, bw, bh, cw, cols = self.zoom, self.lh, self.bw, self.bh, self.cw, self.cols
        framed = np.empty((n, bh, bw, 3), np.uint8)
        framed[:, 0], framed[:, -1], framed[:, :, 0], framed[:, :, -1] = FRAME, FRAME, FRAME, FRAME
        colours = self.scales.colorize(self.maps)
        if zoom > 1:
            colours = np.repeat(np.repeat(colours, zoom, axis=1), zoom, axis=2)
        framed[:, 1:-1, 1:-1] = colours
        records: list[dict[str, Any]] = []
        zf = float(zoom)
        for k in range(n):
            r, c = divmod(k, cols)
            cwk = self.cell_w[k]
            ox = dx + c * (cw + CELL_GAP) + (cw - cwk) // 2
            oy = dy + r * (self.cell_h + CELL_GAP)
            bx = ox + (cwk - bw) // 2
            by = oy + lh + 1
            canvas[by:by + bh, bx:bx + bw] = framed[k]
            y = oy
            for j, (text, tw) in enumerate(zip(self.labels[k], self.widths[k])):
                arr = text_pixels(text, SMALL, INK if j == 0 else MUTED)
                x = ox + (cwk - tw) // 2 - TEXT_MARGIN  # where the margin starts
                a0 = max(0, ox - x)
                a1 = min(arr.shape[1], ox + cwk - x)
                canvas[y:y + lh, x + a0:x + a1] = arr[:, a0:a1]
                y = by + bh + 1 if j == 0 else y + lh + 1
            records.append({"channel": self.channels[k], **self.metas[k], "labels": self.labels[k],
                            "zoom": zf, "box": (bx + 1, by + 1, bx + 1 + w * zoom, by + 1 + h * zoom)})
        return records


def heat_grid(x: np.ndarray, channels: Sequence[int], scales: ScaleSet, box: int, cols: int,
              gap: int) -> Block:
    """``grid_layout([heat_tile(x[c], s, {"channel": c, **s.as_meta()}, box=box) ...],
    cols, gap)`` drawn at once: maps that fit ``box`` enlarged by one integer factor,
    larger ones area-averaged (their *values*, as ``heat_tile`` does) to fit it."""
    n = len(channels)
    _, h, w = x.shape
    if max(h, w) <= box:
        k = zoom_factor(h, w, box)
        colours = scales.colorize(x[list(channels)])
        if k > 1:
            colours = np.repeat(np.repeat(colours, k, axis=1), k, axis=2)
        zooms = [float(k)] * n
    else:
        ratio = box / max(h, w)
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        small = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(x[c], dtype=np.float32)).resize(
                size, Image.Resampling.BOX)) for c in channels
        ])
        colours = scales.colorize(small)
        zooms = [size[0] / w] * n
    th, tw = colours.shape[1:3]
    cw, ch = tw + 2, th + 2
    cols = max(1, min(int(cols), n))
    rows = (n + cols - 1) // cols
    canvas = blank(rows * ch + gap * (rows - 1), cols * cw + gap * (cols - 1))
    records = []
    for i, (c, meta) in enumerate(zip(channels, scales.metas())):
        r, q = divmod(i, cols)
        x0, y0 = q * (cw + gap), r * (ch + gap)
        cell = canvas[y0:y0 + ch, x0:x0 + cw]
        cell[...] = FRAME
        cell[1:-1, 1:-1] = colours[i]
        records.append({"channel": c, **meta, "zoom": zooms[i],
                        "box": (x0 + 1, y0 + 1, x0 + 1 + tw, y0 + 1 + th)})
    return Block(Image.fromarray(canvas), records)
