"""Composition of figure pieces: ``Block`` (an image plus meta records that know where
they were drawn) stacked vertically/horizontally, and pixel resizing rules.

Every record may hold a ``"box"`` (or ``"..._box"``) ``(x0, y0, x1, y1)`` (x1, y1
exclusive) in the block's pixels; stacking shifts boxes, nested record lists included, so the final
``Figure.meta`` says where each panel and tile is.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image

from convlens.render.text import BACKGROUND

__all__ = [
    "Block", "vstack", "hstack", "pad", "grid_layout", "upscale", "zoom_factor", "fit_image", "shift",
    "Placed", "place_v", "place_h", "place_pad", "draw",
]


class Block:
    """An image and the records of what was drawn in it.

    Stacking blocks moves their records; the move is noted (records, dx, dy) and done
    once, when :attr:`records` is read, however deep the stacking (a figure of hundreds
    of panels would otherwise copy every record at every level)."""

    __slots__ = ("image", "_groups")

    def __init__(self, image: Image.Image, records: list[dict[str, Any]] | None = None):
        self.image = image
        self._groups: list[tuple[list[dict[str, Any]], int, int]] = [
            (records if records is not None else [], 0, 0)
        ]

    @property
    def records(self) -> list[dict[str, Any]]:
        groups = self._groups
        if len(groups) != 1 or groups[0][1] or groups[0][2]:
            flat: list[dict[str, Any]] = []
            for recs, dx, dy in groups:
                flat.extend(shift(recs, dx, dy))
            self._groups = groups = [(flat, 0, 0)]
        return groups[0][0]

    @records.setter
    def records(self, value: list[dict[str, Any]]) -> None:
        self._groups = [(value, 0, 0)]

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def __repr__(self) -> str:
        return f"Block({self.width}x{self.height}, {sum(len(g[0]) for g in self._groups)} records)"


def shift(record: Any, dx: int, dy: int) -> Any:
    """A copy of ``record`` with every ``"box"`` inside it moved by (dx, dy)."""
    t = type(record)
    if t is dict:
        out = record.copy()
        for k, v in record.items():
            tv = type(v)
            if tv in _SCALARS:  # nothing inside to move (and no box is a number or text)
                continue
            if k == "box" or k.endswith("_box"):
                x0, y0, x1, y1 = v
                out[k] = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
            elif tv is not tuple:
                out[k] = shift(v, dx, dy)
        return out
    if t is list:
        return [shift(r, dx, dy) for r in record]
    if isinstance(record, dict):
        return shift(dict(record), dx, dy)
    if isinstance(record, list):
        return shift(list(record), dx, dy)
    return record


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _as_block(b: Block | Image.Image) -> Block:
    return b if isinstance(b, Block) else Block(b)


def _paste(canvas: Image.Image, blocks: Sequence[Block], offsets: Sequence[tuple[int, int]]) -> Block:
    groups: list[tuple[list[dict[str, Any]], int, int]] = []
    for b, (x, y) in zip(blocks, offsets):
        canvas.paste(b.image, (x, y))
        # records move with their block; copied (moved) once, when read (always a copy,
        # as the records of a stacked block never were the originals)
        groups.extend((recs, dx + x, dy + y) for recs, dx, dy in b._groups if recs)
    out = Block(canvas)
    if len(groups) == 1 and not (groups[0][1] or groups[0][2]):
        out._groups = [(shift(groups[0][0], 0, 0), 0, 0)]  # one group, not moved: copy now
    elif groups:
        out._groups = groups
    return out


def _place(blocks: Sequence[Any], gap: int, align: str, vertical: bool) -> Placed:
    """Blocks one after another, down (``vertical``) or across, aligned across that
    direction (``left/center/right`` down, ``top/center/bottom`` across): the size and
    each block's offset.  (What ``vstack``/``hstack`` draw and ``place_v``/``place_h``
    describe.)"""
    if not blocks:
        return Placed(1, 1, [])
    sizes = [(b.width, b.height) if vertical else (b.height, b.width) for b in blocks]
    across = max(a for a, _ in sizes)
    along = sum(n for _, n in sizes) + gap * (len(blocks) - 1)
    where = {"left": 0, "top": 0, "center": 1, "right": 2, "bottom": 2}[align]
    parts, pos = [], 0
    for b, (a, n) in zip(blocks, sizes):
        off = (0, (across - a) // 2, across - a)[where]
        parts.append((b, off, pos) if vertical else (b, pos, off))
        pos += n + gap
    return Placed(across, along, parts) if vertical else Placed(along, across, parts)


def _stack(blocks: Sequence[Block | Image.Image], gap: int, align: str, vertical: bool) -> Block:
    blocks = [_as_block(b) for b in blocks]
    if not blocks:
        return Block(Image.new("RGB", (1, 1), BACKGROUND))
    placed = _place(blocks, gap, align, vertical)
    canvas = Image.new("RGB", (placed.width, placed.height), BACKGROUND)
    return _paste(canvas, blocks, [(x, y) for _, x, y in placed.parts])


def vstack(
    blocks: Sequence[Block | Image.Image], gap: int = 0,
    align: Literal["left", "center", "right"] = "left",
) -> Block:
    return _stack(blocks, gap, align, vertical=True)


def hstack(
    blocks: Sequence[Block | Image.Image], gap: int = 0,
    align: Literal["top", "center", "bottom"] = "top",
) -> Block:
    return _stack(blocks, gap, align, vertical=False)


def pad(block: Block | Image.Image, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> Block:
    block = _as_block(block)
    canvas = Image.new("RGB", (block.width + left + right, block.height + top + bottom), BACKGROUND)
    return _paste(canvas, [block], [(left, top)])


def upscale(arr: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (each value becomes a
    ``factor x factor`` block; values are never blended)."""
    factor = int(factor)
    if factor <= 1:
        return arr
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)


