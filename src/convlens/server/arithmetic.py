"""What one output value of a stage is made of, with the real numbers.

For the position a visitor points at: the receptive field on the input (from
:func:`convlens.explain.receptive.receptive_field` when that module is present), and
the step's arithmetic from :mod:`convlens.ops`: a conv's window x kernel summed over
the input channels plus the bias (:func:`~convlens.ops.conv2d_at`), a pool's window and
pick (:func:`~convlens.ops.pool2d_at`), an activation ``f(x)``, a batch norm's
``(x - mean) / sqrt(var + eps) * gamma + beta``, a dense unit's largest terms, and a
merge's every operand at that position, read from the stages that fed it (add, subtract,
multiply with broadcasting, divide, mean, max, min: ``a + b = c``; concatenate and stack:
which value of which input this one is).  Each answer also carries ``captured``: the
value the network really produced there, and ``inputs``: the stages that fed this one.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from convlens import ops
from convlens.errors import ConvlensError
from convlens.trace import Stage, Trace
from convlens.server.graph import Operand, concat_dim, inputs_of, merge_operation, operands, positions
from convlens.server.state import Missing, TraceEntry

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


def _input_of(trace: Trace, pos: int, where: dict[int, int]) -> tuple[np.ndarray | None, str]:
    """``(array fed to stage pos (B, ...) or None, its name)``: its first input."""
    p = inputs_of(trace, pos, where)[0]
    if p == -1:
        return trace.model_input, "input"
    if p is None:
        return None, f"stage {trace.stages[pos].source}"
    return trace.stages[p].output, trace.stages[p].name


def _receptive(trace: Trace, pos: int, position: tuple[int, int] | None) -> dict | None:
    try:
        from convlens.explain.receptive import receptive_field
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
    where = positions(trace.stages)
    x, x_name = _input_of(trace, pos, where)
    ins = inputs_of(trace, pos, where)
    answer: dict[str, Any] = {
        "stage": stage.name, "position": pos, "kind": stage.kind, "op": stage.op,
        "spatial": stage.is_spatial, "channel": channel, "row": row, "col": col, "captured": captured,
        "input_name": x_name, "receptive_field": rf,
        "inputs": [{"name": "input" if p == -1 else trace.stages[p].name if p is not None
                    else f"stage {i}", "position": p}
                   for i, p in zip(stage.sources or (None,), ins)],
    }
    try:
        at = (0, channel, row, col) if stage.is_spatial else (0, col)
        merge = _merge(trace, pos, at, where) if stage.kind == "merge" else None
        answer["arithmetic"] = merge if merge is not None else _arithmetic(
            stage, x[0] if x is not None else None, channel, row, col)
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


# -- merges --------------------------------------------------------------------------
_SYMBOLS = {"add": "+", "sub": "−", "rsub": "−", "mul": "×", "div": "/", "rdiv": "/"}


def _operand_record(o: Operand, extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": o.name, "position": o.position, "constant": o.constant, **extra}


def _merge(trace: Trace, pos: int, at: tuple[int, ...], where: dict[int, int]) -> dict | None:
    """Every operand of merge stage ``pos`` at output index ``at`` (batch item 0), read
    from the arrays that fed it; None when it is not a merge this knows (the caller then
    shows its first input)."""
    stage = trace.stages[pos]
    operation = merge_operation(stage)
    found = operands(trace, pos, where)
    if operation in ("cat", "stack"):
        return _join(trace, stage, operation, found, at)
    out_shape = stage._array_shape
    terms: list[dict[str, Any]] = []
    values: list[np.float32] = []
    for o in found:
        if o.array is None:
            terms.append(_operand_record(o, {"value": None, "note": "not held by this trace"}))
            continue
        a = np.asarray(o.array)
        lead = 1 if not o.constant else 0  # stages and the input carry the batch axis
        if a.ndim > len(out_shape) or any(
                n not in (1, m) for n, m in zip(a.shape[::-1], out_shape[::-1])):
            terms.append(_operand_record(o, {
                "value": None, "shape": list(a.shape[lead:]),
                "note": f"shape {tuple(a.shape)} does not broadcast to {tuple(out_shape)}"}))
            continue
        off = len(out_shape) - a.ndim
        src = tuple(0 if a.shape[k] == 1 else at[off + k] for k in range(a.ndim))
        v = np.float32(a[src])
        values.append(v)
        terms.append(_operand_record(o, {
            "value": float(v), "index": [int(i) for i in src[lead:]],
            "shape": list(a.shape[lead:]),
            "broadcast": bool(a.ndim < len(out_shape) or any(
                a.shape[k] == 1 and out_shape[off + k] > 1 for k in range(lead, a.ndim)))}))
    ans: dict[str, Any] = {"type": "merge", "operation": operation,
                           "symbol": _SYMBOLS.get(operation or "", ""), "operands": terms}
    if operation in ("rsub", "rdiv") or stage.params.get("reflected"):
        # reflected (x.__rsub__(1) is 1 - x): the last argument comes first
        ans["operands"] = terms[::-1]
        values = values[::-1]
    if operation is None:
        ans["note"] = (f"{stage.op}: convlens does not know this merge; its operands at this "
                       "position are shown")
        return ans
    if len(values) != len(found) or not values:
        ans["note"] = "an operand is missing, so the result cannot be written out"
        return ans
    ans["value"] = float(_fold(operation, values))
    return ans


def _fold(operation: str, values: list[np.float32]) -> np.float32:
    """The operation over the operands in float32, left to right, as the network did."""
    acc = values[0]
    if operation == "mean":
        for v in values[1:]:
            acc = np.float32(acc + v)
        return np.float32(acc / np.float32(len(values)))
    for v in values[1:]:
        if operation == "add":
            acc = np.float32(acc + v)
        elif operation in ("sub", "rsub"):
            acc = np.float32(acc - v)
        elif operation == "mul":
            acc = np.float32(acc * v)
        elif operation in ("div", "rdiv"):
            with np.errstate(divide="ignore", invalid="ignore"):
                acc = np.float32(acc / v)
        elif operation == "max":
            acc = max(acc, v)
        elif operation == "min":
            acc = min(acc, v)
    return acc


_AXES = {4: {1: "channel", 2: "row", 3: "col"}, 2: {1: "unit"}}


def _join(trace: Trace, stage: Stage, operation: str, found: list[Operand],
          at: tuple[int, ...]) -> dict:
    """Concatenation / stacking: which value of which input sits at ``at``."""
    parts = [o for o in found if not o.constant]
    if any(o.array is None for o in parts):
        return {"type": "none", "note": "an input of this concatenation is not held by this "
                "trace, so its channels cannot be placed"}
    shapes = [tuple(np.shape(o.array)) for o in parts]
    out = stage._array_shape
    axes = _AXES.get(len(out), {})
    if operation == "cat":
        d = concat_dim(stage, shapes, trace.framework)
        if d is None:
            return {"type": "none", "note": f"inputs of shapes {shapes} do not join into "
                    f"{tuple(out)} along one dimension"}
        bounds, start = [], 0
        for o, sh in zip(parts, shapes):
            bounds.append({"name": o.name, "position": o.position, "start": start,
                           "stop": start + sh[d]})
            start += sh[d]
        k = at[d]
        j = next(i for i, b in enumerate(bounds) if b["start"] <= k < b["stop"])
        src = at[:d] + (k - bounds[j]["start"],) + at[d + 1:]
    else:  # stack: a new dimension
        d = stage.params.get("dim", 1)
        d = d + len(out) if isinstance(d, int) and d < 0 else d
        if not (isinstance(d, int) and 0 < d < len(out) and out[d] == len(parts) and all(
                sh == out[:d] + out[d + 1:] for sh in shapes)):
            return {"type": "none", "note": f"inputs of shapes {shapes} do not stack into "
                    f"{tuple(out)}"}
        bounds = [{"name": o.name, "position": o.position, "start": i, "stop": i + 1}
                  for i, o in enumerate(parts)]
        k = j = at[d]
        src = at[:d] + at[d + 1:]
    v = np.float32(parts[j].array[src])
    return {"type": "concat", "operation": operation, "dim": int(d),
            "axis": axes.get(d, f"dim {d}"), "at": int(k), "parts": bounds,
            "source": {"name": parts[j].name, "position": parts[j].position, "part": j,
                       "index": [int(i) for i in src[1:]],
                       "at": int(src[d]) if operation == "cat" else None, "value": float(v)},
            "value": float(v)}
