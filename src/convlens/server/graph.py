"""The Trace as a graph, for the explorer: where each stage's inputs and consumers sit in
the list of stages (positions, which the page and the HTTP API use), and what a merge
does with its operands.

``Stage.sources`` names stage *indices* (-1 = the model input); a Trace made with a
``layers=`` selection holds only some stages, so an index is looked up, never used as a
position.  Nothing here imports FastAPI.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
import numpy as np

from convlens.trace import Stage, Trace

__all__ = ["Operand", "positions", "inputs_of", "consumers", "merge_operation", "operands",
           "concat_dim", "MERGE_OPERATIONS"]

MERGE_OPERATIONS: dict[str, str] = {
    # PyTorch functions and operators (in-place and reflected forms too), Keras layers
    "add": "add", "iadd": "add", "radd": "add", "plus": "add",
    "sub": "sub", "isub": "sub", "subtract": "sub",
    "rsub": "rsub",
    "mul": "mul", "imul": "mul", "rmul": "mul", "multiply": "mul",
    "div": "div", "idiv": "div", "truediv": "div", "itruediv": "div", "true_divide": "div",
    "divide": "div",
    "rtruediv": "rdiv", "rdiv": "rdiv",
    "cat": "cat", "concat": "cat", "concatenate": "cat",
    "stack": "stack",
    "average": "mean", "maximum": "max", "minimum": "min",
}
"""Operation names (``Stage.op`` or ``params["operation"]``, lower case, underscores
trimmed) and what they compute."""


@dataclass(frozen=True)
class Operand:
    """One argument of a merge: a stage's output (``position`` >= 0), the model input
    (``position`` -1) or a constant the stage keeps (``position`` None)."""

    name: str
    position: int | None
    array: np.ndarray | None
    """With the batch axis for a stage or the model input; as kept for a constant.
    None when the stage is not in this trace."""
    constant: bool = False


def positions(stages: list[Stage]) -> dict[int, int]:
    """``stage index -> position in the list``."""
    return {s.index: p for p, s in enumerate(stages)}


def inputs_of(trace: Trace, pos: int, where: dict[int, int] | None = None) -> list[int | None]:
    """Positions of the stages that fed stage ``pos``, in argument order: -1 is the model
    input, None a stage this trace does not hold.  A stage that names no source was fed
    by the one before it (the model input for the first)."""
    stages = trace.stages
    where = positions(stages) if where is None else where
    st = stages[pos]
    if not st.sources:
        return [pos - 1] if pos > 0 else [-1]
    return [-1 if i == -1 else where.get(i) for i in st.sources]


def consumers(inputs: list[list[int | None]]) -> list[list[int]]:
    """For every position, the positions of the stages it fed (each once, in order)."""
    out: list[list[int]] = [[] for _ in inputs]
    for pos, ins in enumerate(inputs):
        for i in dict.fromkeys(ins):
            if i is not None and 0 <= i < len(out):
                out[i].append(pos)
    return out


def merge_operation(stage: Stage) -> str | None:
    """What a merge stage computes (``add``, ``sub``, ``rsub``, ``mul``, ``div``, ``rdiv``,
    ``cat``, ``stack``, ``mean``, ``max``, ``min``), or None when it is not known."""
    for name in (stage.params.get("operation"), stage.op):
        if isinstance(name, str):
            key = name.lower().strip("_")
            key = key.rsplit(".", 1)[-1].strip("_")
            if key in MERGE_OPERATIONS:
                return MERGE_OPERATIONS[key]
    return None


_OPERAND_KEY = re.compile(r"^operand(\d+)$")


def operands(trace: Trace, pos: int, where: dict[int, int] | None = None) -> list[Operand]:
    """The arguments of stage ``pos`` in order: its sources, and constants it keeps
    (``weights["operandN"]`` or ``params["operandN"]`` at argument N, other weights and
    ``params["scalar"]`` after the stages; ``params["scalar_index"]`` places a scalar)."""
    stages = trace.stages
    st = stages[pos]
    ins = inputs_of(trace, pos, where)
    srcs = st.sources or (stages[pos - 1].index if pos > 0 else -1,)
    found: list[Operand] = []
    for i, p in zip(srcs, ins):
        if p == -1:
            found.append(Operand("input", -1, trace.model_input))
        elif p is None:
            found.append(Operand(f"stage {i}", None, None))
        else:
            found.append(Operand(stages[p].name, p, stages[p].output))
    placed: dict[int, Operand] = {}
    extra: list[Operand] = []
    for key, w in st.weights.items():
        m = _OPERAND_KEY.match(key)
        op = Operand(key, None, np.asarray(w), constant=True)
        if m:
            placed[int(m.group(1))] = op
        else:
            extra.append(op)
    for key, v in st.params.items():
        m = _OPERAND_KEY.match(str(key))
        if m and isinstance(v, (int, float)) and not isinstance(v, bool):
            placed[int(m.group(1))] = Operand(str(v), None, np.float32(v), constant=True)
    scalar = st.params.get("scalar")
    if isinstance(scalar, (int, float)) and not isinstance(scalar, bool):
        k = st.params.get("scalar_index")
        op = Operand(_number(scalar), None, np.float32(scalar), constant=True)
        if isinstance(k, int):
            placed[k] = op
        else:
            extra.append(op)
    out: list[Operand] = []
    rest = iter(found)
    total = len(found) + len(placed)
    for k in range(total):
        if k in placed:
            out.append(placed.pop(k))
        else:
            nxt = next(rest, None)
            if nxt is not None:
                out.append(nxt)
    out.extend(rest)
    out.extend(placed[k] for k in sorted(placed))
    return out + extra


def _number(v: float) -> str:
    return f"{v:g}"


def concat_dim(stage: Stage, shapes: list[tuple[int, ...]], framework: str) -> int | None:
    """The dimension (of the channels-first output, batch axis 0) along which ``stage``
    joined arrays of ``shapes``: the recorded ``dim``/``axis`` when the shapes agree with
    it (a Keras axis counts channels-last), else the one dimension the shapes allow."""
    out = stage._array_shape
    nd = len(out)

    def fits(d: int) -> bool:
        if not 0 < d < nd or any(len(s) != nd for s in shapes):
            return False
        if sum(s[d] for s in shapes) != out[d]:
            return False
        return all(s[:d] + s[d + 1:] == out[:d] + out[d + 1:] for s in shapes)

    p = stage.params
    for key in ("dim", "axis"):
        v = p.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            d = v + nd if v < 0 else v
            tries = [d]
            if framework == "keras" and key == "axis" and nd >= 3:  # channels-last first
                tries.insert(0, 1 if d == nd - 1 else d + 1)
            for t in tries:
                if fits(t):
                    return t
    candidates = [d for d in range(1, nd) if fits(d)]
    return candidates[0] if len(candidates) == 1 else None

