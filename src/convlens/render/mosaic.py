"""Many labelled map tiles drawn straight into one NumPy canvas: the body of ``grid()``,
and the mini-grids of the journey's panels.

They draw what composing one :class:`~convlens.render.layout.Block` per tile draws
(``tiles.tile`` framed tiles, ``text_image`` labels, ``vstack`` cells, ``grid_layout``)
pixel for pixel and with the same tile records, with no Python per tile: colours for the
whole stack from one table look-up (:class:`ScaleSet`, packed pixels), the cells as a
strided view of one canvas, tiles (and labels) that sit at the same place in their cells
written by one NumPy assignment, each distinct label drawn once (:mod:`.labelatlas`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided
from PIL import Image

from convlens.render.groups import groups
from convlens.render.labelatlas import LabelAtlas, channel_atlas
from convlens.render.layout import Block, zoom_factor
from convlens.render.packed import canvas as packed_canvas, pack_color, to_image
from convlens.render.scaleset import ScaleSet
from convlens.render.text import BACKGROUND, INK, MUTED, SMALL, TEXT_MARGIN, line_height, text_widths
from convlens.render.tiles import FRAME

__all__ = ["Mosaic", "heat_grid", "CELL_GAP"]

CELL_GAP = 6
"""Pixels between cells (as ``grid_layout(..., gap=6)``)."""


class Mosaic:
    """Tiles of ``maps`` (``(n, h, w)``, map ``k`` is channel ``channels[k]``) coloured by
    ``scales``, enlarged ``zoom`` times, framed, labelled (``labels[0][k]`` in ink above
    tile ``k``, ``labels[1:]`` muted below it), centred in equal cells, ``cols`` cells a row.

    Laid out on construction (``width``, ``height``); :meth:`draw` paints it into a
    white packed canvas (see :mod:`.packed`) and returns one record per tile, boxes
    offset by ``(dx, dy)``.  Nothing is drawn tile by tile: the cells are a strided view
    of the canvas, tiles with the same position in their cell are written by one NumPy
    assignment, and so are labels of the same width and position."""

    def __init__(
        self, maps: np.ndarray, channels: Sequence[int], scales: ScaleSet,
        labels: Sequence[list[str]], zoom: int, cols: int, widths: np.ndarray | None = None,
    ):
        self.maps, self.channels, self.scales = maps, list(channels), scales
        self.labels, self.zoom = [list(row) for row in labels], int(zoom)
        n, h, w = maps.shape
        self.lh = line_height(SMALL)
        self.bw, self.bh = w * self.zoom + 2, h * self.zoom + 2
        if widths is None:
            widths = np.array([text_widths(row, SMALL) for row in self.labels], np.intp)
        self.widths = np.asarray(widths, np.intp).reshape(-1, n)
        self.cell_w = np.maximum(self.bw, self.widths.max(axis=0, initial=0))
        nl = len(self.labels)
        self.cell_h = nl * self.lh + self.bh + nl
        self.cols = max(1, min(int(cols), n))
        self.rows = (n + self.cols - 1) // self.cols
        self.cw = int(self.cell_w.max())
        self.width = self.cols * self.cw + CELL_GAP * (self.cols - 1)
        self.height = self.rows * self.cell_h + CELL_GAP * (self.rows - 1)

    def _cells(self, canvas: np.ndarray, x: int, y: int, shape: tuple[int, ...] = (),
               inner: tuple[int, ...] = ()) -> np.ndarray:
        """The canvas as ``[row, col, y, x]`` over the cells (gaps skipped), starting at
        ``(x, y)`` of the first cell; ``shape``/``inner`` replace the last two axes."""
        s0, s1 = canvas.strides
        sub = canvas[y:, x:]
        shape = shape or (self.cell_h, self.cw)
        inner = inner or (s0, s1)
        return as_strided(sub, (self.rows, self.cols) + shape,
                          ((self.cell_h + CELL_GAP) * s0, (self.cw + CELL_GAP) * s1) + inner,
                          writeable=True)

    def draw(self, canvas: np.ndarray, dx: int = 0, dy: int = 0) -> list[dict[str, Any]]:
        n, h, w = self.maps.shape
        zoom, lh, bw, bh, cw, cols = self.zoom, self.lh, self.bw, self.bh, self.cw, self.cols
        k = np.arange(n)
        row, col = k // cols, k % cols
        ox = (cw - self.cell_w) // 2                      # each cell's content, centred
        bx = ox + (self.cell_w - bw) // 2                 # the framed tile in the cell
        by = lh + 1
        colours = self.scales.colorize_packed(self.maps)  # (n, h, w), native size
        frame = pack_color(FRAME)
        s0, s1 = canvas.strides
        for x0, idx in groups(bx):
            r, c = row[idx], col[idx]
            px = colours[idx] if idx.size < n else colours
            if zoom > 1:
                px = np.repeat(px, zoom, axis=2)
            # the tile's pixels: rows of the zoomed map, each repeated zoom times
            body = self._cells(canvas, dx + x0 + 1, dy + by + 1, (h, zoom, w * zoom),
                               (zoom * s0, s0, s1))
            body[r, c] = px[:, :, None, :]
            cells = self._cells(canvas, dx, dy)
            cells[r, c, by, x0:x0 + bw] = frame
            cells[r, c, by + bh - 1, x0:x0 + bw] = frame
            cells[r, c, by:by + bh, x0] = frame
            cells[r, c, by:by + bh, x0 + bw - 1] = frame
        cells = self._cells(canvas, dx, dy)
        y = 0
        for j, (texts, tws) in enumerate(zip(self.labels, self.widths)):
            if j == 0:  # channel numbers: the same for every stage of that many channels
                atlas = channel_atlas(tuple(texts), SMALL, INK)
            else:
                atlas = LabelAtlas(texts, tws, SMALL, MUTED)
            _draw_labels(cells, row, col, y, ox, self.cell_w, atlas)
            y = by + bh + 1 if j == 0 else y + lh + 1
        return self._records(dx, dy, row, col, bx, by)

    def _records(self, dx: int, dy: int, row: np.ndarray, col: np.ndarray, bx: np.ndarray,
                 by: int) -> list[dict[str, Any]]:
        n, h, w = self.maps.shape
        x0 = dx + col * (self.cw + CELL_GAP) + bx + 1
        y0 = dy + row * (self.cell_h + CELL_GAP) + by + 1
        boxes = list(zip(x0.tolist(), y0.tolist(), (x0 + w * self.zoom).tolist(),
                         (y0 + h * self.zoom).tolist()))
        per_tile = list(map(list, zip(*self.labels))) if self.labels else [[] for _ in range(n)]
        sc, zf, norm = self.scales, float(self.zoom), self.scales.norm
        rows = zip(self.channels, sc.vmin.tolist(), sc.vmax.tolist(), sc.cmaps, sc.signed.tolist(),
                   sc.constant.tolist(), per_tile, boxes)
        if sc.mean is None or sc.std is None:
            recs = [{"channel": ch, "vmin": a, "vmax": b, "cmap": cm, "signed": sg, "norm": norm,
                     "constant": k, "labels": lab, "zoom": zf, "box": box}
                    for ch, a, b, cm, sg, k, lab, box in rows]
        else:
            recs = [{"channel": ch, "vmin": a, "vmax": b, "cmap": cm, "signed": sg, "norm": norm,
                     "constant": k, "mean": m, "std": sd, "labels": lab, "zoom": zf, "box": box}
                    for (ch, a, b, cm, sg, k, lab, box), m, sd in zip(rows, sc.mean.tolist(),
                                                                       sc.std.tolist())]
        for i in sc.empty_indices():  # no finite value (Scale.as_meta says so too)
            recs[i]["empty"] = True
        return recs


def _draw_labels(cells: np.ndarray, row: np.ndarray, col: np.ndarray, y: int, ox: np.ndarray,
                 cell_w: np.ndarray, atlas: LabelAtlas) -> None:
    """Label ``k`` centred over the content of cell ``k`` (``ox``, ``cell_w`` wide) at
    height ``y``, cut to that content, as the block-by-block layout pastes it (labels of
    one width and position written at once)."""
    tws = atlas.widths
    x = ox + (cell_w - tws) // 2 - TEXT_MARGIN  # where each label's margin starts
    a0 = np.maximum(0, ox - x)
    a1 = np.minimum(tws + 2 * TEXT_MARGIN, ox + cell_w - x)
    for (_, xk, b0, b1), idx in groups(tws, x, a0, a1):
        cells[row[idx], col[idx], y:y + atlas.height, xk + b0:xk + b1] = atlas.pixels(idx)[:, :, b0:b1]


def heat_grid(x: np.ndarray, channels: Sequence[int], scales: ScaleSet, box: int, cols: int,
              gap: int) -> Block:
    """``grid_layout([heat_tile(x[c], s, {"channel": c, **s.as_meta()}, box=box) ...],
    cols, gap)`` drawn at once: maps that fit ``box`` enlarged by one integer factor,
    larger ones area-averaged (their *values*, as ``heat_tile`` does) to fit it."""
    n = len(channels)
    _, h, w = x.shape
    if max(h, w) <= box:
        k = zoom_factor(h, w, box)
        colours = scales.colorize_packed(x[list(channels)])
        if k > 1:
            colours = np.repeat(np.repeat(colours, k, axis=1), k, axis=2)
        zoom = float(k)
    else:
        ratio = box / max(h, w)
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        small = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(x[c], dtype=np.float32)).resize(
                size, Image.Resampling.BOX)) for c in channels
        ])
        colours = scales.colorize_packed(small)
        zoom = size[0] / w
    th, tw = colours.shape[1:3]
    cw, ch = tw + 2, th + 2
    cols = max(1, min(int(cols), n))
    rows = (n + cols - 1) // cols
    canvas = packed_canvas(rows * ch + gap * (rows - 1), cols * cw + gap * (cols - 1), BACKGROUND)
    s0, s1 = canvas.strides
    cells = as_strided(canvas, (rows, cols, ch, cw), ((ch + gap) * s0, (cw + gap) * s1, s0, s1),
                       writeable=True)
    k = np.arange(n)
    r, q = k // cols, k % cols
    frame = pack_color(FRAME)
    cells[r, q, 0], cells[r, q, ch - 1], cells[r, q, :, 0], cells[r, q, :, cw - 1] = (frame,) * 4
    cells[r, q, 1:-1, 1:-1] = colours
    x0 = (q * (cw + gap) + 1).tolist()
    y0 = (r * (ch + gap) + 1).tolist()
    records = [{"channel": c, **meta, "zoom": zoom, "box": (a, b, a + tw, b + th)}
               for c, meta, a, b in zip(channels, scales.metas(), x0, y0)]
    return Block(to_image(canvas), records)
