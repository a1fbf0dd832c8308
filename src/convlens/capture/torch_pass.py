"""One recorded forward pass of a PyTorch model: the hot path of ``capture()``.

Cost model: a plain forward pass of EfficientNet-Lite0 takes ~12 ms here, so every
microsecond per layer call counts.  The pass therefore

* registers **one** global forward hook for the duration of the pass (removed in
  ``finally``) instead of two hooks per leaf, and ignores calls of modules that are not
  leaves of this model; in-place modules (``ReLU(inplace=True)``) get a pre-hook each;
* keeps each kept output **by reference** and defers everything else (describing the
  module, weights, NumPy conversion) until after the pass;
* copies a held output only when it is about to be overwritten: the pre-hook of an
  in-place module clones the held tensors it is given; an in-place op hidden inside some
  ``forward`` (``out += x``) shows in the tensor's version counter after the pass, and the
  pass is then repeated with those stages in ``copy`` (copied as their layers return);
* with ``dtype="float16"`` or a disk store, converts / writes each output as its layer
  returns (a copy taken then is immune to later in-place ops) and holds nothing.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch import nn

from .options import DiskStore
from .torch_derive import Recipe, recipe

__all__ = ["leaf_table", "run_pass", "first_tensor"]

_Tensor = torch.Tensor


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


def leaf_table(model: nn.Module, kind: Callable[[nn.Module], str],
               training: list[nn.Module] | None = None) -> dict[int, tuple[str, nn.Module, str]]:
    """``id(module) -> (name, module, kind)`` for the leaves of ``model`` in the order and
    with the names ``model.named_modules()`` gives them (a shared module once, first name).
    ``training``, when given, receives every module (``model`` included) in training mode."""
    table: dict[int, tuple[str, nn.Module, str]] = {}
    seen = {id(model)}
    note = training.append if training is not None else None
    if note is not None and model.training:
        note(model)

    def walk(m: nn.Module, prefix: str) -> None:
        for n, c in m._modules.items():
            if c is None or id(c) in seen:
                continue
            seen.add(id(c))
            if note is not None and c.training:
                note(c)
            name = f"{prefix}.{n}" if prefix else n
            kids = c._modules
            if kids and any(v is not None for v in kids.values()):
                walk(c, name)
            else:
                table[id(c)] = (name, c, kind(c))

    walk(model, "")
    if not table:  # the model is itself one layer
        table[id(model)] = (type(model).__name__.lower(), model, kind(model))
    return table


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

    __slots__ = ("name", "module", "kind", "source", "value", "version", "sources", "recipe")

    def __init__(self, name: str, module: nn.Module, kind: str, source: int | None,
                 value: Any, version: int | None, recipe: Recipe | None = None):
        self.name, self.module, self.kind = name, module, kind
        self.source, self.value, self.version = source, value, version
        self.sources: tuple[int | None, ...] | None = None  # every input, for merges
        self.recipe = recipe
        """Set when the output is not held but computed again from the source stage's
        (``value`` is then the output's shape; see ``torch_derive``)."""


def run_pass(
    model: nn.Module, x: torch.Tensor, table: dict[int, tuple[str, nn.Module, str]],
    keep: Callable[[str, str], bool] | None, copy: frozenset[str] = frozenset(),
    convert: Callable[[torch.Tensor], Any] | None = None, sink: DiskStore | None = None,
) -> tuple[list[Record], Any, frozenset[str]]:
    """Run ``model(x)`` once, recording the leaves in ``table`` (``keep`` filters by name
    and kind).  Returns the records, the model's output and the names of the stages whose
    held output an in-place op changed after it was recorded (run again with those in
    ``copy``: their outputs are then copied as their layers return).

    ``convert`` turns every output into what is kept *as the layer returns* (a copy, a
    float16 array...); ``sink`` then writes that to disk.  Either makes the pass hold no
    tensors of the model.
    """
    records: list[Record] = []
    counts: dict[str, int] = {}
    producer: dict[int, tuple[Any, int]] = {id(x): (weakref.ref(x), -1)}
    held: dict[int, list[Record]] = {}  # id(tensor) -> records holding it by reference
    by_ref = convert is None
    get = table.get
    ref = weakref.ref
    f32 = torch.float32

    def hook(m: nn.Module, args: tuple, output: Any) -> None:
        entry = get(id(m))
        if entry is None or entry[1] is not m:
            return
        out = output if type(output) is _Tensor else first_tensor(output)
        if out is None:
            return
        name, _, kind = entry
        n = counts.get(name, 0) + 1
        counts[name] = n
        if n > 1:
            name = f"{name}#{n}"
        if keep is not None and not keep(name, kind):
            producer.pop(id(out), None)  # made (or changed) by a stage not kept
            return
        inp = args[0] if args and type(args[0]) is _Tensor else first_tensor(args)
        source = None
        if inp is not None:
            src = producer.get(id(inp))
            if src is not None and src[0]() is inp:
                source = src[1]
        index = len(records)
        if (by_ref and source is not None and source >= 0 and (kind == "norm" or kind == "activation")
                and name not in copy and len(args) == 1 and type(out) is _Tensor
                and out.dtype is f32 and inp.dtype is f32 and out.is_cpu and out is not inp):
            src_rec = records[source]
            rc = recipe(m) if src_rec.version is not None and inp._version == src_rec.version else None
            if rc is not None:  # computed again from the source stage when read: not held
                rec = Record(name, m, kind, source, tuple(out.shape), out._version, rc)
                records.append(rec)
                producer[id(out)] = (ref(out), index)
                return
        if by_ref and name in copy:
            rec = Record(name, m, kind, source, out.detach().clone(), None)
        elif by_ref:
            rec = Record(name, m, kind, source, out, out._version)
            lst = held.get(id(out))
            if lst is None:
                held[id(out)] = [rec]
            else:
                lst.append(rec)
        else:
            value: Any = convert(out)  # type: ignore[misc]
            if sink is not None:
                value = sink.put(index, name, value)
            rec = Record(name, m, kind, source, value, None)
        if kind == "merge":
            rec.sources = tuple(_producer_of(producer, t) for t in _tensors(args))
        records.append(rec)
        producer[id(out)] = (ref(out), index)

    def pre_hook(m: nn.Module, args: tuple) -> None:
        # an in-place module is about to overwrite its input: copy it where we hold it
        t = args[0] if args and type(args[0]) is _Tensor else first_tensor(args)
        if t is not None:
            for rec in held.pop(id(t), ()):
                # (an output something already changed stays as it is: found after the pass)
                if rec.value is t and t._version == rec.version:
                    rec.value, rec.version = t.detach().clone(), None

    handles = [nn.modules.module.register_module_forward_hook(hook)]
    try:
        if by_ref:
            for _, m, _ in table.values():
                if getattr(m, "inplace", False) is True:
                    handles.append(m.register_forward_pre_hook(pre_hook))
        output = model(x)
    finally:
        for h in handles:
            h.remove()
    mutated = frozenset(
        rec.name for rec in records
        if rec.version is not None and rec.recipe is None and rec.value._version != rec.version
    )
    return records, output, mutated
