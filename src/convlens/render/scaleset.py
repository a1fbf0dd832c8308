"""``ScaleSet``: one colour scale per map for a whole stack of maps, computed at once.

It gives exactly what a list of :class:`~convlens.render.scale.Scale` gives (the same
ranges, colours, meta and labels, bit for bit), but with NumPy over the stack instead of
Python per map: rendering every channel of every stage of a real network means tens of
thousands of maps.  Colours go through the same ``(256, 3)`` tables and the same
``floor(u * 256)`` rule; the arithmetic is the same float64 arithmetic, element by
element, so the results are identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .colormaps import BAD_COLOR, DEFAULT_DIVERGING, DEFAULT_SEQUENTIAL, CmapName, lut
from .scale import Norm, Scale, finite_range
from .text import fmt

__all__ = ["ScaleSet"]


@dataclass
class ScaleSet:
    """Scales of ``n`` maps as arrays (``vmin[i]`` is ``scales[i].vmin`` ...)."""

    vmin: np.ndarray
    vmax: np.ndarray
    signed: np.ndarray
    constant: np.ndarray
    cmaps: list[str]
    norm: Norm
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cmaps)

    # -- construction -------------------------------------------------------
    @classmethod
    def per_map(cls, x: np.ndarray, cmap: CmapName | None = None) -> "ScaleSet":
        """``[Scale.for_data(m, "map", cmap) for m in x]`` for a ``(n, h, w)`` stack."""
        n = x.shape[0]
        if x.size == 0:
            lo = hi = np.zeros(n)
        else:
            lo = x.min(axis=(1, 2)).astype(np.float64)
            hi = x.max(axis=(1, 2)).astype(np.float64)
        bad = ~(np.isfinite(lo) & np.isfinite(hi))
        for i in np.flatnonzero(bad):  # NaN or inf inside: the finite values' range
            r = finite_range(x[i])
            lo[i], hi[i] = r if r is not None else (0.0, 0.0)
        signed = lo < 0
        m = np.maximum(-lo, hi)
        vmin = np.where(signed, -m, 0.0)
        vmax = np.where(signed, m, hi)
        if cmap is not None:
            cmaps = [cmap] * n
        else:
            cmaps = [DEFAULT_DIVERGING if s else DEFAULT_SEQUENTIAL for s in signed.tolist()]
        return cls(vmin, vmax, signed, lo == hi, cmaps, "map")

    @classmethod
    def from_scales(cls, scales: Sequence[Scale]) -> "ScaleSet":
        """The scales as they are (shared or standardised ones)."""
        std = scales[0].mean is not None if scales else False
        return cls(
            np.array([s.vmin for s in scales], np.float64),
            np.array([s.vmax for s in scales], np.float64),
            np.array([s.signed for s in scales], bool),
            np.array([s.constant for s in scales], bool),
            [s.cmap for s in scales], scales[0].norm if scales else "map",
            np.array([s.mean for s in scales], np.float64) if std else None,
            np.array([s.std or 0.0 for s in scales], np.float64) if std else None,
        )

    def scale(self, i: int) -> Scale:
        """Map ``i``'s :class:`Scale`."""
        return Scale(float(self.vmin[i]), float(self.vmax[i]), self.cmaps[i],  # type: ignore[arg-type]
                     bool(self.signed[i]), self.norm, bool(self.constant[i]),
                     None if self.mean is None else float(self.mean[i]),
                     None if self.std is None else float(self.std[i]))

    # -- colours ------------------------------------------------------------
    def colorize(self, x: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8: map ``i`` through scale ``i`` (as ``Scale.colorize``)."""
        n = x.shape[0]
        a = np.asarray(x, dtype=np.float64)
        span = self.vmax - self.vmin
        flat = span <= 0
        col = (slice(None), None, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.subtract(a, self.vmin[col])
            np.divide(u, np.where(flat, 1.0, span)[col], out=u)
            np.clip(u, 0.0, 1.0, out=u)
        if flat.any():  # one value: the low colour, or the middle of a diverging scale
            fill = np.where(self.signed | (self.mean is not None), 0.5, 0.0)
            for i in np.flatnonzero(flat):
                u[i] = np.where(np.isnan(a[i]), np.nan, fill[i])
        bad = np.isnan(u)
        has_bad = bool(bad.any())
        if has_bad:
            u[bad] = 0.0
        np.multiply(u, 256.0, out=u)
        np.floor(u, out=u)
        np.clip(u, 0, 255, out=u)
        idx = u.astype(np.intp)
        names = sorted(set(self.cmaps))
        if len(names) == 1:
            out = lut(names[0])[idx]  # type: ignore[arg-type]
        else:
            table = np.concatenate([lut(nm) for nm in names])  # type: ignore[arg-type]
            which = np.array([names.index(c) * 256 for c in self.cmaps], np.intp)
            idx += which[col]
            out = table[idx]
        if has_bad:
            out[bad] = BAD_COLOR
        return out

    # -- words --------------------------------------------------------------
    def metas(self) -> list[dict[str, Any]]:
        """``[s.as_meta() for s in scales]``."""
        vmin, vmax = self.vmin.tolist(), self.vmax.tolist()
        signed, constant = self.signed.tolist(), self.constant.tolist()
        norm = self.norm
        out = [
            {"vmin": a, "vmax": b, "cmap": c, "signed": s, "norm": norm, "constant": k}
            for a, b, c, s, k in zip(vmin, vmax, self.cmaps, signed, constant)
        ]
        if self.mean is not None and self.std is not None:
            for d, m, sd in zip(out, self.mean.tolist(), self.std.tolist()):
                d["mean"], d["std"] = m, sd
        return out

    def describe(self) -> list[str]:
        """``[s.describe() for s in scales]`` (numbers formatted once each)."""
        cache: dict[float, str] = {}

        def f(v: float) -> str:
            s = cache.get(v)
            if s is None:
                s = cache[v] = fmt(v)
            return s

        if self.mean is not None and self.std is not None:
            return [
                f"mean {f(m)}, sd {f(sd)}" + (" (constant)" if k else "")
                for m, sd, k in zip(self.mean.tolist(), self.std.tolist(), self.constant.tolist())
            ]
        out = []
        for a, b, k in zip(self.vmin.tolist(), self.vmax.tolist(), self.constant.tolist()):
            rng = f"{f(a)} ... {f(b)}"
            if k:
                rng = f"{rng} (constant data)" if a != b else f"constant {f(a)}"
            out.append(rng)
        return out
