"""One recorded forward pass of a PyTorch model: the hot path of ``capture()``.

Cost model: a plain forward pass of EfficientNet-Lite0 takes ~12 ms here, so every
microsecond per layer call counts.  The pass therefore

* wraps each leaf's ``forward`` for the duration of the pass (an instance attribute,
  removed in ``finally``) instead of hooking: hooks, even one global hook, put every
  module call on PyTorch's slow call path; the wrapper of an in-place module
  (``ReLU(inplace=True)``) first copies the held tensors it is about to overwrite;
* holds nothing for a stage that can be computed again from the stage that fed it
  (``torch_derive``: convolutions, eval-mode batch norms, clamping activations): it
  notes how, and the output's shape;
* keeps every other output **by reference** and defers everything else (describing the
  module, weights, NumPy conversion) until after the pass;
* copies a held output only when it is about to be overwritten (the in-place wrappers
  above); an in-place op hidden inside some
  ``forward`` (``out += x``) shows in the tensor's version counter after the pass, and the
  pass is then repeated with those stages in ``copy`` (copied as their layers return);
* with ``dtype="float16"`` or a disk store, converts / writes each output as its layer
  returns (a copy taken then is immune to later in-place ops) and holds nothing.
"""
from __future__ import annotations

import threading
from collections import deque
from itertools import repeat
import weakref
from typing import Any, Callable

import torch
from torch import nn

from .options import DiskStore
from .torch_derive import Recipe
from .torch_plan import Plan

__all__ = ["run_pass", "first_tensor", "Record"]

_Tensor = torch.Tensor
_SCRIPT = torch.jit.ScriptModule


def first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, _Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a layer's arguments (lists and tuples opened)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _producer_of(producer: dict[int, tuple[Any, int]], t: torch.Tensor) -> int | None:
    entry = producer.get(id(t))
    return entry[1] if entry is not None and entry[0]() is t else None


class Record:
    """One kept layer call: its output (a tensor, or an array already converted/stored)."""

    __slots__ = ("name", "leaf", "kind", "source", "value", "version", "sources", "recipe")

    def __init__(self, name: str, leaf: int, kind: str, source: int | None,
                 value: Any, version: int | None, recipe: Recipe | None = None):
        self.name, self.leaf, self.kind = name, leaf, kind  # leaf: its index in the plan
        self.source, self.value, self.version = source, value, version
        self.sources: tuple[int | None, ...] | None = None  # every input, for merges
        self.recipe = recipe
        """Set when the output is not held but computed again from the source stage's
        (``value`` is then the output's shape; see ``torch_derive``)."""


class _Pass:
    """The state of one recorded pass, read by the leaves' wrappers."""

    __slots__ = ("records", "producer", "held", "calls", "names", "kinds", "recipes", "keep",
                 "copy", "convert", "sink", "thread", "input_version")

    def __init__(self, plan: Plan, x: torch.Tensor, keep: Any, copy: frozenset[str],
                 convert: Any, sink: DiskStore | None):
        self.records: list[Record] = []
        self.producer: dict[int, tuple[Any, int]] = {id(x): (weakref.ref(x), -1)}
        self.held: dict[int, list[Record]] = {}  # id(tensor) -> records holding it by reference
        self.calls = [0] * len(plan.leaves)
        self.names, self.kinds = plan.names, plan.kinds
        self.recipes = plan.recipes if convert is None else [None] * len(plan.leaves)
        self.keep, self.copy, self.convert, self.sink = keep, copy, convert, sink
        self.thread = threading.get_ident()  # calls from other threads are not recorded
        # (the model input, "stage" -1, may feed a recipe; inference tensors have no version)
        self.input_version = None if x.is_inference() else x._version


_ref = weakref.ref
_F32 = torch.float32
_ident = threading.get_ident


