"""The capture plan of a PyTorch model: what ``capture()`` reads from the model's
structure once and reuses while the model stays the same.

A plan holds the leaves of the model (in ``named_modules()`` order, with their names),
each leaf's stage kind and op parameters, and how to compute its output again when it
is not held (``torch_derive``).  Reading all that from EfficientNet-Lite0's 211 modules
takes about 1 ms — a tenth of a 224-px forward pass — so a plan is remembered per model
(weakly: the plan never refers to the model object itself, only to its parts) and checked
on every capture, which costs about 0.05 ms:

* the structure: every module's ``_modules`` is compared with a copy of what it held
  (the same names, the same module objects);
* each leaf's attributes: every entry of ``module.__dict__`` but ``nn.Module``'s own
  containers is compared with what it was when the plan was made (the same objects: a new
  ``stride``, ``padding``, ``inplace`` flag, an instance ``forward`` — anything assigned
  to the module — shows);
* the weights are not remembered: each capture copies them as they are at the call
  (``torch_weights``), so a write through ``p.data``, ``load_state_dict`` or swapped
  tensors show in the very next capture.  A mutable attribute (a list ``padding``) is
  compared by value.

Any difference and the plan is made again.  The plan also lists the modules with
children (``containers``): their ``forward`` is wrapped for the pass to know which
module's own code runs an op (its stage name), and every name a module has (``taken``),
which an op's stage name never takes.
"""
from __future__ import annotations

import operator
from functools import partial
from itertools import chain, compress
import weakref
from typing import Any

import torch
from torch import nn

from convlens.trace import _freeze
from convlens.capture.torch_derive import Recipe, recipe
from convlens.capture.torch_describe import describe_module, stage_kind
from convlens.capture.torch_weights import Copies, weights_of

__all__ = ["Plan", "plan_for", "cached_plan"]

_version = operator.attrgetter("_version")
_training = operator.attrgetter("training")
_values = operator.methodcaller("values")  # (TorchScript modules hold dict-like wrappers)
_not_none = partial(operator.is_not, None)
_data_ptr = torch.Tensor.data_ptr
_is = operator.is_


class Plan:
    """Leaves, names, kinds, op parameters and recipes of one model (see the module doc)."""

    __slots__ = ("leaves", "names", "kinds", "params", "recipes", "inplace", "modules",
                 "containers", "taken", "_structure", "_leaf_kids", "_hooks", "_attrs",
                 "_holders", "wrappers")

    def __init__(self, model: nn.Module):
        leaves: list[nn.Module] = []
        names: list[str] = []
        modules: list[nn.Module] = []  # every module below the model (for train/eval)
        containers: list[tuple[nn.Module, str]] = []  # modules with children (not the model)
        structure: list[tuple[dict, dict]] = [(model._modules, dict(model._modules))]
        seen = {id(model)}

        def walk(m: nn.Module, prefix: str) -> None:
            for n, c in m._modules.items():
                if c is None or id(c) in seen:
                    continue
                seen.add(id(c))
                modules.append(c)
                kids = c._modules
                name = f"{prefix}.{n}" if prefix else n
                if kids:  # (a container, or a leaf holding only None: compared whole)
                    structure.append((kids, dict(kids)))
                if any(v is not None for v in kids.values()):
                    containers.append((c, name))
                    walk(c, name)
                else:
                    leaves.append(c)
                    names.append(name)

        walk(model, "")
        if not leaves and type(model).__module__.startswith("torch.nn."):
            # a stock layer given on its own (nn.Conv2d): it is the one stage
            leaves, names = [model], [type(model).__name__.lower()]
        # (a model of the user's without children: its forward's ops are the stages)
        described = [describe_module(m) for m in leaves]
        self.leaves, self.names, self.modules = leaves, names, modules
        self.containers = containers
        self.taken = frozenset(names) | {n for _, n in containers if n}
        self.kinds = [stage_kind(m) for m in leaves]
        self.params = [_freeze(p) for _, p in described]
        self.recipes: list[Recipe | None] = [recipe(m) for m in leaves]
        self.inplace = [getattr(m, "inplace", False) is True for m in leaves]
        self._structure = structure
        self._leaf_kids = [m._modules for m in leaves if not m._modules]  # must stay empty
        self._attrs = [_attributes(m) for m in leaves]
        self._hooks = [d for m in leaves for d in (m._forward_hooks, m._forward_pre_hooks)]
        self._holders = [d for m in leaves for d in (m._parameters, m._buffers)]
        self.wrappers: Any = None  # each leaf's forward while a pass is recorded (torch_pass)

    # -- is it still this model? --------------------------------------------
    def same_structure(self) -> bool:
        # (dicts compare their values by identity first; modules compare by identity only)
        return not any(self._leaf_kids) and all(d == snap for d, snap in self._structure)

    def same_leaves(self) -> bool:
        try:
            return all(len(d) == n and get(d) == values for d, n, get, values in self._attrs)
        except Exception:  # noqa: BLE001 - a key gone, a new tensor compared elementwise...
            return False

    def hooked(self) -> bool:
        """Has any leaf forward hooks or pre-hooks of its own now?"""
        return any(self._hooks)

    def _current_tensors(self) -> list[torch.Tensor]:
        # (all in C: this runs on every capture, right after a forward pass has evicted
        # these objects from the CPU caches)
        return list(filter(_not_none, chain.from_iterable(map(_values, self._holders))))

    def training(self) -> list[nn.Module]:
        """The modules below the model that are in training mode now."""
        return list(compress(self.modules, map(_training, self.modules)))

    # -- weights ---------------------------------------------------------------
    def copies(self) -> dict[int, Copies]:
        """``id(leaf) -> (arrays, tensors)``: copies of every leaf's weights as they are
        now, taken for this capture (never reused: a write through ``p.data`` leaves no
        trace a check could see, so nothing is remembered that could go stale)."""
        return weights_of(self.leaves)

    def active_recipes(self) -> list[Recipe | None]:
        """The recipes usable in this capture: none for a module with its own hooks
        (which may change what it returns)."""
        return [rc if rc is None or not (m._forward_hooks or m._forward_pre_hooks) else None
                for rc, m in zip(self.recipes, self.leaves)]


