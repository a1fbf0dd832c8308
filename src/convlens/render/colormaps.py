"""Colour maps as ``(256, 3)`` uint8 lookup tables.

Matplotlib is used only to *read* its colour maps, imported lazily the first time
a table is needed, so ``import convlens.render`` stays cheap.  Tables are cached
and read-only.  Row ``i`` of a table is exactly
``colormaps[name].resampled(256)(i, bytes=True)`` (the i-th of 256 equal bins); a unit value ``u`` picks index ``min(floor(u * 256), 255)`` (matplotlib's own rule),
so ``u = 0.5`` -- zero on a signed scale -- gets index 128, the middle colour.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal, get_args

import numpy as np

from convlens.errors import RenderError

__all__ = [
    "CmapName", "CMAPS", "SEQUENTIAL", "DIVERGING",
    "DEFAULT_SEQUENTIAL", "DEFAULT_DIVERGING", "BAD_COLOR",
    "lut", "check_cmap", "unit_to_index", "packed_lut",
]

SequentialName = Literal["viridis", "magma", "inferno", "plasma", "cividis", "gray"]
DivergingName = Literal["RdBu_r", "coolwarm", "bwr", "seismic", "PuOr_r", "PiYG", "BrBG"]
CmapName = Literal[
    "viridis", "magma", "inferno", "plasma", "cividis", "gray",
    "RdBu_r", "coolwarm", "bwr", "seismic", "PuOr_r", "PiYG", "BrBG",
]
SEQUENTIAL: tuple[str, ...] = get_args(SequentialName)
DIVERGING: tuple[str, ...] = get_args(DivergingName)
CMAPS: tuple[str, ...] = get_args(CmapName)

DEFAULT_SEQUENTIAL: CmapName = "viridis"
"""For non-negative data (ReLU outputs, pooled maps)."""
DEFAULT_DIVERGING: CmapName = "RdBu_r"
"""For signed data; the scale is symmetric, so zero lands on the middle (near-white) colour."""

BAD_COLOR = np.array([255, 0, 255], dtype=np.uint8)
"""Magenta, for NaN/inf values: no colour map here uses it, so it cannot be mistaken for data."""


def check_cmap(name: object) -> CmapName:
    """``name`` if it is a supported colour map, else a one-line ``RenderError``."""
    if not isinstance(name, str) or name not in CMAPS:
        raise RenderError(
            f"unknown colour map {name!r}; expected one of {', '.join(CMAPS)} "
            f"(sequential: {', '.join(SEQUENTIAL)}; diverging: {', '.join(DIVERGING)})"
        )
    return name  # type: ignore[return-value]


def lut(name: CmapName) -> np.ndarray:
    """The colour map ``name`` as a read-only ``(256, 3)`` uint8 table (cached)."""
    return _lut(check_cmap(name))


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    try:
        from matplotlib import colormaps  # lazy: only colour tables need matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise RenderError(
            "colour maps need matplotlib, which is not installed; run: pip install matplotlib"
        ) from None
    table = colormaps[name].resampled(256)(np.arange(256), bytes=True)[:, :3]
    table = np.ascontiguousarray(table, dtype=np.uint8)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=None)
def packed_lut(name: CmapName) -> np.ndarray:
    """:func:`lut` as ``(256,)`` packed pixels (see :mod:`.packed`), read-only, cached."""
    from convlens.render.packed import pack

    table = pack(lut(name))
    table.flags.writeable = False
    return table


def unit_to_index(unit: np.ndarray) -> np.ndarray:
    """Table indices for values in [0, 1] (``floor(u * 256)`` clipped to 255), NaN -> -1."""
    unit = np.asarray(unit, dtype=np.float64)
    bad = ~np.isfinite(unit)
    idx = np.floor(np.where(bad, 0.0, unit) * 256.0)
    idx = np.clip(idx, 0, 255).astype(np.int16)
    idx[bad] = -1
    return idx
