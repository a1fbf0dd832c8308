"""One recorded forward pass of a Keras 3 model: every layer call and every op.

How each part of a model is seen, for the one pass (everything installed here is an
instance attribute or a context, removed in ``finally``):

* **Functional graphs** (a functional model, a ``Sequential`` built with an input, any
  functional model nested in them): the graph's own runner, ``_run_through_graph``, is
  called with an ``operation_fn`` that records each node it runs — a layer or a
  ``keras.ops`` call (``keras.ops.add``, ``x + y``, ``keras.ops.mean``...).  Keras runs
  its graph exactly as in a plain call; convlens only sees every node's arguments and
  output, so the values are the model's own.
* **Layers reached outside a graph** (inside a subclassed model or a custom layer with
  sublayers): each leaf layer's ``call`` is wrapped.
* **Ops in a subclassed ``call()``**: on the torch backend, a ``TorchFunctionMode``
  records every torch function run *outside* the recorded layers and ops and fed by a
  tensor convlens knows; on other backends they cannot be seen, and whatever they
  computed is named in one notice (a custom layer whose output no recorded stage made
  becomes a stage of its own, kind ``other``).

Sources are found by tensor identity: each input tensor of a call maps to the stage that
produced it (-1: the model input).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from convlens.capture.keras_ops import SPATIAL_REDUCTIONS, cf_dim, op_kind, op_params, torch_kind, torch_name

__all__ = ["KerasPass", "Rec", "all_tensors", "first_tensor"]

_NOOPS = frozenset({"detach", "contiguous", "clone", "to", "type", "float", "cpu", "cuda",
                    "requires_grad", "alias", "type_as", "as_tensor", "tensor", "data",
                    "coalesce", "align_to", "refine_names", "rename", "resolve_conj",
                    "resolve_neg", "get"})


def first_tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return first_tensor(value[0]) if value else None
    if isinstance(value, dict):
        return first_tensor(next(iter(value.values()))) if value else None
    return value if hasattr(value, "shape") and hasattr(value, "dtype") else None


def all_tensors(value: Any) -> list:
    """Every tensor in ``value`` (nested lists, tuples, dicts), in order."""
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in all_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in all_tensors(v)]
    if isinstance(value, (np.ndarray, np.generic)):
        return []  # a constant, not a tensor of the pass
    return [value] if hasattr(value, "shape") and hasattr(value, "dtype") else []


def _scalars(args: tuple) -> list[tuple[int, float]]:
    return [(i, float(a)) for i, a in enumerate(args)
            if isinstance(a, (int, float)) and not isinstance(a, bool)]


class Rec:
    """One recorded stage, its output still a framework tensor."""

    __slots__ = ("name", "kind", "op", "params", "layer", "sources", "tensor", "move", "hwc",
                 "weights")

    def __init__(self, name: str, kind: str, op: str, params: dict, layer: Any,
                 sources: tuple, tensor: Any, move: bool):
        self.name, self.kind, self.op, self.params = name, kind, op, params
        self.layer, self.sources, self.tensor, self.move = layer, sources, tensor, move
        self.hwc: tuple[int, ...] | None = None
        self.weights: dict[str, np.ndarray] | None = None


class KerasPass:
    """Records one forward pass of ``model``; see the module docstring."""

    def __init__(self, keras: Any, model: Any, keep: Callable[[str, str], bool] | None,
                 describe: Callable[[Any], tuple[str, dict]], channels_last: Callable,
                 fused: Callable, split: Callable):
        self.keras, self.model = keras, model
        self.keep = keep or (lambda name, kind: True)
        self._describe, self._channels_last = describe, channels_last
        self._fused, self._split = fused, split
        self.linear = keras.activations.linear
        self.recs: list[Rec] = []
        self.depth = 0  # > 0 while a recorded layer/op runs: what it runs inside is its own
        self.prefix: list[str] = []  # custom layers whose call() is running
        self.unrecorded: list[str] = []  # what was computed but could not be recorded
        self._producer: dict[int, tuple[Any, int | None]] = {}
        self._counts: dict[str, int] = {}
        self._op_counts: dict[str, int] = {}
        self._described: dict[int, tuple[str, dict]] = {}
        self._installed: list[tuple[Any, str]] = []
        self._wrapped: set[int] = set()
        self._patched: set[int] = set()
        self.needs_mode = False
        L = keras.layers
        self._Input = L.InputLayer
        self._Layer = keras.Layer
        self._Sequential = keras.Sequential
        from keras.src.models.functional import Functional
        self._Functional = Functional
        self._Symbolic = keras.KerasTensor
        self.default_channels_last = keras.config.image_data_format() == "channels_last"

    # -- tensors -> stages --------------------------------------------------------------
    def _ref(self, tensor: Any) -> Any:
        try:
            return weakref.ref(tensor)
        except TypeError:
            return lambda t=tensor: t

    def mark_input(self, tensor: Any) -> None:
        if not self.known(tensor):
            self._producer[id(tensor)] = (self._ref(tensor), -1)

    def known(self, tensor: Any) -> bool:
        entry = self._producer.get(id(tensor))
        return entry is not None and entry[0]() is tensor

    def source_of(self, tensor: Any) -> int | None:
        entry = self._producer.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def _sources(self, tensors: list) -> tuple[int, ...]:
        out = []
        for t in tensors:
            entry = self._producer.get(id(t))
            if entry is not None and entry[0]() is t:
                if entry[1] is not None:
                    out.append(entry[1])
            elif hasattr(t, "ndim") and t.ndim > 0:
                self._unknown_input(t)
        return tuple(out)

    def _unknown_input(self, tensor: Any) -> None:
        where = self.prefix[-1] if self.prefix else self.model.name
        note = f"the call() of {where}"
        if note not in self.unrecorded:
            self.unrecorded.append(note)

    def unique(self, name: str) -> str:
        n = self._counts.get(name, 0) + 1
        self._counts[name] = n
        return name if n == 1 else f"{name}#{n}"

    def record(self, name: str, kind: str, op: str, params: dict, layer: Any,
               sources: tuple, out: Any, move: bool) -> Rec | None:
        name = self.unique(name)
        if not self.keep(name, kind):
            self._producer[id(out)] = (self._ref(out), None)  # known, not kept
            return None
        r = Rec(name, kind, op, params, layer, sources, out, move)
        self.recs.append(r)
        self._producer[id(out)] = (self._ref(out), len(self.recs) - 1)
        return r

    # -- layers -------------------------------------------------------------------------
    def describe(self, layer: Any) -> tuple[str, dict]:
        d = self._described.get(id(layer))
        if d is None:
            d = self._described[id(layer)] = self._describe(layer)
        return d

    def _call_layer(self, layer: Any, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one leaf layer (``fn`` calls it) and record it: one stage, two with a
        fused activation."""
        kind, params = self.describe(layer)
        ins = all_tensors(args) or all_tensors(kwargs)
        sources = self._sources(ins)
        fused = self._fused(layer, kind, self.linear)
        self.depth += 1
        try:
            if fused is None:
                out = fn(*args, **kwargs)
                pre = None
            else:
                pre, out, fn_name = self._split(layer, fn, args, kwargs, self.linear)
        finally:
            self.depth -= 1
        cl = self._channels_last(layer)
        op = type(layer).__name__
        p = dict(params)
        first = pre if fused is not None else first_tensor(out)
        if first is None:
            return out
        if ins and kind in ("conv", "dense"):
            shape = ins[0].shape
            c = shape[-1] if (cl or kind == "dense") else shape[1]
            if kind == "dense":
                p["in_features"] = int(c)
            elif len(shape) >= 3:
                p["in_channels"] = int(c)
                if "depth_multiplier" in p:  # depthwise: one group per input channel
                    p["groups"], p["out_channels"] = int(c), int(c) * int(p["depth_multiplier"])
        if kind == "merge":
            p["sources"] = sources
            if p.get("operation") == "cat" and isinstance(getattr(layer, "axis", None), int):
                p["axis"] = int(layer.axis)  # Keras' (channels-last) axis, and as a dim
                p["dim"] = cf_dim(layer.axis, len(first.shape), cl)
        if fused is None and any(first is t for t in ins):
            return out  # handed back its input (eval-mode dropout, identity): not a stage
        if fused is None and len(all_tensors(out)) > 1:
            note = f"{layer.name} ({type(layer).__name__}): outputs after the first"
            if note not in self.unrecorded:
                self.unrecorded.append(note)
        if fused is not None:
            p["activation"] = fn_name
        r = self.record(layer.name, kind, op, p, layer, sources, first, cl and kind != "reshape")
        if r is not None:
            if kind == "flatten" and cl and ins and len(ins[0].shape) == 4:
                r.hwc = tuple(int(s) for s in ins[0].shape[1:])
        if fused is not None:
            self.record(f"{layer.name}.{fn_name}", "activation", f"{op}.activation",
                        {"function": fn_name, "fused": True}, None,
                        (self.source_of(pre),) if self.source_of(pre) is not None else (),
                        out, cl)
        return out

    def _inner(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Run ``fn``; what runs inside it is its own (not recorded)."""
        self.depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self.depth -= 1

    def _call_op(self, operation: Any, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one ``keras.ops`` node of a functional graph and record it."""
        ins = all_tensors(args) + all_tensors(kwargs)
        sources = self._sources(ins)
        out = self._inner(fn, args, kwargs)
        t = first_tensor(out)
        if t is None or any(t is i for i in ins):
            return out  # nothing, or its input handed back: not a stage
        cls = type(operation).__name__
        key = cls.lower()
        cl = getattr(operation, "data_format", None)
        cl = self.default_channels_last if cl is None else cl == "channels_last"
        axis = getattr(operation, "axis", None)
        ndim = len(ins[0].shape) if ins else 0
        kind = op_kind(key, axis, ndim, cl)
        attrs = {k: v for k, v in vars(operation).items() if not k.startswith("_")}
        params = op_params(key, kind, attrs, len(ins), len(t.shape), cl and kind != "reshape",
                           _scalars(args))
        if kind == "merge":
            params["sources"] = sources
        self.record(operation.name, kind, cls, params, None, sources, t,
                    cl and kind != "reshape")
        extra = all_tensors(out)[1:]
        if extra:
            note = f"{operation.name} ({cls}): outputs after the first"
            if note not in self.unrecorded:
                self.unrecorded.append(note)
        return out

    # -- installing for one pass ----------------------------------------------------------
    def _set(self, obj: Any, attr: str, value: Any) -> None:
        if attr in obj.__dict__:
            from convlens.errors import CaptureError
            raise CaptureError(f"layer {obj.name!r} already has a patched {attr}; is another "
                               "capture running on this model?")
        object.__setattr__(obj, attr, value)
        self._installed.append((obj, attr))

    def uninstall(self) -> None:
        while self._installed:
            obj, attr = self._installed.pop()
            try:
                object.__delattr__(obj, attr)
            except AttributeError:
                pass

    def install(self, obj: Any, in_graph: bool = False, top: bool = False) -> None:
        if isinstance(obj, self._Input) or not isinstance(obj, self._Layer):
            return  # an input, or a keras.ops operation: recorded by the graph runner
        if isinstance(obj, self._Functional) and type(obj).call is self._Functional.call:
            if id(obj) in self._patched:
                return
            self._patched.add(id(obj))
            self._set(obj, "_run_through_graph", self._graph_runner(obj))
            for op in obj.operations:
                self.install(op, in_graph=True)
            return
        if isinstance(obj, self._Sequential) and getattr(obj, "_functional", None) is not None:
            self.install(obj._functional, in_graph=in_graph)
            return
        subs = list(obj._flatten_layers(include_self=False, recursive=False))
        if subs:
            if id(obj) in self._wrapped:
                return
            self._wrapped.add(id(obj))
            if not isinstance(obj, self._Sequential):
                self.needs_mode = True  # a call() of the user's own: ops may run in it
            self._set(obj, "call", self._composite_call(obj, obj.call, top))
            for s in subs:
                self.install(s)
        elif not in_graph and id(obj) not in self._wrapped:
            self._wrapped.add(id(obj))
            self._set(obj, "call", self._leaf_call(obj, obj.call))

    def _graph_runner(self, functional: Any) -> Callable:
        original = functional._run_through_graph  # bound method of the class

        def run(inputs: Any, operation_fn: Callable = lambda op: op, call_fn: Any = None):
            if call_fn is not None or self.depth or any(
                    isinstance(t, self._Symbolic) for t in all_tensors(inputs)):
                # symbolic (shape inference), or inside a recorded op: Keras' own run
                return original(inputs, operation_fn=operation_fn, call_fn=call_fn)
            if functional is self.model or getattr(self.model, "_functional", None) is functional:
                for t in all_tensors(inputs):
                    self.mark_input(t)
            return original(inputs, operation_fn=lambda op: self._node(op, operation_fn(op)))

        return run

    def _node(self, operation: Any, fn: Callable) -> Callable:
        if isinstance(operation, self._Layer):
            if isinstance(operation, (self._Functional, self._Sequential)) or \
                    operation._flatten_layers(include_self=False, recursive=False):
                return fn  # a container: what runs inside it records itself
            return lambda *a, **k: self._call_layer(operation, fn, a, k)
        return lambda *a, **k: self._call_op(operation, fn, a, k)

    def _leaf_call(self, layer: Any, original: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return original(*args, **kwargs)
            return self._call_layer(layer, original, args, kwargs)

        return call

    def _composite_call(self, layer: Any, original: Callable, top: bool) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return original(*args, **kwargs)
            ins = all_tensors(args) + all_tensors(kwargs)
            if top:
                for t in ins:
                    self.mark_input(t)
            self.prefix.append(layer.name)
            try:
                out = original(*args, **kwargs)
            finally:
                self.prefix.pop()
            t = first_tensor(out)
            if t is not None and not self.known(t):
                # computed in a call() convlens could not see into: its output is a stage
                note = f"the call() of {layer.name}"
                if note not in self.unrecorded:
                    self.unrecorded.append(note)
                cl = self._channels_last(layer)
                self.record("output" if top else layer.name, "output" if top else "other",
                            type(layer).__name__, {}, None, self._sources(ins), t, cl)
            return out

        return call

    # -- torch functions in call() ------------------------------------------------------
    def torch_mode(self) -> Any:
        """A ``TorchFunctionMode`` recording the torch functions run outside recorded
        layers and ops (torch backend only)."""
        import torch
        from torch.overrides import TorchFunctionMode

        rec = self
        for v in self.model.weights:  # the model's own variables: constants of the pass
            value = getattr(v, "value", None)
            if isinstance(value, torch.Tensor):
                self._producer[id(value)] = (self._ref(value), None)

        class _Ops(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                                   kwargs: dict | None = None) -> Any:
                kwargs = kwargs or {}
                if rec.depth:
                    return func(*args, **kwargs)
                ins = [t for t in all_tensors(args) + all_tensors(kwargs)
                       if isinstance(t, torch.Tensor)]
                if not any(rec.known(t) for t in ins):
                    out = func(*args, **kwargs)
                    for t in all_tensors(out):  # made from constants: known, not a stage
                        if isinstance(t, torch.Tensor):
                            rec._producer[id(t)] = (rec._ref(t), None)
                    return out
                return rec._torch_op(torch, func, args, kwargs, ins)

        return _Ops()

    def _torch_op(self, torch: Any, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
        name = torch_name(func)
        raw = getattr(func, "__name__", "")
        inplace = (raw.endswith("_") and not raw.endswith("__")) or (
            raw.startswith("__i") and raw[3:-2] in ("add", "sub", "mul", "truediv", "div",
                                                    "floordiv", "pow", "and", "or"))
        if inplace and ins:
            self._protect(torch, ins[0])
        sources = self._sources(ins)
        out = self._inner(func, args, kwargs)
        outs = [t for t in all_tensors(out) if isinstance(t, torch.Tensor)]
        if not outs:
            return out
        if name in _NOOPS and not inplace:
            for t in outs:  # sources pass through no-ops
                if not self.known(t) and ins:
                    self._producer[id(t)] = (self._ref(t), self.source_of(ins[0]))
            return out
        if not inplace and len(outs) == 1 and any(outs[0] is t for t in ins):
            return out  # handed back an input unchanged
        cl = self.default_channels_last
        _, key = torch_kind(name)
        axis = kwargs.get("dim", kwargs.get("axis"))
        if axis is None and len(args) > 1 and key in _AXIS_SECOND:
            axis = args[1]
        ndim = ins[0].ndim if ins else 0
        kind, key = torch_kind(name, axis, ndim, cl)
        if isinstance(axis, (list, tuple)) and not all(isinstance(a, int) for a in axis):
            axis = None
        attrs = {"axis": axis} if isinstance(axis, (int, tuple, list)) else {}
        attrs.update({k: v for k, v in kwargs.items() if k not in ("dim", "axis", "out")})
        scalars = _scalars(args)
        if raw.startswith("__r") and scalars:  # reflected: 1 - x is x.__rsub__(1)
            scalars = [(0, scalars[0][1])]
        params = op_params(key, kind, attrs, len(ins), outs[0].ndim, cl and kind != "reshape",
                           scalars)
        if kind == "merge":
            params["sources"] = sources
        base = _OP_NAMES.get(name, name)
        where = self.prefix[-1] if self.prefix else None
        if where is not None and where != self.model.name:
            base = f"{where}.{base}"
        n = self._op_counts.get(base, 0)  # add, add_1, add_2: as Keras and PyTorch name ops
        self._op_counts[base] = n + 1
        base = base if n == 0 else f"{base}_{n}"
        for t in outs:
            if t.is_floating_point() or t.dtype == torch.bool:
                self.record(base, kind, name, params, None, sources, t,
                            cl and kind != "reshape")
        return out

    def _protect(self, torch: Any, tensor: Any) -> None:
        """An in-place op is about to overwrite ``tensor``: the stage that made it keeps a
        copy of what it computed."""
        i = self.source_of(tensor)
        if i is not None and i >= 0 and self.recs[i].tensor is tensor:
            self.recs[i].tensor = tensor.detach().clone()
        self._producer.pop(id(tensor), None)
        self._producer[id(tensor)] = (self._ref(tensor), i)


_AXIS_SECOND = SPATIAL_REDUCTIONS | {"concatenate", "stack", "softmax", "logsoftmax"}
_OP_NAMES = {"sub": "subtract", "rsub": "subtract", "mul": "multiply", "rmul": "multiply",
             "div": "divide", "truediv": "divide", "rtruediv": "divide", "radd": "add",
             "cat": "concatenate", "concat": "concatenate", "pow": "power", "neg": "negative",
             "getitem": "slice"}