_BOOKKEEPING = frozenset(k for k, v in nn.Module().__dict__.items() if isinstance(v, (dict, set)))
"""``nn.Module``'s own containers (parameters, buffers, children, hooks): changed in place,
never replaced, and checked on their own (structure, weights, hooks)."""


def _attributes(m: nn.Module) -> tuple[dict, int, Any, tuple]:
    """How to check that ``m``'s attributes are the ones it has now: its ``__dict__``, the
    number of entries, and the values of every entry but the bookkeeping containers (the
    same objects: a new ``stride``, ``padding``, ``inplace`` flag, an instance ``forward``
    — anything assigned to the module — shows)."""
    d = m.__dict__
    keys = tuple(k for k in d if k not in _BOOKKEEPING)
    get = operator.itemgetter(*keys) if keys else (lambda _d: ())
    if len(keys) == 1:  # (itemgetter of one key returns the value, not a tuple)
        one = operator.itemgetter(keys[0])
        get = lambda dd: (one(dd),)  # noqa: E731
    if any(type(v) in _MUTABLE for v in get(d)):  # (a list edited in place: by value)
        plain = get
        get = lambda dd: tuple(_snapshot(v) for v in plain(dd))  # noqa: E731
    return d, len(d), get, get(d)


_MUTABLE = (list, dict, set, bytearray)


def _snapshot(v: Any) -> Any:
    """A mutable attribute as a value that compares equal only while it holds the same."""
    t = type(v)
    if t is list:
        return ("list", tuple(_snapshot(x) for x in v))
    if t is dict:
        return ("dict", tuple((k, _snapshot(x)) for k, x in v.items()))
    if t is set:
        return ("set", frozenset(v))
    if t is bytearray:
        return ("bytes", bytes(v))
    return v


_PLANS: "weakref.WeakKeyDictionary[nn.Module, Plan]" = weakref.WeakKeyDictionary()


def cached_plan(model: nn.Module) -> Plan | None:
    """The remembered plan of ``model`` if its structure is unchanged (its leaves'
    attributes are checked by :func:`plan_for`, after the switch to eval mode)."""
    plan = _PLANS.get(model)
    return plan if plan is not None and plan.same_structure() else None


def plan_for(model: nn.Module, plan: Plan | None = None) -> Plan:
    """``plan`` when it still describes ``model`` exactly, else a new one (remembered)."""
    if plan is not None and plan.same_leaves():
        return plan
    plan = Plan(model)
    if not plan.leaves or plan.leaves[0] is not model:  # (a one-layer model would keep itself alive)
        try:
            _PLANS[model] = plan
        except TypeError:  # a model that cannot be weakly referenced: not remembered
            pass
    return plan
