"""Layer statistics: for every stage of a Trace, how its values are spread and how much
of it is switched off.

One row per stage (:class:`StatsTable`), with these columns:

============  ============================================================================
column        meaning
============  ============================================================================
index, name   the stage's position and name
kind, op      the stage kind (conv, activation, ...) and the framework op
shape         the output shape without the batch axis, ``HxWxC`` or ``N``
values        how many numbers the row summarises (positions x channels x images)
mean, std     mean and (population, ``ddof=0``) standard deviation
min, max      the extremes
zeros         fraction of the values that are exactly 0 (after a ReLU: the "dead" units)
dead_channels fraction of the channels whose every value is exactly 0 -- at every
              position and, over a batch, for **every** image (a flat ``(B, N)`` stage:
              each of the N units counts as a channel)
============  ============================================================================

``trace.stats()`` summarises the whole batch; ``trace.stats(image=i)`` one image of it
(then ``dead_channels`` means "all zero for this image").  Numbers are computed in
float64 from the stored float32 outputs; a NaN or inf in a stage propagates into its
mean/std/min/max, as NumPy would.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterator

import numpy as np

from convlens.errors import TraceError
from convlens.trace import Stage, Trace, nearest_names

__all__ = ["COLUMNS", "StatsTable", "stage_stats", "trace_stats"]

COLUMNS: tuple[str, ...] = (
    "index", "name", "kind", "op", "shape", "values", "mean", "std", "min", "max",
    "zeros", "dead_channels",
)
_FLOATS = ("mean", "std", "min", "max", "zeros", "dead_channels")


def stage_stats(stage: Stage, image: int | None = None) -> dict[str, Any]:
    """The statistics row of one stage (over its batch, or of batch item ``image``)."""
    out = np.asarray(stage.output)
    if image is not None:
        b = int(out.shape[0])
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) \
                or not 0 <= int(image) < b:
            raise TraceError(f"image index {image!r} is out of range; stage {stage.name!r} "
                             f"holds {b} image{'s' if b != 1 else ''} (valid: 0..{b - 1})")
        out = out[int(image): int(image) + 1]
    x = out.astype(np.float64)
    if x.size == 0:
        raise TraceError(f"stage {stage.name!r} has an empty output {x.shape}; nothing to "
                         "summarise")
    zero = x == 0.0
    # channels on axis 1; a channel is dead when zero over images and positions
    per_channel = np.moveaxis(zero, 1, 0).reshape(x.shape[1], -1) if x.ndim >= 2 \
        else zero.reshape(1, -1)
    return {
        "index": stage.index, "name": stage.name, "kind": stage.kind, "op": stage.op,
        "shape": stage.shape_str, "values": int(x.size),
        "mean": float(x.mean()), "std": float(x.std()),
        "min": float(x.min()), "max": float(x.max()),
        "zeros": float(zero.mean()), "dead_channels": float(per_channel.all(axis=1).mean()),
    }


def trace_stats(trace: Trace, image: int | None = None) -> "StatsTable":
    """One :func:`stage_stats` row per stage of ``trace``, in order."""
    if not isinstance(trace, Trace):
        raise TraceError(f"stats need a convlens Trace; got {type(trace).__name__}")
    rows = [stage_stats(s, image) for s in trace.stages]
    scope = "all images" if image is None else f"image {int(image)}"
    return StatsTable(rows, scope=scope, model=trace.model_name)


def _num(v: float) -> str:
    return f"{v:.4g}"


class StatsTable:
    """Rows of layer statistics (plain dicts with the keys in :data:`COLUMNS`).

    ``str(table)`` is an aligned text table, :meth:`to_csv` / :meth:`to_json` give the
    full-precision numbers, ``table[i]`` / ``table["conv1"]`` a row, and iterating gives
    the rows.
    """

    def __init__(self, rows: list[dict[str, Any]], scope: str = "all images",
                 model: str = ""):
        self.rows = [dict(r) for r in rows]
        self.scope = scope
        """What the numbers summarise: ``"all images"`` or ``"image 2"``."""
        self.model = model

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> dict[str, Any]:
        if isinstance(key, str):
            for r in self.rows:
                if r["name"] == key:
                    return r
            raise TraceError(f"no stage named {key!r} in the statistics; "
                             f"{nearest_names(key, [r['name'] for r in self.rows])}")
        return self.rows[key]

    def column(self, name: str) -> list[Any]:
        """One column's values, in stage order."""
        if name not in COLUMNS:
            raise TraceError(f"unknown statistics column {name!r}; expected one of "
                             f"{', '.join(COLUMNS)}")
        return [r[name] for r in self.rows]

    def to_csv(self) -> str:
        """CSV with a header row; floats written with ``repr`` (full precision)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow([repr(r[c]) if c in _FLOATS else r[c] for c in COLUMNS])
        return buf.getvalue()

    def to_json(self, indent: int | None = 2) -> str:
        """``{"model", "scope", "columns", "rows": [...]}`` as JSON (NaN/inf written as
        null, so any JSON reader takes it)."""
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not np.isfinite(v) else v
        rows = [{c: clean(r[c]) for c in COLUMNS} for r in self.rows]
        return json.dumps({"model": self.model, "scope": self.scope, "columns": list(COLUMNS),
                           "rows": rows}, indent=indent)

    def __str__(self) -> str:
        head = ["#", "name", "kind", "shape", "mean", "std", "min", "max", "zeros",
                "dead ch"]
        body = [[str(r["index"]), r["name"], r["kind"], r["shape"], _num(r["mean"]),
                 _num(r["std"]), _num(r["min"]), _num(r["max"]), f"{100 * r['zeros']:.1f}%",
                 f"{100 * r['dead_channels']:.1f}%"] for r in self.rows]
        table = [head] + body
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        right = set(range(4, len(head)))
        lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                           for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                 for row in table]
        title = f"layer statistics of {self.model} ({self.scope})" if self.model \
            else f"layer statistics ({self.scope})"
        return "\n".join([title, *lines])

    def __repr__(self) -> str:
        return f"StatsTable({len(self.rows)} stages, {self.scope})"
