"""Positions with equal keys, found with one sort: drawing thousands of tiles or labels
as a few NumPy assignments, one per group of equal size and position."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["groups"]


def groups(*keys: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Indices of the positions where the integer ``keys`` (equally long arrays) are all
    equal, as ``(key values, indices in increasing order)``, in order of first
    appearance (the key values: an int for one key, a tuple for several)."""
    n = keys[0].size
    if n == 0:
        return []
    if len(keys) == 1:
        code = keys[0].astype(np.int64)
    else:  # one int64 per position: the keys are small (pixels), offset to be >= 0
        code = np.zeros(n, np.int64)
        for k in keys:
            lo = int(k.min())
            span = int(k.max()) - lo + 1
            code = code * span + (k - lo)
    if (code == code[0]).all():
        return [(_value(keys, 0), np.arange(n))]
    order = np.argsort(code, kind="stable")
    sc = code[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    ends = np.r_[starts[1:], n]
    # in order of each group's first index (its first entry: the sort is stable)
    out = []
    for g in np.argsort(order[starts], kind="stable").tolist():
        idx = order[starts[g]:ends[g]]
        out.append((_value(keys, int(idx[0])), idx))
    return out


def _value(keys: tuple[np.ndarray, ...], i: int) -> Any:
    return int(keys[0][i]) if len(keys) == 1 else tuple(int(k[i]) for k in keys)
