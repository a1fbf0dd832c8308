"""Each stage's weights as float32 NumPy arrays, copied at every capture.

``weights="copy"`` promises that a Trace never changes when the model is trained
afterwards, and shows the model as it is at the call.  The copies are taken afresh on
every capture (one concatenation of all CPU float32 tensors, ~1 ms for EfficientNet-
Lite0's 4.7 M floats): nothing is remembered between captures, since a write through
``p.data`` leaves no version counter or pointer a check could see.  The copies are
read-only: the stages of one Trace share them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["weights_of", "shared_views"]

_SCRIPT = torch.jit.ScriptModule
_F32 = torch.float32



def _pairs(m: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The module's own floating-point parameters, then buffers."""
    if isinstance(m, _SCRIPT):
        items = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
    else:
        items = list(m._parameters.items()) + list(m._buffers.items())
    return [(k, v) for k, v in items if v is not None and v.is_floating_point()]


Copies = Any  # a _Copy, or ({}, {}): copy[0] arrays, copy[1] tensors


_LARGE = 1 << 18
"""Tensors of this many elements or more (1 MB) are copied one by one: one buffer of a
ResNet-50's 100 MB would be mapped fresh (and page-faulted) at every capture, where
glibc reuses the memory of separate blocks up to 32 MB; the many small ones are copied in
one concatenation (one call instead of hundreds)."""


def _readonly(t: torch.Tensor) -> np.ndarray:
    a = t.numpy()
    a.flags.writeable = False  # shared by the stages of one Trace
    return a


class _Copy:
    """One module's weight copies: ``copy[0]`` name -> read-only array, ``copy[1]`` name
    -> tensor.  The copying is done at the capture; the views into the shared buffer are
    made when first asked for (when the stages are made, or a deferred stage computed)."""

    __slots__ = ("flat", "arr", "entries", "views")

    def __init__(self, flat: torch.Tensor, arr: np.ndarray, entries: list):
        self.flat, self.arr, self.entries = flat, arr, entries
        self.views: tuple[dict, dict] | None = None

    def __getitem__(self, i: int) -> dict:
        if self.views is None:
            np_d: dict[str, np.ndarray] = {}
            t_d: dict[str, torch.Tensor] = {}
            for k, off, n, shape, own in self.entries:
                if own is None:
                    t_d[k] = self.flat[off:off + n].view(shape)
                    np_d[k] = self.arr[off:off + n].reshape(shape)
                else:
                    t_d[k], np_d[k] = own, _readonly(own)
            self.views = (np_d, t_d)
        return self.views[i]


_NO_WEIGHTS = ({}, {})


def _snapshot(modules: list[nn.Module], pairs: list[list[tuple[str, torch.Tensor]]]) -> list[Any]:
    """Copy the weights of ``modules`` and return them in order."""
    small = [v.detach() for ps in pairs for _, v in ps
             if v.dtype is _F32 and v.is_cpu and v.numel() < _LARGE]
    flat = _flatten(small) if small else torch.empty(0)
    arr = _readonly(flat)
    off = 0
    done: list[Any] = []
    for ps in pairs:
        entries = []
        for k, v in ps:
            n = v.numel()
            if v.dtype is _F32 and v.is_cpu and n < _LARGE:
                entries.append((k, off, n, v.shape, None))
                off += n
            else:
                entries.append((k, 0, n, v.shape, v.detach().to("cpu", _F32, copy=True)))
        done.append(_Copy(flat, arr, entries))
    return done


def weights_of(modules: list[nn.Module]) -> dict[int, Copies]:
    """``id(module) -> (name -> read-only float32 array, name -> float32 tensor)``: copies
    of each module's floating-point parameters and buffers as they are now."""
    out: dict[int, Copies] = {}
    todo: list[nn.Module] = []
    pairs: list[list[tuple[str, torch.Tensor]]] = []
    for m in modules:
        ps = _pairs(m)
        if ps:
            todo.append(m)
            pairs.append(ps)
        else:
            out[id(m)] = _NO_WEIGHTS
    if todo:
        for m, copies in zip(todo, _snapshot(todo, pairs)):
            out[id(m)] = copies
    return out


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
