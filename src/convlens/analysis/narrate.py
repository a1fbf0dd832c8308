"""One-sentence explanations of what a stage did, computed from the real numbers."""
from __future__ import annotations

import numpy as np

from convlens.trace import Stage, Trace

__all__ = ["describe_stage", "describe_trace"]


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(s) for s in shape)


def _inputs(trace: Trace, stage: Stage) -> list[tuple[str, np.ndarray | None]]:
    """``(name, output)`` of every stage that fed ``stage``, in argument order (walking
    ``Stage.sources``; -1 is the model input; a stage this trace does not hold has no
    output).  A stage that names no source was fed by the stage before it."""
    stages = trace.stages
    pos = next((p for p, s in enumerate(stages) if s is stage), None)
    if not stage.sources:
        if pos:
            return [(stages[pos - 1].name, stages[pos - 1].output)]
        return [("input", trace.model_input)]
    by_index = {s.index: s for s in stages}
    out: list[tuple[str, np.ndarray | None]] = []
    for i in stage.sources:
        if i == -1:
            out.append(("input", trace.model_input))
        elif i in by_index:
            out.append((by_index[i].name, by_index[i].output))
        else:
            out.append((f"stage {i}", None))
    return out


def _previous_name(trace: Trace, stage: Stage) -> str | None:
    stages = trace.stages
    pos = next((p for p, s in enumerate(stages) if s is stage), None)
    if pos is None:
        return None
    return stages[pos - 1].name if pos > 0 else "input"


def _input_of(trace: Trace, stage: Stage) -> np.ndarray | None:
    return _inputs(trace, stage)[0][1]


_MERGES = {"add": "add", "iadd": "add", "radd": "add", "sub": "sub", "isub": "sub",
           "subtract": "sub", "rsub": "rsub", "mul": "mul", "imul": "mul", "rmul": "mul",
           "multiply": "mul", "div": "div", "truediv": "div", "itruediv": "div",
           "divide": "div", "true_divide": "div", "rtruediv": "rdiv", "cat": "cat",
           "concat": "cat", "concatenate": "cat", "stack": "stack", "average": "mean",
           "maximum": "max", "minimum": "min"}


def _merge_operation(stage: Stage) -> str | None:
    for name in (stage.params.get("operation"), stage.op):
        if isinstance(name, str):
            key = name.lower().strip("_").rsplit(".", 1)[-1].strip("_")
            if key in _MERGES:
                return _MERGES[key]
    return None


def _operand_text(name: str, x: np.ndarray | None, y: np.ndarray) -> str:
    if x is None:
        return f"{name} (not in this trace)"
    shape = _shape(tuple(x.shape[1:]))
    if x.shape != y.shape:
        return f"{name} ({shape}, broadcast to every position)"
    return f"{name} ({shape})"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _describe_merge(trace: Trace, stage: Stage, after: str, lo: float, hi: float) -> str:
    y = stage.output
    ins = _inputs(trace, stage)
    operation = _merge_operation(stage)
    p = stage.params
    if operation in ("cat", "stack"):
        dim = p.get("dim", p.get("axis", 1))
        along = "one after the other" if y.ndim == 2 else "along the channels" if dim in (
            1, -3) or (trace.framework == "keras" and dim in (-1, 3)) else f"along dimension {dim}"
        sizes = [f"{n} ({x.shape[1] if x is not None and x.ndim > 1 else '?'})"
                 for n, x in ins]
        verb = "Stacked" if operation == "stack" else "Concatenated"
        return (f"{verb} {_listed(sizes)} {along}: {after}; every value is copied "
                f"unchanged from one input, range {lo:.3g} … {hi:.3g}.")
    parts = [_operand_text(n, x, y) for n, x in ins]
    constants = [f"a constant of shape {'x'.join(str(d) for d in w.shape) or 'scalar'}"
                 for k, w in stage.weights.items()]
    scalar = p.get("scalar")
    if isinstance(scalar, (int, float)) and not isinstance(scalar, bool):
        constants.append(f"{scalar:g}")
    parts += constants
    if operation in ("rsub", "rdiv") or p.get("reflected"):
        parts = parts[::-1]
    tail = f": {after}, range {lo:.3g} … {hi:.3g}."
    if operation == "add":
        return f"Added {_listed(parts)} value by value{tail}"
    if operation in ("sub", "rsub"):
        return f"Subtracted {_listed(parts[1:]) if parts[1:] else '?'} from {parts[0]}" \
               f" value by value{tail}"
    if operation == "mul":
        return f"Multiplied {parts[0]} by {_listed(parts[1:]) if parts[1:] else '?'}" \
               f" value by value{tail}"
    if operation in ("div", "rdiv"):
        return f"Divided {parts[0]} by {_listed(parts[1:]) if parts[1:] else '?'}{tail}"
    if operation in ("mean", "max", "min"):
        word = {"mean": "the mean", "max": "the largest", "min": "the smallest"}[operation]
        return f"Kept {word} of {_listed(parts)} at every position{tail}"
    return f"{stage.op} merged {_listed(parts)}{tail}"


