"""Many one-line labels drawn at once from cached glyphs, pixel for pixel as Pillow draws
each of them.

Pillow draws a text by rendering each glyph with FreeType and laying it *over* the glyphs
before it (``new = old + g - old * g / 255``, rounded) in a coverage mask, then painting
the ink through that mask onto the picture (``white + (ink - white) * coverage / 255``,
rounded).  With whole-pixel advances and no kerning (checked per character, see
``text._advances``), every glyph's mask is the same wherever it stands, so a label is
its glyphs, cached once each, laid over one another at their pen positions: thousands
of labels at once, one NumPy step per character position, instead of one FreeType call
per label.  Each character is first checked against Pillow in a few strings; a
character that does not match (or is not printable, or is wider than the glyph cell) is
left to Pillow, label by label.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided
from PIL import Image, ImageDraw

__all__ = ["draw_coverage", "ink_table"]

_PAD = 8
"""Columns kept left and right of a glyph's pen position in its cell."""
_CELL = 2 * _PAD + 24
"""Width of a glyph's cell (its pen position at ``_PAD``)."""
_PROBE_CHARS = "0123456789#.-±e"


class _Glyphs:
    """The glyphs of one font size met so far: coverage cells, advances, and which
    characters have been found to draw exactly as Pillow draws them."""

    def __init__(self, size: int):
        from convlens.render.text import font, line_height

        self.size, self.font, self.height = size, font(size), line_height(size)
        self.rows: dict[str, int] = {}      # character -> its cell in ``cells``
        self.advance: dict[str, int] = {}   # character -> advance, pixels
        self.unsafe: set[str] = set()
        self.cells = np.zeros((1, self.height, _CELL), np.uint16)  # row 0: nothing
        self.ink = (_PAD, _PAD)  # the columns of the cells any glyph inks
        self.lock = threading.Lock()

    def _pillow(self, text: str, width: int, x: int) -> np.ndarray:
        img = Image.new("L", (width, self.height), 0)
        ImageDraw.Draw(img).text((x, 0), text, font=self.font, fill=255)
        return np.asarray(img).astype(np.uint16)

    def draw(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        with self.lock:  # one thread at a time learns and draws (the cells grow)
            self._learn({c for t in texts for c in t})
            todo = [k for k, t in enumerate(texts) if all(c in self.rows for c in t)]
            out: list[np.ndarray | None] = [None] * len(texts)
            for k, cov in zip(todo, self._compose([texts[k] for k in todo])):
                out[k] = cov.astype(np.uint8)
            return out

    def _learn(self, chars: set[str]) -> None:
        """Cells for the new characters among ``chars`` (each checked against Pillow)."""
        from convlens.render.text import _advances

        if not self.rows:  # the characters the probes are made of come first
            chars = set(chars) | set(_PROBE_CHARS)
        new = sorted(c for c in chars if c not in self.rows and c not in self.unsafe)
        if not new:
            return
        adv = _advances(self.size, tuple(c for c in new if c.isprintable()))
        cells = []
        for c in new:
            a64 = adv.get(c) if adv is not None else None
            if a64 is None or a64 % 64 or a64 // 64 > _CELL - 2 * _PAD:
                self.unsafe.add(c)
                continue
            cell = self._pillow(c, _CELL, _PAD)
            if cell[:, 0].any() or cell[:, -1].any():  # ink reaching the cell's edge
                self.unsafe.add(c)
                continue
            self.advance[c] = a64 // 64
            self.rows[c] = len(self.cells) + len(cells)
            cells.append(cell)
        if cells:
            self.cells = np.concatenate([self.cells, np.stack(cells)])
            used = np.flatnonzero(self.cells.any(axis=(0, 1)))
            if used.size:
                self.ink = (int(used[0]), int(used[-1]) + 1)
        for c in new:  # in a few neighbourhoods, as Pillow draws it
            if c in self.rows:
                probes = [f"0{c}4", f"{c}{c}7", f"#{c}", f"±{c}.5e-0{c}", c]
                if any(not np.array_equal(self._compose([p])[0], self._reference(p))
                       for p in probes if all(ch in self.rows for ch in p)):
                    self.unsafe.add(c)
                    del self.rows[c]

    def _reference(self, text: str) -> np.ndarray:
        width = sum(self.advance[c] for c in text)
        return self._pillow(text, width + 2 * _margin(), _margin())

    def _compose(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Coverage ``(height, width + 2 * TEXT_MARGIN)`` of each text (every character
        known), the text's pen starting at ``TEXT_MARGIN``."""
        m = len(texts)
        arr = np.array(list(texts), dtype=str)
        codes = arr.view(np.uint32).reshape(m, -1) if m else np.zeros((0, 0), np.uint32)
        length = codes.shape[1]
        top = int(codes.max(initial=0))
        row_of = np.zeros(top + 1, np.intp)
        adv_of = np.zeros(top + 1, np.intp)
        for c in {chr(k) for k in np.unique(codes).tolist() if k}:
            row_of[ord(c)], adv_of[ord(c)] = self.rows[c], self.advance[c]
        rows, advs = row_of[codes], adv_of[codes]
        margin = _margin()
        pen = margin + np.cumsum(advs, axis=1) - advs          # (m, length), label pixels
        widths = advs.sum(axis=1) + 2 * margin
        wide = int(widths.max(initial=2 * margin)) + 2 * _PAD + _CELL
        canvas = np.zeros((m, self.height, wide), np.uint16)     # label x -> column x + _PAD
        c0, c1 = self.ink  # only the columns some glyph inks are laid over
        cells = self.cells[:, :, c0:c1]
        s0, s1, s2 = canvas.strides
        windows = as_strided(canvas, (m, self.height, wide - (c1 - c0) + 1, c1 - c0),
                             (s0, s1, s2, s2), writeable=True)
        for j in range(length):
            sel = np.flatnonzero(rows[:, j])
            if not sel.size:
                continue
            g = cells[rows[sel, j]]
            at = pen[sel, j] + c0              # the cell starts _PAD left of the pen
            old = windows[sel, :, at]
            # over: old + g - old * g / 255, rounded (uint16 holds every step: <= 65407)
            t = old * (255 - g) + 255 * g + 128
            windows[sel, :, at] = (t + (t >> 8)) >> 8
        return [canvas[k, :, _PAD:_PAD + w] for k, w in enumerate(widths.tolist())]


def _margin() -> int:
    from convlens.render.text import TEXT_MARGIN

    return TEXT_MARGIN


_SETS: dict[int, _Glyphs] = {}
_SETS_LOCK = threading.Lock()


def _glyphs(size: int) -> _Glyphs:
    with _SETS_LOCK:
        g = _SETS.get(size)
        if g is None:
            g = _SETS[size] = _Glyphs(size)
        return g


def draw_coverage(texts: Sequence[str], size: int) -> list[np.ndarray | None]:
    """The coverage mask Pillow paints each text through (``TEXT_MARGIN`` columns each
    side, uint8), composed from cached glyphs; None for a text with a character left to
    Pillow."""
    return _glyphs(size).draw(texts)


def ink_table(color: tuple[int, ...]) -> np.ndarray:
    """``(256, 3)`` uint8: the colour of each coverage value, ink ``color`` on white, as
    Pillow paints it (``white + (ink - white) * a / 255``, rounded)."""
    a = np.arange(256)[:, None]
    ink = np.asarray(color[:3], np.int64)[None, :]
    t = 255 * (255 - a) + ink * a + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)
