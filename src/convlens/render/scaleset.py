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

from convlens.render.colormaps import BAD_COLOR, DEFAULT_DIVERGING, DEFAULT_SEQUENTIAL, CmapName, lut, packed_lut
from convlens.render.packed import pack_color
from convlens.render.scale import NO_FINITE, Norm, Scale, finite_range
from convlens.render.text import fmt_many

__all__ = ["ScaleSet"]

_BAD_PACKED = pack_color(BAD_COLOR)
_MIN_STEP = 2.0 ** -1000
"""Below this, ``span / 256`` would lose bits (sub-normal): colorize the long way."""


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
    finite: bool | None = None
    """The maps these scales were made from held no NaN (None: not known)."""
    empty: np.ndarray | None = None
    """Which scales' data held no finite value (``Scale.empty``; None: none did)."""

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
        empty = np.zeros(n, bool)
        for i in np.flatnonzero(bad):  # NaN or inf inside: the finite values' range
            r = finite_range(x[i])
            lo[i], hi[i] = r if r is not None else (0.0, 0.0)
            empty[i] = r is None
        signed = lo < 0
        m = np.maximum(-lo, hi)
        vmin = np.where(signed, -m, 0.0)
        vmax = np.where(signed, m, hi)
        if cmap is not None:
            cmaps = [cmap] * n
        else:
            cmaps = [DEFAULT_DIVERGING if s else DEFAULT_SEQUENTIAL for s in signed.tolist()]
        return cls(vmin, vmax, signed, lo == hi, cmaps, "map", finite=not bad.any(),
                   empty=empty if empty.any() else None)

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
            empty=np.array([s.empty for s in scales], bool)
            if any(s.empty for s in scales) else None,
        )

    def scale(self, i: int) -> Scale:
        """Map ``i``'s :class:`Scale`."""
        return Scale(float(self.vmin[i]), float(self.vmax[i]), self.cmaps[i],  # type: ignore[arg-type]
                     bool(self.signed[i]), self.norm, bool(self.constant[i]),
                     None if self.mean is None else float(self.mean[i]),
                     None if self.std is None else float(self.std[i]),
                     self.empty is not None and bool(self.empty[i]))

    # -- colours ------------------------------------------------------------
    def colorize(self, x: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8: map ``i`` through scale ``i`` (as ``Scale.colorize``)."""
        idx, bad, names = self._indices(x)
        table = lut(names[0]) if len(names) == 1 else np.concatenate([lut(nm) for nm in names])
        out = table[idx]
        if bad is not None:
            out[bad] = BAD_COLOR
        return out

    def colorize_packed(self, x: np.ndarray) -> np.ndarray:
        """:meth:`colorize` as ``(n, h, w)`` packed pixels (see :mod:`.packed`)."""
        idx, bad, names = self._indices(x)
        table = packed_lut(names[0]) if len(names) == 1 else np.concatenate(
            [packed_lut(nm) for nm in names])
        out = np.take(table, idx)
        if bad is not None:
            out[bad] = _BAD_PACKED
        return out

    def _indices(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Row of the colour table of every value (tables of several colour maps stacked
        in ``names`` order) and where the values are NaN (None: nowhere).

        The index is ``min(floor(u * 256), 255)`` of ``u = clip((x - vmin) / span, 0, 1)``
        in float64, as ``Scale.colorize`` computes it, with fewer passes: the division
        and the exact scaling by 256 are one division by ``span / 256`` (a power-of-two
        scaling commutes with rounding), and flooring then clipping to ``[0, 255]`` is
        clipping then truncating."""
        col = (slice(None), None, None)
        span = self.vmax - self.vmin
        flat = span <= 0
        step = np.where(flat, 1.0, span) / 256.0
        exact = bool(np.all(step >= _MIN_STEP))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            u = np.subtract(x, self.vmin[col], dtype=np.float64)
            if exact:
                np.divide(u, step[col], out=u)
            else:  # sub-normal spans: the two steps of Scale.to_unit, literally
                np.divide(u, np.where(flat, 1.0, span)[col], out=u)
                np.clip(u, 0.0, 1.0, out=u)
                np.multiply(u, 256.0, out=u)
        if flat.any():  # one value: the low colour, or the middle of a diverging scale
            fill = np.where(self.signed | (self.mean is not None), 128.0, 0.0)
            for i in np.flatnonzero(flat):  # (+inf and -inf: the end colours)
                xi = x[i]
                u[i] = np.where(np.isnan(xi), np.nan, np.where(
                    xi == np.inf, 256.0, np.where(xi == -np.inf, 0.0, fill[i])))
        bad = None
        if not self._known_finite(x):
            mask = np.isnan(u)
            if mask.any():
                bad = mask
                u[mask] = 0.0
        np.clip(u, 0.0, 255.0, out=u)
        idx = u.astype(np.intp)
        names = sorted(set(self.cmaps))
        if len(names) > 1:
            which = np.array([names.index(c) * 256 for c in self.cmaps], np.intp)
            idx += which[col]
        return idx, bad, names

    def _known_finite(self, x: np.ndarray) -> bool:
        """True when ``x`` surely holds no NaN (its per-map ranges were finite, or its
        minimum is a number: NaN would show there)."""
        if self.finite is not None:
            return self.finite
        if x.size == 0:
            return True
        with np.errstate(invalid="ignore"):
            return not np.isnan(np.min(x))

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
        for i in self.empty_indices():
            out[i]["empty"] = True
        return out

    def empty_indices(self) -> list[int]:
        return [] if self.empty is None else np.flatnonzero(self.empty).tolist()

    def tops(self) -> list[str]:
        """``fmt(vmax)`` of every scale (formatted once per set)."""
        memo = self.__dict__.get("_tops")
        if memo is None:
            memo = self.__dict__["_tops"] = fmt_many(self.vmax)
        return memo

    def describe(self) -> list[str]:
        """``[s.describe() for s in scales]`` (numbers formatted for the whole set at once)."""
        if self.mean is not None and self.std is not None:
            out = [
                f"mean {m}, sd {sd}" + (" (constant)" if k else "")
                for m, sd, k in zip(fmt_many(self.mean), fmt_many(self.std), self.constant.tolist())
            ]
            for i in self.empty_indices():
                out[i] = NO_FINITE
            return out
        hi = self.tops()
        if np.array_equal(self.vmin, np.where(self.signed, -self.vmax, 0.0)):
            # the usual ranges -m ... m and 0 ... m: fmt(-m) is "-" + fmt(m)
            out = [f"-{t} ... {t}" if s else f"0 ... {t}" for t, s in zip(hi, self.signed.tolist())]
            lo = None
        else:
            lo = fmt_many(self.vmin)
            out = [f"{a} ... {b}" for a, b in zip(lo, hi)]
        for i in np.flatnonzero(self.constant).tolist():
            if self.vmin[i] != self.vmax[i]:
                out[i] = f"{out[i]} (constant data)"
            else:
                out[i] = f"constant {lo[i] if lo is not None else hi[i]}"
        for i in self.empty_indices():
            out[i] = NO_FINITE
        return out

    def compact(self) -> list[str]:
        """Each range in a few characters, for tiles too small for :meth:`describe`:
        ``±m`` for the symmetric (diverging) range ``-m ... m``, ``0..m`` for ``0 ... m``,
        ``all v`` for the one-value range ``v ... v``; ``m±s`` (mean ± sd) for a
        standardised map.  :meth:`compact_key` says so in words."""
        if self.mean is not None and self.std is not None:
            out = [f"{m}±{sd}" for m, sd in zip(fmt_many(self.mean), fmt_many(self.std))]
        else:
            top = self.tops()
            out = [f"±{t}" if s else f"0..{t}" for t, s in zip(top, self.signed.tolist())]
            for i in np.flatnonzero(self.vmin == self.vmax).tolist():
                out[i] = f"all {top[i]}"
        for i in self.empty_indices():
            out[i] = "no finite"
        return out

    def compact_key(self) -> str:
        """The line that explains :meth:`compact` labels (only the forms that occur)."""
        if self.mean is not None and self.std is not None:
            return "under each tile: the map's mean±sd" + (
                " · no finite = NaN or ±inf only" if self.empty_indices() else "")
        parts = []
        for signed, form in ((True, "±m = -m ... m"), (False, "0..m = 0 ... m")):
            names = sorted({c for c, s in zip(self.cmaps, self.signed.tolist()) if s == signed})
            if names:
                parts.append(f"{form} ({', '.join(names)})")
        if (self.vmin == self.vmax).any():
            parts.append("all v = every value is v")
        if self.empty_indices():
            parts.append("no finite = NaN or ±inf only")
        return "under each tile, its own colour range: " + " · ".join(parts)
