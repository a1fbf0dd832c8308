"""Each stage's weights as float32 NumPy arrays, copied once per state of the model.

``weights="copy"`` promises that a Trace never changes when the model is trained
afterwards.  Copying 4.7 M floats (EfficientNet-Lite0) costs ~1 ms, a tenth of a
224-px forward pass, so the copies are kept per module (weakly) with a signature of
the tensors they came from: the same tensor objects (weak references, so a new
tensor at a recycled address is not mistaken for the old one), the same storage
(``data_ptr``) and the same version counter (PyTorch bumps it on every in-place
change: optimizer steps, ``load_state_dict``, ``torch.nn.init``, ``p.add_()`` under
``no_grad``).  A capture of an unchanged module reuses the arrays — read-only, so no
Trace can change another's.  The one change this cannot see is an in-place write
through ``p.data`` (which bypasses version counters, as it bypasses autograd's own
checks); ``convlens.forget(model)`` drops a model's copies after such a change.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["weights_of", "shared_views", "drop"]

_SCRIPT = torch.jit.ScriptModule
_F32 = torch.float32

Entry = tuple[tuple, dict[str, np.ndarray], dict[str, torch.Tensor]]
_COPIES: "weakref.WeakKeyDictionary[nn.Module, Entry]" = weakref.WeakKeyDictionary()


def _pairs(m: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The module's own floating-point parameters, then buffers."""
    if isinstance(m, _SCRIPT):
        items = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
    else:
        items = list(m._parameters.items()) + list(m._buffers.items())
    return [(k, v) for k, v in items if v is not None and v.is_floating_point()]


def _matches(sig: tuple, pairs: list[tuple[str, torch.Tensor]]) -> bool:
    if len(sig) != len(pairs):
        return False
    for (k, ref, version, ptr), (k2, v) in zip(sig, pairs):
        if k != k2 or ref() is not v or v._version != version or v.data_ptr() != ptr:
            return False
    return True


Copies = tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]


def _snapshot(modules: list[nn.Module], pairs: list[list[tuple[str, torch.Tensor]]]) -> list[Copies]:
    """Copy the weights of ``modules`` (one concatenation for all CPU float32 tensors),
    remember them, and return them in order."""
    done: list[Copies] = []
    fast = [v.detach() for ps in pairs for _, v in ps if v.dtype is _F32 and v.is_cpu]
    flat = _flatten(fast) if fast else torch.empty(0)
    arr = flat.numpy()
    arr.flags.writeable = False  # shared by every Trace of this state of the model
    off = 0
    for m, ps in zip(modules, pairs):
        np_d: dict[str, np.ndarray] = {}
        t_d: dict[str, torch.Tensor] = {}
        sig = []
        for k, v in ps:
            sig.append((k, weakref.ref(v), v._version, v.data_ptr()))
            if v.dtype is _F32 and v.is_cpu:
                n = v.numel()
                t_d[k] = flat[off:off + n].view(v.shape)
                np_d[k] = arr[off:off + n].reshape(v.shape)
                off += n
            else:
                t = v.detach().to("cpu", _F32, copy=True)
                t_d[k] = t
                a = t.numpy()
                a.flags.writeable = False
                np_d[k] = a
        try:
            _COPIES[m] = (tuple(sig), np_d, t_d)
        except TypeError:  # a module that cannot be weakly referenced: not remembered
            pass
        done.append((np_d, t_d))
    return done


def weights_of(modules: list[nn.Module]) -> dict[int, Copies]:
    """``id(module) -> (name -> read-only float32 array, name -> float32 tensor)``: copies
    of each module's floating-point parameters and buffers as they are now."""
    out: dict[int, Copies] = {}
    stale: list[nn.Module] = []
    stale_pairs: list[list[tuple[str, torch.Tensor]]] = []
    for m in modules:
        ps = _pairs(m)
        entry = _COPIES.get(m) if ps else None
        if not ps:
            out[id(m)] = ({}, {})
        elif entry is not None and _matches(entry[0], ps):
            out[id(m)] = (entry[1], entry[2])
        else:
            stale.append(m)
            stale_pairs.append(ps)
    if stale:
        for m, copies in zip(stale, _snapshot(stale, stale_pairs)):
            out[id(m)] = copies
    return out


def drop(model: nn.Module) -> None:
    """Drop the remembered weight copies of ``model``'s modules (``convlens.forget``)."""
    for m in model.modules():
        _COPIES.pop(m, None)


def shared_views(modules: list[nn.Module]) -> dict[int, dict[str, np.ndarray]]:
    """``weights="share"``: read-only views of CPU float32 tensors (others copied)."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for m in modules:
        d = out[id(m)] = {}
        for k, v in _pairs(m):
            if v.dtype is _F32 and v.is_cpu:
                a = v.detach().numpy()
                a.flags.writeable = False  # the model's own memory: never written through a Trace
            else:
                a = v.detach().to("cpu", _F32).numpy().copy()
            d[k] = a
    return out


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One new 1-D tensor holding ``tensors`` one after another (one C++ call)."""
    try:
        return torch._utils._flatten_dense_tensors(tensors)
    except (AttributeError, RuntimeError, TypeError):  # private helper gone: the public way
        return torch.cat([t.reshape(-1) for t in tensors])
