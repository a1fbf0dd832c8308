"""``LabelAtlas``: the pixels of many one-line labels, each distinct text drawn once,
stacked by width so any selection of labels of one width is one NumPy take."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from convlens.render.groups import groups
from convlens.render.text import line_height, packed_texts_many, text_widths

__all__ = ["LabelAtlas", "channel_atlas"]


class LabelAtlas:
    """Labels ``texts`` (label ``k`` is ``texts[k]``) in ``size``/``color``, as packed
    pixels with ``TEXT_MARGIN`` white columns each side (``text.packed_text``)."""

    def __init__(self, texts: Sequence[str], widths: np.ndarray | None, size: int,
                 color: tuple[int, int, int]):
        self.height = line_height(size)
        self.widths = text_widths(texts, size) if widths is None else np.asarray(widths, np.intp)
        index: dict[str, int] = {}
        self.ids = np.array([index.setdefault(t, len(index)) for t in texts], np.intp)
        first = np.empty(len(index), np.intp)
        first[self.ids[::-1]] = np.arange(len(self.ids) - 1, -1, -1)
        uniq = list(index)
        drawn = packed_texts_many(uniq, size, color)
        self.stacks: dict[int, np.ndarray] = {}  # width -> its distinct labels, stacked
        self.slot = np.empty(len(uniq), np.intp)  # distinct label -> its place in the stack
        self.width_of = self.widths[first]
        for wd, members in groups(self.width_of):
            arrays = [drawn[u] for u in members.tolist()]
            self.stacks[wd] = np.concatenate(arrays).reshape(len(arrays), *arrays[0].shape)
            self.slot[members] = np.arange(members.size)

    def pixels(self, idx: np.ndarray) -> np.ndarray:
        """``(len(idx), height, width + 2 * TEXT_MARGIN)`` pixels of labels ``idx``, which
        must all be equally wide."""
        u = self.ids[idx]
        return self.stacks[int(self.width_of[u[0]])][self.slot[u]]


@lru_cache(maxsize=8)
def channel_atlas(texts: tuple[str, ...], size: int, color: tuple[int, int, int]) -> LabelAtlas:
    """A cached atlas for labels that repeat from figure to figure (channel numbers:
    every stage with 1,152 channels has the same 1,152)."""
    return LabelAtlas(texts, None, size, color)
