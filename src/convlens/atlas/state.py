"""The running state of an atlas: per stage and channel, what the images seen so far did.

For every channel of every chosen stage a :class:`StageState` keeps

* the **top-k images** by the channel's *response* to an image: its maximum over all
  positions for a spatial stage ``(C, H, W)``, its value for a flat stage ``(N,)``;
  with the position ``(row, col)`` of that maximum (the first one in row-major order
  when it occurs more than once; ``(-1, -1)`` for flat stages) and the image's path.
  Order: larger value first, equal values by image path (so the top-k is one defined
  set, whatever order the images came in).  NaN responses count as ``-inf``.
* the **mean and standard deviation** of every value the channel took (all positions of
  all images), as ``count``, ``mean`` and ``m2`` (the sum of squared deviations) in
  float64, merged with Chan et al.'s pairwise formula.
* the **dead count**: images on which the channel is *dead*, i.e. its maximum over all
  positions is <= 0 — after a ReLU it is zero everywhere, so the layers after it get
  nothing from it for that image.  ``dead / images`` is the dead fraction.
* a **histogram of the responses** (one per image) over fixed, uniform bins: bin ``i``
  holds ``lo + i*width <= x < lo + (i+1)*width`` (computed as ``floor((x - lo) /
  width)``), plus a "below" and an "above" count.  ``lo`` and ``width`` are fixed once per
  run from the first 32 files (:func:`histogram_bins`), rounded to two significant digits, and
  stored in the state; merging checks they are equal.

Memory is O(k x channels) per stage, whatever the number of images.

:func:`merge` is commutative (bit for bit) and associative: the top-k, the histogram,
the dead and image counts exactly; ``mean``/``m2`` up to float64 rounding (the sums are
grouped differently; relative differences ~1e-15).  A state also records which batches
of the run it covers (``batches``, half-open intervals of batch indices); merging two
states that cover one batch twice is refused, so no image is ever counted twice.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from convlens.errors import ConvlensError

__all__ = ["StageState", "State", "BINS", "histogram_bins", "stage_update", "batch_state",
           "empty_state", "merge", "merge_all", "save_state", "load_state"]

BINS = 32
"""Histogram bins per channel (plus the "below" and "above" counts)."""

_FORMAT = 1


@dataclass
class StageState:
    """The running state of one stage (arrays indexed by channel first)."""

    name: str
    shape: tuple[int, ...]
    """Shape of the stage's output for one image: ``(C, H, W)`` or ``(N,)``."""
    top_value: np.ndarray   # (C, k) float32, -inf where empty
    top_path: np.ndarray    # (C, k) str, "" where empty
    top_pos: np.ndarray     # (C, k, 2) int32, (-1, -1) for flat stages and empty slots
    count: np.ndarray       # (C,) int64: values seen (images x positions)
    mean: np.ndarray        # (C,) float64
    m2: np.ndarray          # (C,) float64: sum of squared deviations from the mean
    dead: np.ndarray        # (C,) int64: images where the channel's maximum <= 0
    lo: np.ndarray          # (C,) float64: left edge of the first histogram bin
    width: np.ndarray       # (C,) float64: bin width
    hist: np.ndarray        # (C, BINS + 2) int64: below, the bins, above

    @property
    def channels(self) -> int:
        return int(self.shape[0])

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 3

    @property
    def k(self) -> int:
        return int(self.top_value.shape[1])

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel (NaN where nothing was seen)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.maximum(self.m2, 0.0) / self.count)

    def edges(self) -> np.ndarray:
        """``(C, BINS + 1)`` bin edges (for display; binning uses ``lo`` and ``width``)."""
        return self.lo[:, None] + self.width[:, None] * np.arange(BINS + 1)


@dataclass
class State:
    """The running state of a run: one :class:`StageState` per stage, in stage order."""

    k: int
    stages: dict[str, StageState]
    images: int = 0
    """Images seen (files that could not be read are not counted)."""
    batches: tuple[tuple[int, int], ...] = ()
    """Batches of the run covered, as sorted half-open intervals ``(start, stop)``."""
    skipped: tuple[tuple[str, str], ...] = ()
    """``(path, reason)`` of every file that could not be read, sorted by path."""
    meta: dict[str, Any] = field(default_factory=dict)
    """What the run is (model, paths' fingerprint...): equal states of one run agree."""

    def covers(self, batch: int) -> bool:
        return any(a <= batch < b for a, b in self.batches)

    def batches_done(self) -> int:
        return sum(b - a for a, b in self.batches)


