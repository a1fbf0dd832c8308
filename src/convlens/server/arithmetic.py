"""What one output value of a stage is made of, with the real numbers.

For the position a visitor points at: the receptive field on the input (from
:func:`convlens.explain.receptive.receptive_field` when that module is present), and
the step's arithmetic from :mod:`convlens.ops`: a conv's window x kernel summed over
the input channels plus the bias (:func:`~convlens.ops.conv2d_at`), a pool's window and
pick (:func:`~convlens.ops.pool2d_at`), an activation ``f(x)``, a batch norm's
``(x - mean) / sqrt(var + eps) * gamma + beta``, a dense unit's largest terms.  Each
answer also carries ``captured``: the value the network really produced there.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from ..errors import ConvlensError
from ..trace import Stage, Trace
from .state import Missing, TraceEntry

__all__ = ["explain_position", "MAX_SHOWN_CHANNELS", "MAX_SUMS"]

MAX_SHOWN_CHANNELS = 8
"""A conv answer holds the full window and kernel of at most this many input channels..."""
MAX_SUMS = 4096
"""... and the per-channel sums of at most this many."""


def _f(v: Any) -> Any:
    """Plain floats for JSON (non-finite numbers as strings)."""
    if isinstance(v, np.ndarray):
        return [_f(x) for x in v.tolist()] if v.ndim else _f(v.item())
    if isinstance(v, (list, tuple)):
        return [_f(x) for x in v]
    if isinstance(v, dict):
        return {k: _f(x) for k, x in v.items()}
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _input_of(trace: Trace, pos: int) -> tuple[np.ndarray | None, str]:
    """``(array fed to stage pos (B, ...) or None, its name)``."""
    stage = trace.stages[pos]
    if stage.source == -1 or (stage.source is None and pos == 0):
        return trace.model_input, "input"
    if stage.source is None:
        prev = trace.stages[pos - 1]
        return prev.output, prev.name
    for s in trace.stages:
        if s.index == stage.source:
            return s.output, s.name
    return None, "?"


def _receptive(trace: Trace, pos: int, position: tuple[int, int] | None) -> dict | None:
    try:
        from ..explain.receptive import receptive_field
    except ImportError:  # the explain package is optional here
        return None
    try:
        rf = receptive_field(trace, pos, position)
    except ConvlensError:
        return None  # a step without a known window: no receptive field to show
    (r0, r1), (c0, c1) = rf.clipped
    return {"rows": list(rf.rows), "cols": list(rf.cols), "clipped": [[r0, r1], [c0, c1]],
            "size": list(rf.size), "jump": list(rf.jump), "pixels": int(rf.mask.sum()),
            "input": list(rf.mask.shape)}


def explain_position(entry: TraceEntry, pos: int, channel: int, row: int, col: int) -> dict:
    """The answer for output ``(channel, row, col)`` of stage ``pos`` (flat stage: the
    unit is ``col``, ``channel`` and ``row`` are 0)."""
    trace = entry.trace
    if not 0 <= pos < len(trace.stages):
        raise Missing(f"stage {pos} does not exist; this trace has stages 0..{len(trace) - 1}")
    stage = trace.stages[pos]
    out = stage.output[0]
    if stage.is_spatial:
        c, h, w = out.shape
        if not (0 <= channel < c and 0 <= row < h and 0 <= col < w):
            raise Missing(f"position (channel {channel}, row {row}, col {col}) is outside "
                          f"{stage.name}'s {h}x{w}x{c} output; expected channel 0..{c - 1}, "
                          f"row 0..{h - 1}, col 0..{w - 1}")
        captured = float(out[channel, row, col])
        rf = _receptive(trace, pos, (row, col))
    else:
        n = out.size
        if not (channel == 0 and row == 0 and 0 <= col < n):
            raise Missing(f"unit {col} is outside {stage.name}'s {n} values; expected "
                          f"channel 0, row 0, col 0..{n - 1}")
        captured = float(out.reshape(-1)[col])
        rf = _receptive(trace, pos, None)
    x, x_name = _input_of(trace, pos)
    answer: dict[str, Any] = {
        "stage": stage.name, "position": pos, "kind": stage.kind, "op": stage.op,
        "channel": channel, "row": row, "col": col, "captured": captured,
        "input_name": x_name, "receptive_field": rf,
    }
    try:
        answer["arithmetic"] = _arithmetic(stage, x[0] if x is not None else None,
                                           channel, row, col)
    except ConvlensError as exc:
        answer["arithmetic"] = {"type": "none", "note": str(exc)}
    return _f(answer)


def _arithmetic(stage: Stage, x: np.ndarray | None, ch: int, row: int, col: int) -> dict:
    p = stage.params
    if x is None:
        return {"type": "none", "note": "the input of this stage was not kept"}
    if stage.kind == "conv" and stage.is_spatial and "weight" in stage.weights \
            and not p.get("transposed"):
        return _conv(stage, x, ch, row, col)
    if stage.kind == "pool" and stage.is_spatial and x.ndim == 3 \
            and p.get("mode") in ("max", "avg"):
        return _pool(stage, x, ch, row, col)
    same_shape = x.shape == stage.output.shape[1:]
    if stage.kind == "activation" and same_shape:
        fn = str(p.get("function", ""))
        if fn in ops.ACTIVATIONS and fn != "softmax":
            xv = float(x[ch, row, col]) if stage.is_spatial else float(x.reshape(-1)[col])
            kw = {"alpha": float(p["alpha"])} \
                if "alpha" in p and fn in ("leaky_relu", "elu") else {}
            return {"type": "activation", "function": fn, "x": xv, **kw,
                    "value": float(ops.activation(np.array([xv]), fn, **kw)[0])}
        if fn == "softmax" and not stage.is_spatial:
            v = x.reshape(-1).astype(np.float64)
            return {"type": "softmax", "x": float(v[col]), "max": float(v.max()),
                    "denominator": float(np.exp(v - v.max()).sum()),
                    "value": float(ops.activation(v[None], "softmax")[0, col])}
    if stage.kind == "norm" and same_shape and stage.is_spatial and \
            {"running_mean", "running_var"} <= set(stage.weights):
        wts = stage.weights
        eps = float(p.get("eps", 1e-5))
        g = float(wts["weight"][ch]) if "weight" in wts else 1.0
        b = float(wts["bias"][ch]) if "bias" in wts else 0.0
        m, v = float(wts["running_mean"][ch]), float(wts["running_var"][ch])
        xv = float(x[ch, row, col])
        value = ops.batch_norm(np.array([[xv]]), np.array([g]), np.array([b]), np.array([m]),
                               np.array([v]), eps)[0, 0]
        return {"type": "norm", "x": xv, "mean": m, "var": v, "eps": eps, "gamma": g,
                "beta": b, "value": float(value)}
    if stage.kind == "dense" and "weight" in stage.weights and x.ndim == 1:
        w = stage.weights["weight"].astype(np.float64)
        b = stage.weights.get("bias")
        terms = w[col] * x.astype(np.float64)
        top = np.argsort(-np.abs(terms), kind="stable")[:8]
        value = float(ops.dense(x[None], w, b)[0, col])
        return {"type": "dense", "n_inputs": int(x.size), "bias": float(b[col]) if b is not None
                else 0.0, "terms": [{"input": int(i), "x": float(x[i]), "w": float(w[col, i]),
                                     "product": float(terms[i])} for i in top],
                "sum": float(terms.sum()), "value": value}
    if same_shape and stage.is_spatial:
        return {"type": "elementwise", "x": float(x[ch, row, col]),
                "note": f"{stage.kind} ({stage.op}) works on each value; input shown"}
    return {"type": "none", "note": f"no arithmetic view for a {stage.kind} ({stage.op}) stage"}


def _conv(stage: Stage, x: np.ndarray, ch: int, row: int, col: int) -> dict:
    p = stage.params
    w = stage.weights["weight"]
    b = stage.weights.get("bias")
    k = ops.pair(p.get("kernel_size", w.shape[2:]))
    s, d = ops.pair(p.get("stride", 1)), ops.pair(p.get("dilation", 1))
    groups = int(p.get("groups", 1))
    padding = p.get("padding", 0)
    a = ops.conv2d_at(x, w, b, ch, row, col, stride=s, padding=padding, dilation=d, groups=groups)
    (pt, _), (pl, _) = ops.resolve_padding(padding, x.shape[1:], k, s, d)
    cg = w.shape[1]
    first = (ch // (w.shape[0] // groups)) * cg
    shown = min(cg, MAX_SHOWN_CHANNELS)
    order = np.argsort(-np.abs(a["channel_sums"]), kind="stable")[:MAX_SUMS]
    return {
        "type": "conv", "kernel": list(k), "stride": list(s), "dilation": list(d),
        "groups": groups, "origin": [row * s[0] - pt, col * s[1] - pl],
        "in_shape": list(x.shape), "first_in_channel": int(first), "in_channels": int(cg),
        "shown": shown, "window": a["window"][:shown], "weights": a["kernel"][:shown],
        "products": a["products"][:shown], "channel_sums": a["channel_sums"][order],
        "sum_channels": [int(first + i) for i in order],
        "sum": float(a["channel_sums"].sum()), "bias": float(a["bias"]),
        "has_bias": b is not None, "value": float(a["value"]),
    }


def _pool(stage: Stage, x: np.ndarray, ch: int, row: int, col: int) -> dict:
    p = stage.params
    if "kernel_size" in p:
        size = ops.pair(p["kernel_size"])
        stride = ops.pair(p.get("stride") or size)
    elif stage.output.shape[2:] == (1, 1):  # global (adaptive to 1x1) pooling
        size = stride = (int(x.shape[1]), int(x.shape[2]))
    else:
        return {"type": "none", "note": f"{stage.op}: adaptive pooling to "
                f"{stage.output.shape[2]}x{stage.output.shape[3]} has no single window"}
    padding = p.get("padding", 0)
    a = ops.pool2d_at(x, size, ch, row, col, stride=stride, padding=padding, mode=p["mode"],
                      count_include_pad=bool(p.get("count_include_pad", True)))
    return {"type": "pool", "mode": p["mode"], "size": list(size), "stride": list(stride),
            "window": a["window"], "in_padding": a["in_padding"], "origin": list(a["origin"]),
            "pick": list(a["pick"]) if a["pick"] is not None else None, "count": a["count"],
            "value": float(a["value"])}
