"""One recorded forward pass of a PyTorch model: the one walker over a model, used by
``capture()`` and by attribution (the ``substitute`` hook).

Cost model: a plain forward pass of EfficientNet-Lite0 takes 12–30 ms on this kind of
machine, so every microsecond per module call counts.  The pass therefore

* wraps each module's ``forward`` for the duration of the pass (an instance attribute,
  removed in ``finally``) instead of hooking: hooks, even one global hook, put every
  module call on PyTorch's slow call path.  A leaf's wrapper records its output; a
  container's names the path of the ops its own code runs;
* sees the ops run between leaves (``x + y``, ``F.relu``, ``torch.cat``...) through a
  ``TorchFunctionMode`` entered for the pass; a leaf takes it off the stack while it runs
  (its ops are its own), and convlens' own bookkeeping runs with it off;
* holds nothing for a stage that can be computed again from the stages that fed it
  (``torch_derive``: convolutions, eval-mode batch norms, clamping activations; and any
  deterministic op between modules, replayed on its inputs' stage outputs): it notes
  how, and the output's shape;
* keeps every other output **by reference**; a held output about to be overwritten in
  place (by an in-place module or op) is copied just before; an in-place op hidden inside
  a leaf's ``forward`` shows in the tensor's version counter after the pass, and the pass
  is then repeated with those stages in ``copy`` (copied as they are made);
* with ``dtype="float16"`` or a disk store, converts / writes each output as it is made
  and holds nothing.
"""
from __future__ import annotations

import threading
from collections import deque
from itertools import repeat
import weakref
from typing import Any, Callable

import torch
from torch import nn

from torch.overrides import TorchFunctionMode

from convlens.capture.options import DiskStore
from convlens.capture.torch_derive import Recipe
from convlens.capture.torch_ops import WEIGHT_ROLES, is_inplace_call, op_info, op_params
from convlens.capture.torch_plan import Plan

__all__ = ["run_pass", "first_tensor", "Record", "StopPass"]

_Tensor = torch.Tensor
_SCRIPT = torch.jit.ScriptModule


