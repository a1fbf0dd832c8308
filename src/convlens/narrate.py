"""One-sentence explanations of what a stage did, computed from the real numbers."""
from __future__ import annotations

import numpy as np

from .trace import Stage, Trace

__all__ = ["describe_stage", "describe_trace"]


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(s) for s in shape)


def _input_of(trace: Trace, stage: Stage) -> np.ndarray | None:
    if stage.source == -1 or (stage.source is None and stage.index == 0):
        return trace.model_input
    if stage.source is not None and stage.source >= 0:
        return trace.stages[stage.source].output
    return trace.stages[stage.index - 1].output if stage.index > 0 else trace.model_input


def _pair(v: object) -> str:
    if isinstance(v, tuple) and len(v) == 2:
        return f"{v[0]}x{v[1]}" if v[0] != v[1] else f"{v[0]}x{v[0]}"
    return str(v)


def describe_stage(trace: Trace, stage: Stage) -> str:
    """What ``stage`` did to its input, in one sentence with real shapes and values."""
    x = _input_of(trace, stage)
    y = stage.output
    before = _shape(tuple(x.shape[1:])) if x is not None else "?"
    after = stage.shape_str
    lo, hi = float(y.min()), float(y.max())
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
