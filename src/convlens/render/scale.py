"""``Scale``: the linear map from data values to colours, and the normalisation modes.

Rules (the "honest pictures" convention):

* Signed data (its minimum < 0) gets a diverging map over the symmetric range
  ``[-m, m]`` with ``m = max(|min|, max)``, so zero is always the middle colour.
* Non-negative data gets a sequential map over ``[0, max]`` (not ``[min, max]``):
  zero stays the darkest colour in every map, so a ReLU map that is "all on" does
  not look like one that is mostly off, and maps of one stage stay comparable.
* Standardised data (``norm="standard"``) is ``(x - mean) / sd`` per map, drawn on a
  diverging map over ``mean ± 3 sd`` (the scale keeps the real numbers).
* Data holding a single value (``constant``) never divides by zero: an all-zero map
  is the low colour, a constant standardised map the middle colour.
* NaN is drawn magenta (``BAD_COLOR``), +inf and -inf as the two end colours; the
  ranges are those of the finite values.  Every picture counts them
  (:func:`count_nonfinite`: ``meta["nan"]``, ``meta["inf"]``) and names them in its
  caption (:func:`nonfinite_note`).  Data with no finite value gets an ``empty``
  scale, labelled "no finite values", never "constant 0".

Normalisation modes (``Norm``): ``"map"`` one range per channel map, ``"stage"`` one
range over all channels and all images of the stage, ``"global"`` one range over
every stage drawn together (a stage drawn alone falls back to its stage range),
``"standard"`` per map standardised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from convlens.errors import RenderError
from convlens.render.colormaps import (
    BAD_COLOR, DEFAULT_DIVERGING, DEFAULT_SEQUENTIAL, CmapName, check_cmap, lut, unit_to_index,
)
from convlens.render.text import fmt

__all__ = ["Norm", "NORMS", "NORM_LABELS", "SIGMAS", "Scale", "check_norm", "finite_range",
           "count_nonfinite", "nonfinite_note", "NO_FINITE"]

Norm = Literal["map", "stage", "global", "standard"]
NORMS: tuple[str, ...] = get_args(Norm)
NORM_LABELS: dict[str, str] = {
    "map": "per-map range",
    "stage": "stage range",
    "global": "global range",
    "standard": "standardised, mean ± 3 sd",
}
SIGMAS = 3.0
"""A standardised map is drawn over mean ± SIGMAS standard deviations."""


def check_norm(norm: object) -> Norm:
    if not isinstance(norm, str) or norm not in NORMS:
        raise RenderError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    return norm  # type: ignore[return-value]


NO_FINITE = "no finite values"
"""The label of a scale whose data holds no finite value."""


def count_nonfinite(arr: np.ndarray) -> dict[str, int]:
    """``{"nan": n, "inf": n}`` of ``arr`` (``inf`` counts +inf and -inf), plus
    ``"+inf"`` and ``"-inf"`` when there are some; ``"values"``: the size."""
    a = np.asarray(arr)
    out = {"nan": 0, "inf": 0, "values": int(a.size)}
    if a.size == 0 or a.dtype.kind not in "fc":
        return out
    with np.errstate(invalid="ignore"):
        if np.isfinite(a.min()) and np.isfinite(a.max()):  # NaN and inf would show here
            return out
    pos, neg = int(np.count_nonzero(a == np.inf)), int(np.count_nonzero(a == -np.inf))
    out["nan"] = int(np.count_nonzero(np.isnan(a)))
    out["inf"] = pos + neg
    if out["inf"]:
        out["+inf"], out["-inf"] = pos, neg
    return out


def nonfinite_note(counts: dict[str, int]) -> str | None:
    """The caption line for :func:`count_nonfinite`'s counts (None: all finite), e.g.
    ``magenta = NaN (3 of 64 values) · +inf 2, -inf 0 drawn as the end colours``."""
    parts = []
    n, total = counts.get("nan", 0), counts.get("values", 0)
    if n:
        how_many = f"all {n:,}" if n == total else f"{n:,} of {total:,}"
        parts.append(f"magenta = NaN ({how_many} value{'s' if total != 1 else ''})")
    if counts.get("inf", 0):
        parts.append(f"+inf {counts.get('+inf', 0):,}, -inf {counts.get('-inf', 0):,} "
                     "drawn as the end colours")
    return " · ".join(parts) or None


def finite_range(arr: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values of ``arr``; None when there are none."""
    arr = np.asarray(arr)
    if arr.size == 0:
        return None
    lo, hi = arr.min(), arr.max()
    if np.isfinite(lo) and np.isfinite(hi):  # then every value is finite (NaN, inf show here)
        return float(lo), float(hi)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = arr[finite]
        if arr.size == 0:
            return None
    return float(arr.min()), float(arr.max())