def _pair(v: object) -> str:
    if isinstance(v, tuple) and len(v) == 2:
        return f"{v[0]}x{v[1]}" if v[0] != v[1] else f"{v[0]}x{v[0]}"
    return str(v)


def describe_stage(trace: Trace, stage: Stage) -> str:
    """What ``stage`` did to its input, in one sentence with real shapes and values; a
    merge names every input (``Stage.sources``), a stage off the main line its input."""
    x = _input_of(trace, stage)
    y = stage.output
    before = _shape(tuple(x.shape[1:])) if x is not None else "?"
    after = stage.shape_str
    lo, hi = float(y.min()), float(y.max())
    if stage.kind == "merge":
        return _describe_merge(trace, stage, after, lo, hi)
    text = _describe_one(trace, stage, x, y, before, after, lo, hi)
    first, prev = _inputs(trace, stage)[0][0], _previous_name(trace, stage)
    if prev is not None and first != prev:  # a branch: say where its input came from
        src = "the model input" if first == "input" else first
        text = f"{text[:-1]} (its input: {src})." if text.endswith(".") else text
    return text


def _describe_one(trace: Trace, stage: Stage, x: np.ndarray | None, y: np.ndarray,
                  before: str, after: str, lo: float, hi: float) -> str:
    p = stage.params
    if stage.kind == "conv":
        k, s = _pair(p.get("kernel_size")), p.get("stride", (1, 1))
        pad = p.get("padding")
        n_out = stage.channels
        n_in = x.shape[1] if x is not None else "?"
        lost = ""
        if x is not None and x.ndim == 4 and y.ndim == 4 and pad in ("valid", (0, 0), 0):
            dh = x.shape[2] - y.shape[2]
            if s in ((1, 1), 1) and dh > 0:
                lost = f" (with no padding a {k} window loses {dh // 2} pixel(s) at each border)"
        return (
            f"{n_out} filter(s) of {k} slid over the {n_in}-channel input and summed "
            f"{n_in}x{k} products at every position: {before} → {after}{lost}; values now "
            f"range {lo:.3g} … {hi:.3g}."
        )
    if stage.kind == "activation":
        fn = p.get("function", stage.op)
        if x is not None and x.shape == y.shape:
            neg = float((x < 0).mean()) * 100
            zero = float((y == 0).mean()) * 100
            if fn in ("relu", "relu6"):
                return (f"ReLU replaced every negative value by 0: {neg:.1f}% of the values were "
                        f"negative, {zero:.1f}% of the output is now zero; the range is "
                        f"{lo:.3g} … {hi:.3g}.")
            return (f"{fn} was applied to every value independently ({neg:.1f}% of its input was "
                    f"negative); the shape stays {after} and the range is now {lo:.3g} … {hi:.3g}.")
        return f"{fn} was applied to every value; output {after}, range {lo:.3g} … {hi:.3g}."
    if stage.kind == "pool":
        mode = "largest" if p.get("mode") == "max" else "average"
        if "kernel_size" in p:
            k, s = _pair(p["kernel_size"]), _pair(p.get("stride"))
            extra = ""
            if x is not None and x.ndim == 4 and y.ndim == 4:
                extra = (f", i.e. {y.shape[2]}/{x.shape[2]} of the height and {y.shape[3]}/"
                         f"{x.shape[3]} of the width")
            return (f"{mode.capitalize()} value of each {k} window (stride {s}) kept: "
                    f"{before} → {after}{extra}.")
        return f"{mode.capitalize()} value over each whole map kept: {before} → {after}."
    if stage.kind == "dense":
        return (f"A fully connected layer mixed all {before} inputs into {after} outputs, "
                f"ranging {lo:.3g} … {hi:.3g}.")
    if stage.kind == "norm":
        return (f"Normalisation rescaled each channel ({before}); values now mean "
                f"{float(y.mean()):.3g}, std {float(y.std()):.3g}.")
    if stage.kind == "flatten":
        return f"The {before} maps were laid out as one vector of {after} numbers."
    return f"{stage.op}: {before} → {after}, range {lo:.3g} … {hi:.3g}."


def describe_trace(trace: Trace) -> list[str]:
    return [describe_stage(trace, s) for s in trace.stages]