def device_dtype(model: Any) -> tuple[Any, Any]:
    """Where and in what float type a model computes: its first parameter's (float32 on
    the CPU for a model without float parameters)."""
    try:
        param = next(model.parameters())
    except StopIteration:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32


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

    __slots__ = ("name", "leaf", "kind", "source", "value", "version", "sources", "recipe",
                 "op", "params", "weights", "last")

    def __init__(self, name: str, leaf: int, kind: str, source: int | None,
                 value: Any, version: int | None, recipe: Recipe | None = None):
        self.name, self.leaf, self.kind = name, leaf, kind  # leaf: its index in the plan
        self.source, self.value, self.version = source, value, version
        self.sources: tuple[int, ...] = () if source is None else (source,)
        self.recipe = recipe
        # an op run between modules (leaf == -1): what it was, its parameters and the
        # tensors it read that are not stages (a layer scale, a functional conv's weight)
        self.op: str | None = None
        self.params: dict[str, Any] | None = None
        self.weights: dict[str, Any] | None = None
        self.last = False
        """The network holds this map channels-last ``(B, H, W, C)`` (after a
        ``permute(0, 2, 3, 1)``, as ConvNeXt does): the stage shows it channels-first."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value) if self.recipe is not None else tuple(self.value.shape)
        """Set when the output is not held but computed again from the source stage's
        (``value`` is then the output's shape; see ``torch_derive``)."""


class _Pass:
    """The state of one recorded pass, read by the leaves' wrappers."""

    __slots__ = ("records", "producer", "held", "calls", "names", "kinds", "recipes", "keep",
                 "copy", "convert", "sink", "thread", "input_version", "path", "inside",
                 "taken", "op_calls", "notices", "batch", "mode", "inplace", "substitute")

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
        self.path: list[str] = [""]  # the module whose own forward is running now
        self.inside = 0  # > 0 while a leaf runs (its ops are its own)
        self.taken = plan.taken  # module names: an op's name never takes one
        self.op_calls: dict[str, int] = {}
        self.notices: list[str] = []
        self.batch = int(x.shape[0]) if x.dim() else 0
        self.mode: Any = None
        self.inplace = plan.inplace
        self.substitute: Any = None


_ref = weakref.ref
_F32 = torch.float32
_ident = threading.get_ident
_pop_mode = torch._C._pop_torch_function_stack
_push_mode = torch._C._push_on_torch_function_stack
_stack_len = torch._C._len_torch_function_stack


_UNKEPT = -2
"""The producer of a tensor made from the model input by a stage not kept (``layers=``):
what it feeds is still a stage, with that source left out."""


def _sources_of(producer: dict[int, tuple[Any, int]], tensors: list[torch.Tensor]) -> tuple[int, ...]:
    """The stages (or -1, the model input; -2, a stage not kept) that made ``tensors``,
    in order; tensors no stage made (weights, constants) are left out."""
    out = []
    for t in tensors:
        entry = producer.get(id(t))
        if entry is not None and entry[0]() is t:
            out.append(entry[1])
    return tuple(out)


def _stays_last(src: Record, out: torch.Tensor) -> bool:
    """Fed a channels-last map, is ``out`` one too?  (4-D, same height and width: a layer
    norm, a pointwise Linear, an activation on the last axis.)"""
    shape = src.shape
    return out.dim() == 4 and len(shape) == 4 and tuple(out.shape[1:3]) == tuple(shape[1:3])


def _dims(args: tuple, kwargs: dict) -> tuple | None:
    """A ``permute``'s axes, however they were passed."""
    rest = args[1:]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        rest = rest[0]
    if not rest:
        rest = kwargs.get("dims") or ()
    try:
        return tuple(int(d) % 4 for d in rest)
    except (TypeError, ValueError):
        return None


def _kept(sources: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i for i in sources if i != _UNKEPT) if _UNKEPT in sources else sources


def _hold(s: _Pass, rec: Record, out: torch.Tensor) -> None:
    lst = s.held.get(id(out))
    if lst is None:
        s.held[id(out)] = [rec]
    else:
        lst.append(rec)


def _record(s: _Pass, i: int, args: tuple, output: Any, before: int | None = None) -> Any:
    """What leaf ``i`` returned: keep it (by reference, as a copy, converted) or note
    how to compute it again.  ``before``: the version of its first argument before the
    call (an output that *is* that argument, unchanged, is a pass-through: an
    ``nn.Identity``, an eval-mode dropout — not a stage)."""
    out = output if type(output) is _Tensor else first_tensor(output)
    if out is None:
        return
    a0 = args[0] if args else None
    inp = a0 if type(a0) is _Tensor else first_tensor(args)
    if out is inp and (out._version == before if before is not None else not s.inplace[i]):
        return  # the input passed through unchanged: its producer stays its producer
    n = s.calls[i] = s.calls[i] + 1
    name, kind = s.names[i], s.kinds[i]
    if n > 1:
        name = f"{name}#{n}"
    if s.keep is not None and not s.keep(name, kind):
        s.producer[id(out)] = (_ref(out), _UNKEPT)  # made (or changed) by a stage not kept
        return
    producer, records = s.producer, s.records
    source = None
    if inp is not None:
        src = producer.get(id(inp))
        if src is not None and src[0]() is inp and src[1] != _UNKEPT:
            source = src[1]
    index = len(records)
    rc = s.recipes[i]
    if (rc is not None and source is not None and len(args) == 1
            and type(out) is _Tensor and out.dtype is _F32
            and inp.dtype is _F32 and out.is_cpu and inp.is_contiguous() and name not in s.copy):
        version = records[source].version if source >= 0 else s.input_version
        # fed the source's own output (an in-place module: as it was before the call)
        seen = before if out is inp else inp._version
        if version is not None and seen == version and (out is not inp or s.inplace[i]):
            rec = Record(name, i, kind, source, out.shape, out._version, rc)
            if source >= 0 and records[source].last:
                rec.last = _stays_last(records[source], out)
            records.append(rec)
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
        _hold(s, rec, out)
    if len(args) > 1 or type(a0) is not _Tensor:  # (several inputs: every one a source)
        rec.sources = _kept(_sources_of(producer, _tensors(args)))
    if source is not None and source >= 0 and records[source].last:
        rec.last = _stays_last(records[source], out)
    records.append(rec)
    producer[id(out)] = (_ref(out), index)
    if s.substitute is not None:
        return _substituted(s, rec, args, output, out)
    return None


def _substituted(s: _Pass, rec: Record, args: tuple, output: Any, out: torch.Tensor) -> Any:
    """What the pass goes on with after ``rec`` (attribution hands on a copy of a stage it
    takes the gradient of, so later in-place ops cannot change it): ``None`` to go on as
    computed, else the replacement, which then stands for the stage."""
    new = s.substitute(rec, args, out)
    if new is None or type(output) is not _Tensor:
        return None
    s.producer[id(new)] = (_ref(new), s.producer[id(out)][1])
    return new


def _before_inplace(s: _Pass, args: tuple) -> None:
    """An in-place module or op is about to overwrite its input: copy it where it is held."""
    if s.convert is not None:
        return  # (nothing is held by reference)
    t = args[0] if args and type(args[0]) is _Tensor else first_tensor(args)
    if t is not None:
        for rec in s.held.pop(id(t), ()):
            # (an output something already changed stays as it is: found after the pass)
            if rec.value is t and t._version == rec.version:
                rec.value, rec.version = t.detach().clone(), None


def _flat_tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found = _tensors(args)
    if kwargs:
        for v in kwargs.values():
            found += _tensors(v)
    return found


def _operand_weights(s: _Pass, op: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Copies of the tensors an op read that no stage made (a functional conv's weight, a
    layer scale ``gamma``), named by their role where known, else ``operand<i>``."""
    roles = WEIGHT_ROLES.get("conv" if op.startswith("conv") else op)
    out: dict[str, Any] = {}
    producer = s.producer
    flat = list(args) + list(kwargs.items())
    for j, a in enumerate(flat):
        key = None
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str):  # a kwarg
            key, a = a
        if type(a) is not _Tensor and not isinstance(a, _Tensor):
            continue
        entry = producer.get(id(a))
        if entry is not None and entry[0]() is a:
            continue  # a stage, not a weight
        if key is None:
            key = roles[j] if roles and j < len(roles) else f"operand{j}"
        out[key] = a.detach().to("cpu", _F32, copy=True).numpy()
    return out


_REPLAY_KINDS = frozenset({"merge", "activation", "pool", "norm", "reshape", "flatten",
                           "conv", "dense"})
"""Ops computed again, exactly, when their stage is first read (not held during the pass):
deterministic functions of their inputs (no dropout, no ``other``)."""


def _weight_key(op: str, j: int) -> str:
    roles = WEIGHT_ROLES.get("conv" if op.startswith("conv") else op)
    return roles[j] if roles and j < len(roles) else f"operand{j}"


def _replayable(s: _Pass, op: str, args: tuple, kwargs: dict) -> tuple | None:
    """How to run this op again from the stages it reads, or None.  Every tensor it reads
    must be the unchanged, contiguous float32 output of a kept stage (or of the model
    input) — then the same function on those stages' outputs gives the same bits — or a
    tensor no stage made (a weight: the stage keeps a copy)."""
    if s.convert is not None or any(isinstance(v, _Tensor) for v in kwargs.values()):
        return None
    producer, records = s.producer, s.records
    template: list = []

    def stage(t: torch.Tensor) -> tuple | None:
        entry = producer.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        k = entry[1]
        if k == _UNKEPT or t.dtype is not _F32 or not t.is_cpu or not t.is_contiguous():
            return None
        version = records[k].version if k >= 0 else s.input_version
        if version is None or t._version != version or (k >= 0 and records[k].last):
            return None
        return ("s", k)

    for j, a in enumerate(args):
        if isinstance(a, _Tensor):
            mark = stage(a)
            if mark is None:
                entry = producer.get(id(a))
                if entry is not None and entry[0]() is a:
                    return None  # a stage's output, but changed or not as it was made
                if a.dtype is not _F32 or not a.is_cpu:
                    return None  # (its copy, a float32 weight, would not be the same)
                mark = ("w", _weight_key(op, j))
            template.append(mark)
        elif isinstance(a, (list, tuple)) and any(isinstance(v, _Tensor) for v in a):
            marks = [stage(v) if isinstance(v, _Tensor) else ("v", v) for v in a]
            if any(m is None for m in marks):
                return None
            template.append(("l", marks, type(a)))
        else:
            template.append(("v", a))
    return tuple(template)


def unique_op_name(path: str, op: str, counts: dict[str, int], taken: Any) -> str:
    """``<module path>.<op>``, then ``_1``, ``_2``...: unique, never a name in ``taken``
    (the modules'); ``counts`` remembers how many of each were given."""
    base = f"{path}.{op}" if path else op
    n = counts.get(base, 0)
    while True:
        name = base if n == 0 else f"{base}_{n}"
        n += 1
        if name not in taken:
            counts[base] = n
            return name


def _op_name(s: _Pass, op: str) -> str:
    return unique_op_name(s.path[-1], op, s.op_calls, s.taken)


def _record_op(s: _Pass, func: Any, info: Any, args: tuple, kwargs: dict, out: Any,
               inplace: bool, before: int | None, replay: tuple | None = None) -> Any:
    """An op run outside every leaf module returned ``out``: a stage per output tensor
    computed from the model input (ops on weights or constants alone are not stages)."""
    if type(out) is _Tensor or isinstance(out, _Tensor):
        outs = [out]
    elif isinstance(out, (tuple, list)) and out and all(isinstance(o, _Tensor) for o in out):
        outs = list(out)
    else:
        return  # (sizes, numbers, booleans: not stages)
    ins = _flat_tensors(args, kwargs)
    producer = s.producer
    derived = _sources_of(producer, ins)  # (an in-place op's target: what it overwrote)
    if not derived:
        return  # computed from weights or constants only
    sources = list(_kept(derived))
    first = ins[0] if ins else None
    if len(outs) == 1:
        o = outs[0]
        if o is first and not inplace:
            return  # returned its input: a pass-through
        if (info.noop and first is not None and o.dtype == first.dtype
                and o.shape == first.shape):
            entry = producer.get(id(first))
            if entry is not None and entry[0]() is first:
                producer[id(o)] = (_ref(o), entry[1])  # same values: sources pass through
            return
    in_shape = tuple(first.shape) if first is not None else None
    first_source = sources[0] if sources else None
    for o in outs:
        if o.dim() == 0 or (s.batch and o.shape[0] != s.batch):
            s.notices.append(
                f"{_op_name(s, info.op)} ({info.op}) returned shape {tuple(o.shape)}, which has "
                "no batch axis: computed, not a stage")
            continue
        kind, params = op_params(info, args, kwargs, tuple(o.shape), in_shape)
        name = _op_name(s, info.op)
        if s.keep is not None and not s.keep(name, kind):
            producer[id(o)] = (_ref(o), _UNKEPT)
            continue
        index = len(s.records)
        value: Any
        if replay is not None and len(outs) == 1 and name not in s.copy:
            # not held: computed again from the stages it read when first read
            rec = Record(name, -1, kind, first_source, o.shape, o._version,
                         (func, replay, dict(kwargs), inplace))
        elif s.convert is not None:
            value = s.convert(o)
            if s.sink is not None:
                value = s.sink.put(index, name, value)
            rec = Record(name, -1, kind, first_source, value, None)
        elif name in s.copy:
            rec = Record(name, -1, kind, first_source, o.detach().clone(), None)
        else:
            rec = Record(name, -1, kind, first_source, o, None if o.is_inference() else o._version)
            _hold(s, rec, o)
        rec.sources = tuple(sources)
        rec.op, rec.params = info.op, params
        src_last = first_source is not None and first_source >= 0 and s.records[first_source].last
        if info.op == "permute" and o.dim() == 4:
            dims = _dims(args, kwargs)
            # (0, 2, 3, 1) turns a channels-first map channels-last; (0, 3, 1, 2) back
            rec.last = dims == (0, 1, 2, 3) if src_last else dims == (0, 2, 3, 1)
        elif src_last:
            rec.last = _stays_last(s.records[first_source], o)
        if rec.last and rec.recipe is not None:  # (a channels-last map is held, moved later)
            rec.recipe, rec.value = None, o
            _hold(s, rec, o)
        rec.weights = _operand_weights(s, info.op, args, kwargs)
        s.records.append(rec)
        producer[id(o)] = (_ref(o), index)
        if s.substitute is not None and len(outs) == 1:
            return _substituted(s, rec, args, out, o)
    return None


class StopPass(Exception):
    """Raised by a ``substitute`` callback to end the pass early (attribution)."""


_PASS_THROUGH = (StopPass,)


class _OpRecorder(TorchFunctionMode):
    """Sees every torch function called while a pass is recorded; records those run
    outside leaf modules (a leaf takes this mode off the stack while it runs)."""

    def __init__(self, s: _Pass):
        super().__init__()
        self.s = s

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        s = self.s
        if s.inside or s.thread != _ident():
            return func(*args, **kwargs)
        info = op_info(func)
        inplace = is_inplace_call(info, args, kwargs)
        replay = None
        if info.kind in _REPLAY_KINDS and not info.reflected and "out" not in kwargs:
            try:
                replay = _replayable(s, info.op, args, kwargs)
            except Exception:  # noqa: BLE001 - then it is held, as any other output
                replay = None
        before = None
        if inplace:
            target = kwargs.get("out")
            if target is None and args:
                target = args[0]
            if isinstance(target, _Tensor):
                entry = s.producer.get(id(target))
                if entry is not None and entry[0]() is target:
                    before = entry[1]
                _before_inplace(s, (target,))
        out = func(*args, **kwargs)
        if inplace and out is None and args:  # (``x[i] = v`` returns nothing)
            out = args[0]
        try:
            new = _record_op(s, func, info, args, kwargs, out, inplace, before, replay)
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - never break the user's forward pass
            s.notices.append(f"{info.op}: not recorded ({type(exc).__name__}: {exc})")
            new = None
        return out if new is None else new


def _enter_leaf(s: _Pass) -> Any:
    """A leaf starts: its ops are its own (our mode off the stack while it runs)."""
    s.inside += 1
    if s.inside == 1 and s.mode is not None and torch._C._len_torch_function_stack():
        top = _pop_mode()
        if top is s.mode:
            return top
        _push_mode(top)  # (someone else's mode on top: leave the stack alone)
    return None


def _leave_leaf(s: _Pass, popped: Any) -> None:
    s.inside -= 1
    if popped is not None:
        _push_mode(popped)


def _wrapper(box: list, i: int, forward: Any, inplace: bool) -> Any:
    """Leaf ``i``'s ``forward`` while a pass is recorded: the module's own, then
    :func:`_record` for the pass in ``box[0]`` (made once per plan, installed for each
    pass; calls from other threads are not recorded).  The op mode is off the stack
    while the leaf runs (its ops are its own) and while convlens notes what it made."""

    def recorded(*args: Any, **kwargs: Any) -> Any:
        s = box[0]
        if s is None or s.thread != _ident() or s.inside:
            return forward(*args, **kwargs)
        s.inside = 1
        mode = s.mode
        popped = None
        if mode is not None and _stack_len():
            popped = _pop_mode()
            if popped is not mode:  # (someone else's mode on top: leave the stack alone)
                _push_mode(popped)
                popped = None
        try:
            a0 = args[0] if args else None
            before = a0._version if type(a0) is _Tensor and s.input_version is not None else None
            if inplace:
                _before_inplace(s, args)
            out = forward(*args, **kwargs)
            new = _record(s, i, args, out, before)
        finally:
            s.inside = 0
            if popped is not None:
                _push_mode(popped)
        return out if new is None else new
    return recorded


def _container(box: list, name: str, forward: Any) -> Any:
    """A module with children, while a pass is recorded: its name is the path of the ops
    its own ``forward`` runs."""

    def entered(*args: Any, **kwargs: Any) -> Any:
        s = box[0]
        if s is None or s.thread != _ident():
            return forward(*args, **kwargs)
        path = s.path
        path.append(name)
        try:
            return forward(*args, **kwargs)
        finally:
            path.pop()
    return entered


def _hook(s: _Pass, m: nn.Module, i: int, inplace: bool) -> list[Any]:
    """Hooks doing what :func:`_wrapper` does, for a leaf with forward hooks of its own
    (which may change what the call returns: ours runs after them)."""
    state: dict[str, Any] = {}

    def pre(_m: Any, args: tuple) -> None:
        if _ident() != s.thread or s.inside:
            state["skip"] = True
            return
        state["skip"] = False
        state["popped"] = _enter_leaf(s)
        if inplace:
            _before_inplace(s, args)
        a0 = args[0] if args else None
        state["before"] = a0._version if type(a0) is _Tensor and s.input_version is not None else None

    def post(_m: Any, args: tuple, out: Any) -> Any:
        if state.get("skip", True):
            return None
        try:
            return _record(s, i, args, out, state.get("before"))
        finally:
            _leave_leaf(s, state.pop("popped", None))

    # ours first before the call, last after it (the user's hooks may change the output)
    return [m.register_forward_pre_hook(pre, prepend=True), m.register_forward_hook(post)]


class Wrappers:
    """The wrapped ``forward`` of each module of a plan (leaves record, containers name
    the ops they run), made once and installed per pass."""

    __slots__ = ("box", "forwards", "dicts", "before")

    def __init__(self, plan: Plan, model: nn.Module):
        self.box: list[_Pass | None] = [None]
        containers = list(plan.containers)
        if not plan.leaves or plan.leaves[0] is not model:  # (the model itself, path "")
            containers.append((model, ""))
        modules = list(plan.leaves) + [m for m, _ in containers]
        self.dicts = [m.__dict__ for m in modules]
        # what each module had as an instance attribute "forward" (the plan checks it stays)
        self.before = [d.get("forward", _NONE) for d in self.dicts]
        calls = [_own_forward(m, b) for m, b in zip(modules, self.before)]
        n = len(plan.leaves)
        self.forwards = [_wrapper(self.box, i, calls[i], plan.inplace[i]) for i in range(n)]
        self.forwards += [_container(self.box, name, calls[n + j])
                          for j, (_, name) in enumerate(containers)]


def _own_forward(m: nn.Module, own: Any) -> Any:
    """The module's ``forward`` as it is at each call: its instance attribute, else its
    class's (looked up per call: a class patched later is seen).  Held weakly: the plan
    that keeps these must not keep the model alive."""
    if own is not _NONE:
        return own
    ref = weakref.ref(m)

    def forward(*args: Any, **kwargs: Any) -> Any:
        mm = ref()
        return mm.__class__.forward(mm, *args, **kwargs)
    return forward


def _install(dicts: list[dict], forwards: list[Any]) -> None:
    """Set (or, for ``_NONE``, remove) each module's instance attribute ``forward``."""
    if _NONE in forwards:
        for d, f in zip(dicts, forwards):
            if f is _NONE:
                d.pop("forward", None)
            else:
                d["forward"] = f
    else:
        deque(map(dict.__setitem__, dicts, repeat("forward"), forwards), maxlen=0)


_LOCK = threading.RLock()
"""One recorded pass at a time in this process: a pass changes the model's modules."""


def run_pass(
    model: nn.Module, x: torch.Tensor, plan: Plan,
    keep: Callable[[str, str], bool] | None, copy: frozenset[str] = frozenset(),
    convert: Callable[[torch.Tensor], Any] | None = None, sink: DiskStore | None = None,
    substitute: Callable[[Record, tuple, torch.Tensor], Any] | None = None,
) -> tuple[list[Record], Any, frozenset[str], list[str]]:
    """Run ``model(x)`` once, recording the leaves of ``plan`` and every op run outside
    them (``keep`` filters by name and kind).  Returns the records, the model's output,
    the names of the stages whose held output an in-place op changed after it was
    recorded (run again with those in ``copy``: their outputs are then copied as they are
    made) and the notices (what was computed but is not a stage).

    ``convert`` turns every output into what is kept *as it is made* (a copy, a
    float16 array...); ``sink`` then writes that to disk.  Either makes the pass hold no
    tensors of the model.  ``substitute(record, args, tensor)`` is called as each stage
    is made and may return a tensor the forward pass goes on with instead (attribution:
    one walker over the model for capture and gradients); it may raise
    :class:`StopPass` to end the pass (the output is then None).

    Each module's ``forward`` is wrapped for the pass (an instance attribute, put back in
    ``finally``) rather than hooked: PyTorch then keeps every module call on its fast
    path, where one global hook would send all of them through the slow one.  The ops
    between leaves are seen by a ``TorchFunctionMode`` entered for the pass only and
    taken off the stack while a leaf runs.
    """
    s = _Pass(plan, x, keep, copy, convert, sink)
    s.substitute = substitute
    w = plan.wrappers
    if w is None:
        w = plan.wrappers = Wrappers(plan, model)
    handles: list[Any] = []
    with _LOCK:
        if w.box[0] is not None:  # (a capture of this model from inside its own forward)
            w = Wrappers(plan, model)
        w.box[0] = s
        depth = torch._C._len_torch_function_stack()
        try:
            _install(w.dicts, w.forwards)
            if plan.hooked():  # (rare: leaves with hooks of their own, the slow way)
                for i, m in enumerate(plan.leaves):
                    if m._forward_hooks or m._forward_pre_hooks:
                        _hook_instead(s, w, m, i, plan.inplace[i], handles)
            s.mode = _OpRecorder(s)
            try:
                with s.mode:
                    output = model(x)
            except StopPass:
                output = None
        finally:
            w.box[0] = None
            _install(w.dicts, w.before)
            for h in handles:
                h.remove()
            while torch._C._len_torch_function_stack() > depth:  # (an exception in a leaf)
                _pop_mode()
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
        or (changed_input and rec.recipe is not None and -1 in rec.sources)
    )
    return records, output, mutated, s.notices


def _hook_instead(s: _Pass, w: Wrappers, m: nn.Module, i: int, inplace: bool,
                  handles: list[Any]) -> None:
    """A leaf with hooks of its own: its output is not computed again (a hook may change
    it), and it is recorded by hooks (ours before and after the user's), not wrapped."""
    if s.recipes is not None and s.recipes[i] is not None:
        s.recipes = list(s.recipes)
        s.recipes[i] = None
    if not isinstance(m, _SCRIPT):
        if w.before[i] is _NONE:
            w.dicts[i].pop("forward", None)
        else:
            w.dicts[i]["forward"] = w.before[i]
        handles += _hook(s, m, i, inplace)


_NONE = object()