def zoom_factor(h: int, w: int, box: int) -> int:
    """The integer factor that makes an ``h x w`` map as big as fits a ``box``-pixel
    square (at least 1)."""
    return max(1, int(box) // max(1, h, w))


def fit_image(pixels: np.ndarray, box: int) -> tuple[Image.Image, float]:
    """An ``(h, w, 3)`` uint8 picture sized to fit a ``box`` square: enlarged by an
    integer factor (nearest neighbour) when smaller, reduced (area average,
    ``Image.BOX``) when larger.  Returns the image and the zoom (display px per value)."""
    h, w = pixels.shape[:2]
    if max(h, w) <= box:
        k = zoom_factor(h, w, box)
        return Image.fromarray(np.ascontiguousarray(upscale(pixels, k))), float(k)
    ratio = box / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    img = Image.fromarray(np.ascontiguousarray(pixels)).resize(size, Image.Resampling.BOX)
    return img, size[0] / w


def grid_layout(blocks: Sequence[Block | Image.Image], cols: int, gap: int = 4) -> Block:
    """Blocks in rows of ``cols``, each centred in a cell as big as the largest block."""
    blocks = [_as_block(b) for b in blocks]
    if not blocks:
        return Block(Image.new("RGB", (1, 1), BACKGROUND))
    cols = max(1, min(int(cols), len(blocks)))
    cw = max(b.width for b in blocks)
    ch = max(b.height for b in blocks)
    rows = (len(blocks) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cw + gap * (cols - 1), rows * ch + gap * (rows - 1)), BACKGROUND)
    offsets = []
    for i, b in enumerate(blocks):
        r, c = divmod(i, cols)
        offsets.append((c * (cw + gap) + (cw - b.width) // 2, r * (ch + gap) + (ch - b.height) // 2))
    return _paste(canvas, blocks, offsets)


# -- placing without drawing ------------------------------------------------------------
class Placed:
    """Blocks placed but not drawn: what ``vstack``/``hstack``/``pad`` would draw, as the
    size and the offset of each part.  :func:`draw` then pastes every picture once into
    one canvas, where nesting the drawing functions copies each pixel once per level
    (a figure of many rows of panels would be copied four or five times over)."""

    __slots__ = ("width", "height", "parts")

    def __init__(self, width: int, height: int, parts: list[tuple[Any, int, int]]):
        self.width, self.height, self.parts = width, height, parts


def place_v(blocks: Sequence[Any], gap: int = 0,
            align: Literal["left", "center", "right"] = "left") -> Placed:
    """``vstack`` placed, not drawn."""
    return _place(blocks, gap, align, vertical=True)


def place_h(blocks: Sequence[Any], gap: int = 0,
            align: Literal["top", "center", "bottom"] = "top") -> Placed:
    """``hstack`` placed, not drawn."""
    return _place(blocks, gap, align, vertical=False)


def place_pad(block: Any, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> Placed:
    """``pad`` placed, not drawn."""
    return Placed(block.width + left + right, block.height + top + bottom, [(block, left, top)])


def draw(placed: Placed) -> Block:
    """The picture ``placed`` describes: what the nested ``vstack``/``hstack``/``pad``
    calls give, pixels and records alike (records moved once, when read)."""
    canvas = Image.new("RGB", (placed.width, placed.height), BACKGROUND)
    groups: list[tuple[list[dict[str, Any]], int, int]] = []
    stack: list[tuple[Any, int, int]] = [(placed, 0, 0)]
    while stack:
        item, x, y = stack.pop()
        if isinstance(item, Placed):
            stack.extend((b, x + bx, y + by) for b, bx, by in reversed(item.parts))
        elif isinstance(item, Block):
            canvas.paste(item.image, (x, y))
            groups.extend((recs, dx + x, dy + y) for recs, dx, dy in item._groups if recs)
        else:
            canvas.paste(item, (x, y))
    out = Block(canvas)
    if groups:
        out._groups = groups if len(groups) > 1 or groups[0][1] or groups[0][2] else [
            (shift(groups[0][0], 0, 0), 0, 0)]
    return out
