"""Stages computed again on first read instead of held during the pass.

A convolution, a batch norm in eval mode and the clamping activations (ReLU, ReLU6,
Hardtanh, LeakyReLU) are fixed functions of their input and their weights.  When the
stage that fed one of them is kept (held, or itself computed again), its own output
need not be held: it is the same function applied to that kept output, and running the
same PyTorch kernel on the same numbers, in the same memory layout, with the same
weights gives the same bits (the functions here are exactly what the modules'
``forward`` calls).  Not holding those outputs during the pass cuts what a capture
holds of EfficientNet-Lite0 from 76 MB to under 2 MB (the outputs of the residual adds
and the head), and with it most of the capture's cost: fresh memory for every output
is what made holding them slow.

Only stock modules qualify (their exact type, so a subclass with its own ``forward``
is held as usual), or a module class that declares, in its own body, how it computes
(``convlens_recompute(self) -> recipe``, as ``nets.torch_layers.Conv2dSame`` does);
only in eval mode, only for contiguous float32 CPU tensors, and only when the input is
the unchanged output of a kept stage — the pass checks that.  The recipe takes the
hyperparameters the module had at capture time and the capture's weight copies, so
changing or training the model afterwards changes nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["recipe", "Recipe", "Settings", "settings_now", "same_settings"]

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


_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _conv(m: nn.Module) -> Recipe | None:
    """``nn.ConvNd._conv_forward``, with the hyperparameters read now."""
    conv = _CONV_FN[type(m)]
    d = m.__dict__
    stride, dilation, groups, mode = d["stride"], d["dilation"], d["groups"], d["padding_mode"]
    if mode == "zeros":
        padding = d["padding"]
        return lambda x, w: conv(x, w["weight"], w.get("bias"), stride, padding, dilation, groups)
    pad, zero = tuple(d["_reversed_padding_repeated_twice"]), (0,) * len(stride)
    return lambda x, w: conv(F.pad(x, pad, mode=mode), w["weight"], w.get("bias"), stride, zero,
                             dilation, groups)


_RECIPES: dict[type, Callable[[nn.Module], Recipe | None] | None] = {
    **{t: _batch_norm for t in _BATCHNORM},
    **{t: _conv for t in _CONV_FN},
    nn.ReLU: _relu, nn.ReLU6: _hardtanh, nn.Hardtanh: _hardtanh, nn.LeakyReLU: _leaky_relu,
}


def _maker(cls: type) -> Callable[[nn.Module], Recipe | None] | None:
    """A stock recipe for ``cls``, or the class's own ``convlens_recompute`` when the
    class itself (not a parent) declares it; None otherwise.  Cached per class."""
    try:
        return _RECIPES[cls]
    except KeyError:
        own = cls.__dict__.get("convlens_recompute")
        make = own if callable(own) else None
        _RECIPES[cls] = make
        return make


def recipe(m: nn.Module) -> Recipe | None:
    """How to compute ``m``'s output again from its input, or None when ``m`` must be
    held (not a stock module of this kind, in training mode, in place...)."""
    make = _maker(type(m))
    if make is None or m._forward_hooks or m._forward_pre_hooks:
        return None  # (a module's own hooks could change what it returns)
    # (an in-place module qualifies too: the pass checks that its input was, before the
    # call, the unchanged output of the stage that fed it; the recipe is out of place)
    return make(m)


Settings = tuple[int, bool, str]
"""What else decides which kernel PyTorch runs, and so the last bits of a convolution:
the number of threads (oneDNN splits some convolutions' sums by thread), whether oneDNN
is used at all, and the float32 matmul precision."""


def settings_now() -> Settings:
    return (torch.get_num_threads(), bool(torch.backends.mkldnn.enabled),
            torch.get_float32_matmul_precision())


@contextmanager
def same_settings(at_capture: Settings) -> Iterator[None]:
    """Run a recipe under the settings the capture ran under (put back afterwards): a
    1x1 convolution read with one thread after a two-thread capture differs in the last
    bit otherwise."""
    now = settings_now()
    if now == at_capture:
        yield
        return
    threads, mkldnn, precision = at_capture
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_num_threads(now[0])
        torch.backends.mkldnn.enabled = now[1]
        torch.set_float32_matmul_precision(now[2])