def _record(s: _Pass, i: int, args: tuple, output: Any) -> None:
    """What leaf ``i`` returned: keep it (by reference, as a copy, converted) or note
    how to compute it again."""
    out = output if type(output) is _Tensor else first_tensor(output)
    if out is None:
        return
    n = s.calls[i] = s.calls[i] + 1
    name, kind = s.names[i], s.kinds[i]
    if n > 1:
        name = f"{name}#{n}"
    if s.keep is not None and not s.keep(name, kind):
        s.producer.pop(id(out), None)  # made (or changed) by a stage not kept
        return
    a0 = args[0] if args else None
    inp = a0 if type(a0) is _Tensor else first_tensor(args)
    producer, records = s.producer, s.records
    source = None
    if inp is not None:
        src = producer.get(id(inp))
        if src is not None and src[0]() is inp:
            source = src[1]
    index = len(records)
    rc = s.recipes[i]
    if (rc is not None and source is not None and len(args) == 1
            and type(out) is _Tensor and out is not inp and out.dtype is _F32
            and inp.dtype is _F32 and out.is_cpu and inp.is_contiguous() and name not in s.copy):
        version = records[source].version if source >= 0 else s.input_version
        if version is not None and inp._version == version:  # fed the source's own output
            records.append(Record(name, i, kind, source, out.shape, out._version, rc))
            producer[id(out)] = (_ref(out), index)
            return
    if s.convert is not None:
        value: Any = s.convert(out)
        if s.sink is not None:
            value = s.sink.put(index, name, value)
        rec = Record(name, i, kind, source, value, None)
    elif name in s.copy:
        rec = Record(name, i, kind, source, out.detach().clone(), None)
    else:
        rec = Record(name, i, kind, source, out, out._version)
        lst = s.held.get(id(out))
        if lst is None:
            s.held[id(out)] = [rec]
        else:
            lst.append(rec)
    if kind == "merge":
        rec.sources = tuple(_producer_of(producer, t) for t in _tensors(args))
    records.append(rec)
    producer[id(out)] = (_ref(out), index)


def _before_inplace(s: _Pass, args: tuple) -> None:
    """An in-place module is about to overwrite its input: copy it where it is held."""
    if s.convert is not None:
        return  # (nothing is held by reference)
    t = args[0] if args and type(args[0]) is _Tensor else first_tensor(args)
    if t is not None:
        for rec in s.held.pop(id(t), ()):
            # (an output something already changed stays as it is: found after the pass)
            if rec.value is t and t._version == rec.version:
                rec.value, rec.version = t.detach().clone(), None


