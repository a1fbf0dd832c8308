"""Capture every leaf module of a PyTorch ``nn.Module`` with forward hooks.

Hooks are added per call and removed in ``finally``; the model runs in eval
mode under ``torch.no_grad()`` and every module's train/eval flag is restored
afterwards, so the user's model comes back exactly as it was.

Outputs are kept by reference (no copy on the hot path).  A stored output
that a later op would overwrite in place is copied just before: a pre-hook
does it for in-place modules (``ReLU(inplace=True)``); for in-place ops
hidden inside a module's ``forward`` (``out += identity``) the tensor's
version counter reveals the change after the pass, and the pass is repeated
with a copy of every output.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CaptureError, ModelError
from .recorder import Pending, Recorder

__all__ = ["capture_torch", "describe_module", "expected_channels"]

_KINDS: list[tuple[tuple[type, ...], str]] = [
    ((nn.modules.conv._ConvNd,), "conv"),
    ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm), "norm"),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
      nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish,
      nn.Softmax, nn.LogSoftmax, nn.Softsign, nn.Tanhshrink, nn.Threshold), "activation"),
    ((nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
      nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
      nn.modules.pooling._LPPoolNd), "pool"),
    ((nn.Linear, nn.Bilinear), "dense"),
    ((nn.Flatten, nn.Unflatten), "flatten"),
    ((nn.modules.dropout._DropoutNd,), "dropout"),
]

_ACT_NAMES = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softplus: "softplus", nn.Hardswish: "hard_swish",
    nn.Hardsigmoid: "hard_sigmoid", nn.Hardtanh: "hard_tanh", nn.Mish: "mish",
    nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax", nn.Softsign: "softsign",
    nn.Tanhshrink: "tanhshrink", nn.Threshold: "threshold",
}


def _kind(m: nn.Module) -> str:
    for classes, kind in _KINDS:
        if isinstance(m, classes):
            return kind
    return "other"


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def describe_module(m: nn.Module) -> tuple[str, dict[str, Any]]:
    """The stage kind and the op parameters of one module."""
    kind = _kind(m)
    p: dict[str, Any] = {}
    if kind == "conv":
        pad = getattr(m, "convlens_padding", None) or _tuple(m.padding)
        p = dict(kernel_size=_tuple(m.kernel_size), stride=_tuple(m.stride), padding=pad,
                 dilation=_tuple(m.dilation), groups=m.groups, in_channels=m.in_channels,
                 out_channels=m.out_channels, bias=m.bias is not None)
        if m.transposed:
            p["transposed"] = True
            p["output_padding"] = _tuple(m.output_padding)
    elif kind == "pool":
        name = type(m).__name__
        p["mode"] = "max" if "Max" in name else ("avg" if "Avg" in name else "lp")
        if "Adaptive" in name:
            p["adaptive"] = True
            p["output_size"] = _tuple(m.output_size)
        else:
            p["kernel_size"] = _tuple(m.kernel_size)
            p["stride"] = _tuple(m.stride)
            if hasattr(m, "padding"):
                p["padding"] = getattr(m, "convlens_padding", None) or _tuple(m.padding)
            if getattr(m, "ceil_mode", False):
                p["ceil_mode"] = True
            if p["mode"] == "max" and hasattr(m, "dilation"):
                p["dilation"] = _tuple(m.dilation)
            if p["mode"] == "avg" and hasattr(m, "count_include_pad"):
                p["count_include_pad"] = bool(m.count_include_pad)
    elif kind == "activation":
        p["function"] = _ACT_NAMES.get(type(m), type(m).__name__.lower())
        if isinstance(m, nn.LeakyReLU):
            p["alpha"] = float(m.negative_slope)
        elif isinstance(m, (nn.ELU, nn.CELU)):
            p["alpha"] = float(m.alpha)
        elif isinstance(m, nn.GELU):
            p["approximate"] = m.approximate
        elif isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            p["dim"] = m.dim
        elif isinstance(m, nn.Softplus):
            p["beta"], p["threshold"] = float(m.beta), float(m.threshold)
        if getattr(m, "inplace", False):
            p["inplace"] = True
    elif kind == "norm":
        for attr in ("eps", "momentum", "num_groups", "size", "alpha", "beta", "k"):
            v = getattr(m, attr, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                p[attr] = v
    elif kind == "dense" and isinstance(m, nn.Linear):
        p = dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    elif kind == "flatten" and isinstance(m, nn.Flatten):
        p = dict(start_dim=m.start_dim, end_dim=m.end_dim)
    elif kind == "dropout":
        p = dict(p=float(m.p))
    return kind, p


def _weights(m: nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for k, v in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
        if v is not None and v.is_floating_point():
            out[k] = v.detach().to("cpu", torch.float32).numpy().copy()
    return out


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    if not leaves:  # the model is itself one layer
        leaves = [(type(model).__name__.lower(), model)]
    return leaves


def expected_channels(model: nn.Module) -> int | None:
    """Input channels of the first conv layer (or None when there is none)."""
    for _, m in _leaves(model):
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _run(model: nn.Module, x: torch.Tensor, keep, copy_all: bool) -> tuple[Recorder, Any, bool]:
    rec = Recorder(keep)
    leaves = _leaves(model)
    info = {id(m): (name, *describe_module(m)) for name, m in leaves}
    versions: list[tuple[Pending, int]] = []
    stored: dict[int, Pending] = {}  # id(tensor) -> pending stage that holds it by reference

    def pre_hook(m: nn.Module, args: tuple) -> None:
        # an in-place module is about to overwrite its input: copy it if we hold it
        if getattr(m, "inplace", False) and args:
            t = _first_tensor(args)
            p = stored.pop(id(t), None) if t is not None else None
            if p is not None and p.tensor is t:
                p.tensor = t.detach().clone()

    def hook(m: nn.Module, args: tuple, output: Any) -> None:
        name, kind, params = info[id(m)]
        out = _first_tensor(output)
        if out is None:
            return
        name = rec.unique_name(name)
        p = rec.record(name, kind, type(m).__name__, params, lambda: _weights(m),
                       _first_tensor(args), out)
        if p is None:
            return
        if copy_all:
            p.tensor = out.detach().clone()
        else:
            stored[id(out)] = p
            versions.append((p, out._version))

    handles = []
    try:
        for _, m in leaves:
            handles.append(m.register_forward_pre_hook(pre_hook))
            handles.append(m.register_forward_hook(hook))
        rec.mark_input(x)
        output = model(x)
    finally:
        for h in handles:
            h.remove()
    mutated = any(p.tensor._version != v for p, v in versions if stored.get(id(p.tensor)) is p)
    return rec, output, mutated


def capture_torch(model: nn.Module, x: np.ndarray, keep) -> tuple[list, np.ndarray, str]:
    """Run ``model`` on the channels-first batch ``x`` and record every leaf call.

    Returns the Stage list, the model's own output and the model's name.
    """
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype if param.is_floating_point() else torch.float32
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            try:
                rec, output, mutated = _run(model, xt, keep, copy_all=False)
                if mutated:  # an in-place op inside some forward(): repeat, copying
                    rec, output, mutated = _run(model, xt, keep, copy_all=True)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CaptureError(
                    f"{type(model).__name__} failed on an input of shape {tuple(x.shape)} "
                    f"(B, C, H, W): {msg}; check the image size and channels the model expects"
                ) from None
    finally:
        for m, training in modes.items():
            m.training = training
    out = _first_tensor(output)
    if out is None:
        raise ModelError(f"{type(model).__name__} returned {type(output).__name__}; expected a tensor")

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).numpy()

    return rec.stages(lambda t, _p: to_numpy(t)), to_numpy(out), type(model).__name__
