"""Framework-neutral bookkeeping shared by the capture adapters.

An adapter calls :meth:`Recorder.record` once per layer call, in execution
order, with the framework tensors it saw.  The recorder names repeated calls
(``relu``, ``relu#2``), keeps only the selected stages, links each stage to the
stage that fed it (by tensor identity) and, at the end, turns the kept
tensors into :class:`~convlens.trace.Stage` objects.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convlens.trace import Stage

__all__ = ["Recorder", "Pending"]


@dataclass
class Pending:
    """A stage recorded during the forward pass, its output still a framework tensor."""

    name: str
    kind: str
    op: str
    params: dict[str, Any]
    weights: dict[str, np.ndarray]
    source: int | None
    tensor: Any
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    def __init__(self, keep: Callable[[str, str], bool] | None = None):
        self._keep = keep or (lambda name, kind: True)
        self.pending: list[Pending] = []
        self._calls: dict[str, int] = {}
        self._producer: dict[int, tuple[Any, int]] = {}  # id(tensor) -> (weakref, stage index)

    def _ref(self, tensor: Any) -> Any:
        try:
            return weakref.ref(tensor)
        except TypeError:  # objects without weakref support: hold them (rare)
            return lambda t=tensor: t

    def mark_input(self, tensor: Any) -> None:
        self._producer[id(tensor)] = (self._ref(tensor), -1)

    def source_of(self, tensor: Any) -> int | None:
        entry = self._producer.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def unique_name(self, name: str) -> str:
        n = self._calls.get(name, 0) + 1
        self._calls[name] = n
        return name if n == 1 else f"{name}#{n}"

    def wants(self, name: str, kind: str) -> bool:
        return self._keep(name, kind)

    def record(
        self, name: str, kind: str, op: str, params: dict[str, Any],
        weights: Callable[[], dict[str, np.ndarray]], inp: Any, out: Any,
    ) -> Pending | None:
        """Note one call; returns the Pending stage if it is kept (so the adapter may
        replace its tensor, e.g. by a copy), else None.  ``name`` must already be unique."""
        if not self.wants(name, kind):
            self._producer.pop(id(out), None)  # made (or changed) by a stage not kept
            return None
        source = self.source_of(inp) if inp is not None else None
        p = Pending(name, kind, op, params, weights(), source, out)
        self.pending.append(p)
        self.mark_output(out, len(self.pending) - 1)
        return p

    def mark_output(self, tensor: Any, index: int) -> None:
        """``tensor`` is (now) the output of kept stage ``index``."""
        self._producer[id(tensor)] = (self._ref(tensor), index)

    def stages(self, to_numpy: Callable[[Any, Pending], np.ndarray]) -> list[Stage]:
        return [
            Stage(
                index=i, name=p.name, kind=p.kind, op=p.op, output=to_numpy(p.tensor, p),
                params=p.params, weights=p.weights, source=p.source,
            )
            for i, p in enumerate(self.pending)
        ]