# -- histogram bins -----------------------------------------------------------------------
def _round_up(x: np.ndarray, digits: int = 2) -> np.ndarray:
    """``x > 0`` rounded up to ``digits`` significant digits."""
    e = np.floor(np.log10(x)) - (digits - 1)
    step = 10.0 ** e
    return np.ceil(np.round(x / step, 9)) * step


def histogram_bins(responses: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, width)`` per channel from the responses ``(B, C)`` of the run's first images.

    The bins span their range widened by a quarter below and three quarters
    above (later images often respond more), with a round ``width`` (two significant
    digits) and ``lo`` a multiple of it, so a last-bit difference in those
    numbers (another thread count) does not move them.  A channel whose first-batch
    responses are all equal takes its stage's span (or 1)."""
    r = np.asarray(responses, dtype=np.float64)
    r = np.where(np.isfinite(r), r, np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        lo = np.nanmin(r, axis=0)
        hi = np.nanmax(r, axis=0)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    span = hi - lo
    stage_span = float(span.max()) if span.size and span.max() > 0 else 0.0
    if stage_span <= 0:
        stage_span = float(max(np.abs(hi).max(initial=0.0), 1.0))
    span = np.where(span > 0, span, stage_span)
    width = _round_up((span * 2.0) / bins)
    low = np.floor(np.round((lo - 0.25 * span) / width, 9)) * width
    return low.astype(np.float64), width.astype(np.float64)


class _quiet:
    """Silence NumPy's "All-NaN slice" warning for one block."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._w.__exit__(*exc)


# -- making states ------------------------------------------------------------------------
def _select_top(value: np.ndarray, path: np.ndarray, pos: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``k`` per row by (filled first, larger value first, smaller path first)."""
    empty = path == ""
    order = np.lexsort((path, -value.astype(np.float64), empty), axis=-1)[:, :k]
    v = np.take_along_axis(value, order, axis=1)
    p = np.take_along_axis(path, order, axis=1)
    q = np.take_along_axis(pos, order[..., None], axis=1)
    if v.shape[1] < k:  # fewer candidates than k: pad
        pad = k - v.shape[1]
        c = v.shape[0]
        v = np.concatenate([v, np.full((c, pad), -np.inf, np.float32)], axis=1)
        p = np.concatenate([p, np.full((c, pad), "", dtype=p.dtype)], axis=1)
        q = np.concatenate([q, np.full((c, pad, 2), -1, np.int32)], axis=1)
    return np.ascontiguousarray(v), np.ascontiguousarray(p), np.ascontiguousarray(q)


def _empty_stage(name: str, shape: Sequence[int], k: int, lo: np.ndarray, width: np.ndarray
                 ) -> StageState:
    c = int(shape[0])
    return StageState(
        name, tuple(int(s) for s in shape),
        np.full((c, k), -np.inf, np.float32), np.full((c, k), "", dtype="<U1"),
        np.full((c, k, 2), -1, np.int32), np.zeros(c, np.int64), np.zeros(c, np.float64),
        np.zeros(c, np.float64), np.zeros(c, np.int64),
        np.asarray(lo, np.float64).copy(), np.asarray(width, np.float64).copy(),
        np.zeros((c, BINS + 2), np.int64))


def responses(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values (B, C) float32, positions (B, C, 2) int32)``: each channel's maximum
    over positions and where it is (flat stages: the values, positions -1)."""
    out = np.asarray(output)
    b, c = out.shape[:2]
    if out.ndim == 2:
        v = out.astype(np.float32, copy=False)
        if np.isnan(v).any():
            v = np.where(np.isnan(v), np.float32(-np.inf), v)
        return np.ascontiguousarray(v), np.full((b, c, 2), -1, np.int32)
    if out.ndim != 4:
        raise ConvlensError(f"an atlas stage must be (B, C, H, W) or (B, N); got an output "
                            f"of shape {out.shape}")
    w = out.shape[3]
    flat = out.reshape(b, c, -1)
    idx = flat.argmax(axis=-1)
    v = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0].astype(np.float32)
    if np.isnan(v).any():  # argmax stops at a NaN: rank NaN as -inf instead
        clean = np.where(np.isnan(flat), np.float32(-np.inf), flat)
        idx = clean.argmax(axis=-1)
        v = np.take_along_axis(clean, idx[..., None], axis=-1)[..., 0].astype(np.float32)
    pos = np.stack([idx // w, idx % w], axis=-1).astype(np.int32)
    return v, pos


def stage_update(name: str, output: np.ndarray, paths: Sequence[str], k: int,
                 lo: np.ndarray, width: np.ndarray) -> StageState:
    """The state of one stage for one batch: ``output`` ``(B, C, H, W)`` or ``(B, N)``
    of the images ``paths`` (in batch order)."""
    out = np.asarray(output)
    b, c = out.shape[:2]
    if b != len(paths):
        raise ConvlensError(f"stage {name!r}: {b} outputs for {len(paths)} images")
    v, pos = responses(out)
    # top-k of the batch
    p = np.broadcast_to(np.asarray(list(paths), dtype=str)[None, :], (c, b))
    tv, tp, tq = _select_top(v.T, p, pos.transpose(1, 0, 2), k)
    # mean and squared deviations, per channel, from float64 sums (no float64 copy)
    vals = out.reshape(b, c, -1)
    n = b * vals.shape[2]
    s1 = vals.sum(axis=(0, 2), dtype=np.float64)
    s2 = np.einsum("bcn,bcn->c", vals, vals, dtype=np.float64)
    mean = s1 / n if n else np.zeros(c)
    m2 = np.maximum(s2 - s1 * mean, 0.0)
    # dead count and histogram of the responses
    dead = (v <= 0).sum(axis=0).astype(np.int64)
    hist = _histogram(v, lo, width)
    return StageState(name, tuple(int(s) for s in out.shape[1:]), tv, tp, tq,
                      np.full(c, n, np.int64), mean, m2, dead,
                      np.asarray(lo, np.float64), np.asarray(width, np.float64), hist)


def _histogram(v: np.ndarray, lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    """``(C, BINS + 2)`` counts of ``v`` ``(B, C)``: below, the bins, above."""
    b, c = v.shape
    with np.errstate(invalid="ignore", over="ignore"):
        i = np.floor((v.astype(np.float64) - lo[None, :]) / width[None, :])
    i = np.where(np.isnan(i), -1, i)
    i = (np.clip(i, -1, BINS) + 1).astype(np.int64)
    flat = i + (BINS + 2) * np.arange(c)[None, :]
    return np.bincount(flat.ravel(), minlength=c * (BINS + 2)).reshape(c, BINS + 2)


def empty_state(shapes: Mapping[str, Sequence[int]], k: int,
                bins: Mapping[str, tuple[np.ndarray, np.ndarray]],
                meta: Mapping[str, Any] | None = None) -> State:
    """A state that has seen nothing: the identity of :func:`merge`."""
    return State(k, {n: _empty_stage(n, s, k, *bins[n]) for n, s in shapes.items()},
                 meta=dict(meta or {}))


def batch_state(outputs: Mapping[str, np.ndarray], paths: Sequence[str], k: int,
                bins: Mapping[str, tuple[np.ndarray, np.ndarray]], batch: int,
                skipped: Iterable[tuple[str, str]] = (),
                meta: Mapping[str, Any] | None = None) -> State:
    """The state of one batch (index ``batch`` of the run): its readable images
    ``paths`` gave ``outputs`` (stage name -> output); ``skipped`` files did not load."""
    stages = {n: stage_update(n, o, paths, k, *bins[n]) for n, o in outputs.items()}
    return State(k, stages, len(paths), ((batch, batch + 1),),
                 tuple(sorted(skipped)), dict(meta or {}))


# -- merging ------------------------------------------------------------------------------
def _union(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    spans = sorted([*a, *b])
    out: list[list[int]] = []
    for s, e in spans:
        if out and s < out[-1][1]:
            raise ConvlensError(
                f"cannot merge two atlas states that both cover batch {s}; expected states of "
                "disjoint shards (a shard's result is merged once)")
        if out and s == out[-1][1]:
            out[-1][1] = e
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def _merge_stage(a: StageState, b: StageState, k: int) -> StageState:
    if a.shape != b.shape:
        raise ConvlensError(f"stage {a.name!r} has shape {a.shape} in one state and {b.shape} "
                            "in the other; expected states of one model")
    if not (np.array_equal(a.lo, b.lo) and np.array_equal(a.width, b.width)):
        raise ConvlensError(f"stage {a.name!r}: the two states have different histogram "
                            "bins; expected states of one run (bins are fixed once per run)")
    tv, tp, tq = _select_top(np.concatenate([a.top_value, b.top_value], axis=1),
                             np.concatenate([a.top_path, b.top_path], axis=1),
                             np.concatenate([a.top_pos, b.top_pos], axis=1), k)
    n = a.count + b.count
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(n > 0, n, 1).astype(np.float64)
        # symmetric in a and b, so the merge is commutative bit for bit
        mean = np.where(n > 0, (a.count * a.mean + b.count * b.mean) / safe, 0.0)
        delta = a.mean - b.mean
        m2 = a.m2 + b.m2 + np.where(n > 0, delta * delta * (a.count.astype(np.float64) * b.count) / safe, 0.0)
    return StageState(a.name, a.shape, tv, tp, tq, n, mean, m2, a.dead + b.dead,
                      a.lo, a.width, a.hist + b.hist)


def merge(a: State, b: State) -> State:
    """One state for the images of both (see the module docs for what is exact)."""
    if a.k != b.k:
        raise ConvlensError(f"cannot merge atlas states with k={a.k} and k={b.k}; expected one k")
    if list(a.stages) != list(b.stages):
        raise ConvlensError(f"cannot merge atlas states of stages {list(a.stages)} and "
                            f"{list(b.stages)}; expected the same stages")
    if a.meta and b.meta and a.meta != b.meta:
        raise ConvlensError("cannot merge atlas states of different runs (model, folder or "
                            "options differ)")
    stages = {n: _merge_stage(a.stages[n], b.stages[n], a.k) for n in a.stages}
    return State(a.k, stages, a.images + b.images, _union(a.batches, b.batches),
                 tuple(sorted(a.skipped + b.skipped)), dict(a.meta or b.meta))


def merge_all(states: Iterable[State]) -> State:
    """All ``states`` merged, left to right."""
    it = iter(states)
    try:
        out = next(it)
    except StopIteration:
        raise ConvlensError("no atlas states to merge; expected at least one") from None
    for s in it:
        out = merge(out, s)
    return out


# -- saving (the checkpoint) --------------------------------------------------------------
_ARRAYS = ("top_value", "top_path", "top_pos", "count", "mean", "m2", "dead", "lo", "width", "hist")


def save_state(state: State, path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` (one ``.npz``) atomically: a temporary file in the same
    folder, then renamed over ``path``, so an interruption never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": _FORMAT, "k": state.k, "images": state.images,
              "batches": [list(b) for b in state.batches],
              "skipped": [list(s) for s in state.skipped], "meta": state.meta,
              "stages": [{"name": s.name, "shape": list(s.shape)} for s in state.stages.values()]}
    arrays: dict[str, np.ndarray] = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    for i, s in enumerate(state.stages.values()):
        for a in _ARRAYS:
            arrays[f"s{i}_{a}"] = getattr(s, a)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_state(path: str | os.PathLike[str]) -> State:
    """A state written by :func:`save_state`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("format") != _FORMAT:
                raise ConvlensError(f"{path}: atlas checkpoint format {header.get('format')!r}; "
                                    f"expected {_FORMAT} — start the run again without --resume")
            stages = {}
            for i, s in enumerate(header["stages"]):
                stages[s["name"]] = StageState(s["name"], tuple(s["shape"]),
                                               *(z[f"s{i}_{a}"] for a in _ARRAYS))
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, ConvlensError):
            raise
        raise ConvlensError(f"{path}: not a readable atlas checkpoint ({exc}); expected a "
                            "file written by an atlas run — start again without --resume") from None
    return State(int(header["k"]), stages, int(header["images"]),
                 tuple((int(a), int(b)) for a, b in header["batches"]),
                 tuple((str(p), str(r)) for p, r in header["skipped"]), dict(header["meta"]))
