"""Stages computed again on first read instead of held during the pass.

A batch norm in eval mode and the clamping activations (ReLU, ReLU6, Hardtanh,
LeakyReLU) compute each output element from the same element of their input with
a fixed formula.  When the stage that fed them is kept, their own output need not
be: it is the same function applied to that kept output, and running the same
PyTorch kernel on the same numbers with the same parameters gives the same bits
(the functions here are exactly what the modules' ``forward`` calls).  Not holding
those outputs during the pass cuts what a capture keeps of EfficientNet-Lite0 from
76 MB to 27 MB, and with it most of the capture's cost.

Only stock modules qualify (their exact type, so a subclass with its own ``forward``
is held as usual), only in eval mode, only for float32 CPU tensors, and only when the
input is the unchanged output of a kept stage — the pass checks that.  The recipe
takes the parameters the module had at capture time (the capture's weight copies),
so training the model afterwards changes nothing.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["recipe", "Recipe"]

Recipe = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]
"""``(input, the module's weight copies) -> output``."""

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _batch_norm(m: nn.Module) -> Recipe | None:
    if m.training or not m.track_running_stats or m.running_mean is None or m.running_var is None:
        return None
    eps = float(m.eps)

    def run(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.batch_norm(x, w["running_mean"], w["running_var"], w.get("weight"),
                            w.get("bias"), False, 0.0, eps)

    return run


def _hardtanh(m: nn.Module) -> Recipe | None:
    lo, hi = float(m.min_val), float(m.max_val)
    return lambda x, _w: F.hardtanh(x, lo, hi)


def _relu(m: nn.Module) -> Recipe | None:
    return lambda x, _w: F.relu(x)


def _leaky_relu(m: nn.Module) -> Recipe | None:
    slope = float(m.negative_slope)
    return lambda x, _w: F.leaky_relu(x, slope)


_RECIPES: dict[type, Callable[[nn.Module], Recipe | None]] = {
    **{t: _batch_norm for t in _BATCHNORM},
    nn.ReLU: _relu, nn.ReLU6: _hardtanh, nn.Hardtanh: _hardtanh, nn.LeakyReLU: _leaky_relu,
}


def recipe(m: nn.Module) -> Recipe | None:
    """How to compute ``m``'s output again from its input, or None when ``m`` must be
    held (not a stock module of this kind, in training mode, in place...)."""
    make = _RECIPES.get(type(m))
    if make is None or m.__dict__.get("inplace", False) or m._forward_hooks or m._forward_pre_hooks:
        return None  # (a module's own hooks could change what it returns)
    return make(m)


def wants_weights(m: Any) -> bool:
    return type(m) in _BATCHNORM