@dataclass(frozen=True)
class Scale:
    """A linear colour scale: ``vmin`` -> colour 0, ``vmax`` -> colour 255 of ``cmap``."""

    vmin: float
    vmax: float
    cmap: CmapName
    signed: bool
    norm: Norm
    constant: bool = False
    """The data behind the scale holds one value (it may still be a valid range)."""
    mean: float | None = None
    """Standardised scales only: the map's mean (the middle colour) ..."""
    std: float | None = None
    """... and its standard deviation."""
    empty: bool = False
    """The data behind the scale holds no finite value (all NaN or inf, or nothing)."""

    # -- construction -------------------------------------------------------
    @classmethod
    def from_range(
        cls, lo: float | None, hi: float | None, norm: Norm = "stage", cmap: CmapName | None = None
    ) -> "Scale":
        """The scale for data spanning ``[lo, hi]`` (None, None: no finite data)."""
        norm = check_norm(norm)
        empty = lo is None or hi is None
        if empty:
            lo = hi = 0.0
        lo, hi = float(lo), float(hi)
        if lo > hi:
            raise RenderError(f"value range {lo} > {hi}; expected vmin <= vmax")
        signed = lo < 0
        if signed:
            m = max(-lo, hi)
            vmin, vmax = -m, m
        else:
            vmin, vmax = 0.0, hi
        name = check_cmap(cmap) if cmap is not None else (
            DEFAULT_DIVERGING if signed else DEFAULT_SEQUENTIAL
        )
        return cls(vmin, vmax, name, signed, norm, constant=lo == hi, empty=empty)

    @classmethod
    def for_data(cls, arr: np.ndarray, norm: Norm = "map", cmap: CmapName | None = None) -> "Scale":
        """The scale of ``arr`` on its own (``norm="standard"`` standardises it)."""
        if norm == "standard":
            return cls.standardized(arr, cmap)
        r = finite_range(arr)
        return cls.from_range(*(r or (None, None)), norm=norm, cmap=cmap)

    @classmethod
    def standardized(cls, arr: np.ndarray, cmap: CmapName | None = None) -> "Scale":
        """Diverging scale over ``mean ± 3 sd`` of the finite values of ``arr``."""
        a = np.asarray(arr, dtype=np.float64)
        a = a[np.isfinite(a)]
        mean = float(a.mean()) if a.size else 0.0
        std = float(a.std()) if a.size else 0.0
        name = check_cmap(cmap) if cmap is not None else DEFAULT_DIVERGING
        return cls(
            mean - SIGMAS * std, mean + SIGMAS * std, name, True, "standard",
            constant=std == 0.0, mean=mean, std=std, empty=a.size == 0,
        )

    # -- mapping ------------------------------------------------------------
    @property
    def center(self) -> float:
        """The baseline value: the mean (standardised), 0 (signed) or vmin (sequential)."""
        if self.mean is not None:
            return self.mean
        return 0.0 if self.signed else self.vmin

    def to_unit(self, arr: np.ndarray) -> np.ndarray:
        """Values mapped linearly to [0, 1] (clipped; NaN stays NaN), as float64."""
        a = np.asarray(arr, dtype=np.float64)
        span = self.vmax - self.vmin
        if span <= 0:  # one value: low colour, or the middle colour of a diverging scale
            fill = 0.5 if (self.signed or self.mean is not None) else 0.0
            # +inf and -inf stay the end colours, NaN stays NaN
            return np.where(np.isnan(a), np.nan,
                            np.where(a == np.inf, 1.0, np.where(a == -np.inf, 0.0, fill)))
        with np.errstate(invalid="ignore"):
            return np.clip((a - self.vmin) / span, 0.0, 1.0)

    def colorize(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` as RGB uint8 (shape ``arr.shape + (3,)``) through the colour table.

        +inf/-inf clip to the end colours; NaN becomes ``BAD_COLOR`` (magenta).
        """
        idx = unit_to_index(self.to_unit(arr))
        out = lut(self.cmap)[np.maximum(idx, 0)]
        bad = idx < 0
        if bad.any():
            out[bad] = BAD_COLOR
        return out

    # -- labels -------------------------------------------------------------
    def ticks(self, sigma_units: bool = False) -> list[tuple[float, str]]:
        """``(value, label)`` pairs for a colour bar: vmin, the centre when diverging, vmax.

        ``sigma_units`` labels a standardised scale "-3 sd / mean / +3 sd" (a bar shared
        by maps of different means); otherwise the labels are the real values.
        """
        if self.empty:
            return [(np.nan, NO_FINITE)]
        if self.constant and self.vmin == self.vmax:
            return [(self.vmin, f"constant {fmt(self.vmin)}")]
        if sigma_units and self.mean is not None:
            return [(self.vmin, f"-{SIGMAS:g} sd"), (self.center, "mean"), (self.vmax, f"+{SIGMAS:g} sd")]
        out = [(self.vmin, fmt(self.vmin))]
        if self.signed or self.mean is not None:
            out.append((self.center, fmt(self.center)))
        out.append((self.vmax, fmt(self.vmax)))
        return out

    def describe(self) -> str:
        """One line, e.g. ``stage range 0 ... 3.21`` or ``constant 0``."""
        if self.empty:
            return NO_FINITE
        if self.mean is not None:
            text = f"mean {fmt(self.mean)}, sd {fmt(self.std or 0.0)}"
            return text + (" (constant)" if self.constant else "")
        rng = f"{fmt(self.vmin)} ... {fmt(self.vmax)}"
        if self.constant:
            return f"{rng} (constant data)" if self.vmin != self.vmax else f"constant {fmt(self.vmin)}"
        return rng

    def as_meta(self) -> dict[str, Any]:
        """What a Figure's meta records about this scale (plain Python values)."""
        meta: dict[str, Any] = {
            "vmin": float(self.vmin), "vmax": float(self.vmax), "cmap": self.cmap,
            "signed": bool(self.signed), "norm": self.norm, "constant": bool(self.constant),
        }
        if self.mean is not None:
            meta["mean"] = float(self.mean)
            meta["std"] = float(self.std or 0.0)
        if self.empty:
            meta["empty"] = True
        return meta
