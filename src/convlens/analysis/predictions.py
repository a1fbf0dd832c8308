"""What a classifier predicted, read from a Trace: class probabilities and the top k.

A Trace is a *classifier trace* when its last stage is flat ``(B, N)`` and holds either

* probabilities — every value in [0, 1] and each row summing to 1 (to 1e-3), as a
  softmax stage gives; they are used as they are, or
* logits — the last stage is a ``dense`` stage; the probabilities are its softmax.

Class names come from ``trace.meta["class_names"]`` (the zoo and ``make_trace`` put
them there) or from the caller; without them a class is named by its index.

:func:`topk_records` gives the JSON-able form that :func:`with_predictions` stores in
``trace.meta["predictions"]``: per image, a list of ``{"index", "name", "probability"}``.
NumPy only; no framework import.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from convlens.errors import TraceError
from convlens.nets.zoo import Prediction, topk
from convlens.trace import Trace

__all__ = [
    "Prediction", "ProbabilitySource", "class_probabilities", "is_classifier",
    "trace_predictions", "topk_records", "with_predictions",
]

ProbabilitySource = Literal["probabilities", "softmax of logits"]
_SUM_TOL = 1e-3


def _is_distribution(p: np.ndarray) -> bool:
    if not np.all(np.isfinite(p)):
        return False
    return bool(p.min() >= 0.0 and p.max() <= 1.0 + _SUM_TOL
                and np.all(np.abs(p.sum(axis=1) - 1.0) <= _SUM_TOL))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def class_probabilities(trace: Trace) -> tuple[np.ndarray, ProbabilitySource]:
    """``(probs (B, N) float64, source)`` from the trace's last stage (see module docs)."""
    if not isinstance(trace, Trace):
        raise TraceError(f"predictions need a convlens Trace; got {type(trace).__name__}")
    if not trace.stages:
        raise TraceError("this trace has no stages, so it holds no predictions")
    last = trace.stages[-1]
    out = np.asarray(last.output, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] < 1:
        raise TraceError(
            f"the last stage {last.name!r} has shape {last.shape_str}, not a flat (B, N) class "
            "output; capture the whole classifier (no --layers filter) to get predictions"
        )
    if _is_distribution(out):
        return out, "probabilities"
    if last.kind == "dense" and np.all(np.isfinite(out)):
        return _softmax(out), "softmax of logits"
    raise TraceError(
        f"the last stage {last.name!r} ({last.kind}) holds neither probabilities (rows of "
        "values in [0, 1] summing to 1) nor dense logits; expected a classifier's softmax "
        "or final dense stage"
    )


def _names(trace: Trace, n: int, class_names: Sequence[str] | None) -> list[str] | None:
    names = class_names if class_names is not None else trace.meta.get("class_names")
    if names is None:
        return None
    names = [str(c) for c in names]
    if len(names) != n:
        raise TraceError(
            f"{len(names)} class names for a last stage of {n} classes; expected one name "
            "per class"
        )
    return names


def is_classifier(trace: Trace, need_names: bool = True) -> bool:
    """Whether :func:`trace_predictions` can read predictions from this trace, and (with
    ``need_names``) ``meta["class_names"]`` names its classes -- what the journey and
    :func:`with_predictions` require before showing predictions."""
    try:
        probs, _ = class_probabilities(trace)
        names = _names(trace, probs.shape[1], None)
    except TraceError:
        return False
    return names is not None or not need_names


def trace_predictions(trace: Trace, k: int = 5,
                      class_names: Sequence[str] | None = None) -> list[list[Prediction]]:
    """Per image of the batch, the ``k`` most probable classes, most probable first
    (ties: lower index first).  ``class_names`` overrides ``trace.meta["class_names"]``."""
    probs, _ = class_probabilities(trace)
    names = _names(trace, probs.shape[1], class_names)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise TraceError(f"top k={k!r} is not valid; expected a positive integer")
    return topk(probs, names, min(int(k), probs.shape[1]))


def topk_records(preds: list[list[Prediction]]) -> list[list[dict[str, Any]]]:
    """Predictions as plain JSON-able records ``{"index", "name", "probability"}``."""
    return [[{"index": p.index, "name": p.name, "probability": p.probability} for p in row]
            for row in preds]


def with_predictions(trace: Trace, k: int = 5) -> Trace:
    """``trace`` with ``meta["predictions"]`` (top ``k`` per image, :func:`topk_records`)
    and ``meta["probabilities_from"]`` set, when it is a classifier trace with class
    names; unchanged otherwise.  The stages are shared, not copied."""
    if not is_classifier(trace):
        return trace
    _, source = class_probabilities(trace)
    meta = dict(trace.meta, predictions=topk_records(trace_predictions(trace, k)),
                probabilities_from=source)
    return Trace(stages=trace.stages, input=trace.input, framework=trace.framework,
                 model_name=trace.model_name, model_input=trace.model_input,
                 preprocessing=trace.preprocessing, meta=meta)