def _wrapper(box: list, i: int, forward: Any, inplace: bool) -> Any:
    """Leaf ``i``'s ``forward`` while a pass is recorded: the module's own, then
    :func:`_record` for the pass in ``box[0]`` (made once per plan, installed for each
    pass; calls from other threads are not recorded)."""
    if inplace:
        def recorded_inplace(*args: Any, **kwargs: Any) -> Any:
            s = box[0]
            if s is None or s.thread != _ident():
                return forward(*args, **kwargs)
            _before_inplace(s, args)
            out = forward(*args, **kwargs)
            _record(s, i, args, out)
            return out
        return recorded_inplace

    def recorded(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        s = box[0]
        if s is not None and s.thread == _ident():
            _record(s, i, args, out)
        return out
    return recorded


def _hook(s: _Pass, m: nn.Module, i: int, inplace: bool) -> list[Any]:
    """Hooks doing what :func:`_wrapper` does, for a leaf with forward hooks of its own
    (which may change what the call returns: ours runs after them)."""
    handles = [m.register_forward_hook(
        lambda _m, args, out: _record(s, i, args, out) if _ident() == s.thread else None)]
    if inplace:
        handles.append(m.register_forward_pre_hook(
            lambda _m, args: _before_inplace(s, args) if _ident() == s.thread else None))
    return handles


class Wrappers:
    """The wrapped ``forward`` of each leaf of a plan, made once and installed per pass."""

    __slots__ = ("box", "forwards", "dicts", "before")

    def __init__(self, plan: Plan):
        self.box: list[_Pass | None] = [None]
        self.forwards = [_wrapper(self.box, i, m.forward, plan.inplace[i])
                         for i, m in enumerate(plan.leaves)]
        self.dicts = [m.__dict__ for m in plan.leaves]
        # what each leaf had as an instance attribute "forward" (the plan checks it stays)
        self.before = [d.get("forward", _NONE) for d in self.dicts]


def _install(dicts: list[dict], forwards: list[Any]) -> None:
    """Set (or, for ``_NONE``, remove) each leaf's instance attribute ``forward``."""
    if _NONE in forwards:
        for d, f in zip(dicts, forwards):
            if f is _NONE:
                d.pop("forward", None)
            else:
                d["forward"] = f
    else:
        deque(map(dict.__setitem__, dicts, repeat("forward"), forwards), maxlen=0)


_LOCK = threading.RLock()
"""One recorded pass at a time in this process: a pass changes the model's leaves."""


def run_pass(
    model: nn.Module, x: torch.Tensor, plan: Plan,
    keep: Callable[[str, str], bool] | None, copy: frozenset[str] = frozenset(),
    convert: Callable[[torch.Tensor], Any] | None = None, sink: DiskStore | None = None,
) -> tuple[list[Record], Any, frozenset[str]]:
    """Run ``model(x)`` once, recording the leaves of ``plan`` (``keep`` filters by name
    and kind).  Returns the records, the model's output and the names of the stages whose
    held output an in-place op changed after it was recorded (run again with those in
    ``copy``: their outputs are then copied as their layers return).

    ``convert`` turns every output into what is kept *as the layer returns* (a copy, a
    float16 array...); ``sink`` then writes that to disk.  Either makes the pass hold no
    tensors of the model.

    Each leaf's ``forward`` is wrapped for the pass (an instance attribute, put back in
    ``finally``) rather than hooked: PyTorch then keeps every module call on its fast
    path, where one global hook would send all of them through the slow one.
    """
    s = _Pass(plan, x, keep, copy, convert, sink)
    w = plan.wrappers
    if w is None:
        w = plan.wrappers = Wrappers(plan)
    handles: list[Any] = []
    with _LOCK:
        if w.box[0] is not None:  # (a capture of this model from inside its own forward)
            w = Wrappers(plan)
        w.box[0] = s
        try:
            _install(w.dicts, w.forwards)
            if plan.hooked():  # (rare: leaves with hooks of their own, the slow way)
                for i, m in enumerate(plan.leaves):
                    if m._forward_hooks or m._forward_pre_hooks:
                        _hook_instead(s, w, m, i, plan.inplace[i], handles)
            output = model(x)
        finally:
            w.box[0] = None
            _install(w.dicts, w.before)
            for h in handles:
                h.remove()
    records = s.records
    final = first_tensor(output)
    entry = s.producer.get(id(final)) if final is not None else None
    if entry is not None and entry[1] >= 0 and entry[0]() is final:
        last = records[entry[1]]  # the stage that made the model's output: hold that
        if last.recipe is not None and final._version == last.version:
            last.recipe, last.value = None, final
    changed_input = s.input_version is not None and x._version != s.input_version
    mutated = frozenset(
        rec.name for rec in records
        if (rec.version is not None and rec.recipe is None and rec.value._version != rec.version)
        or (changed_input and rec.recipe is not None and rec.source == -1)
    )
    return records, output, mutated


def _hook_instead(s: _Pass, w: Wrappers, m: nn.Module, i: int, inplace: bool,
                  handles: list[Any]) -> None:
    """A leaf with hooks of its own: its output is not computed again (a hook may change
    it), and one with forward hooks is recorded by a hook run after them, not wrapped."""
    if s.recipes is not None and s.recipes[i] is not None:
        s.recipes = list(s.recipes)
        s.recipes[i] = None
    if m._forward_hooks and not isinstance(m, _SCRIPT):
        if w.before[i] is _NONE:
            w.dicts[i].pop("forward", None)
        else:
            w.dicts[i]["forward"] = w.before[i]
        handles += _hook(s, m, i, inplace)


_NONE = object()
