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

from ..errors import CaptureError, ConvlensError, ModelError
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


def _cls(m: nn.Module) -> type:
    """The module's class; for a loaded TorchScript module, the ``torch.nn`` class it was."""
    if isinstance(m, torch.jit.ScriptModule):
        return getattr(nn, getattr(m, "original_name", ""), type(m))
    return type(m)


def _kind(m: nn.Module) -> str:
    declared = getattr(m, "convlens_kind", None)  # a module may say what it is (e.g. "merge")
    if declared is not None:
        return declared
    cls = _cls(m)
    for classes, kind in _KINDS:
        if issubclass(cls, classes):
            return kind
    return "other"


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def describe_module(m: nn.Module) -> tuple[str, dict[str, Any]]:
    """The stage kind and the op parameters of one module."""
    kind, cls = _kind(m), _cls(m)
    p: dict[str, Any] = {}
    if kind == "conv":
        pad = getattr(m, "convlens_padding", None) or _tuple(m.padding)
        # (TorchScript keeps these attributes, so scripted modules are described too)
        p = dict(kernel_size=_tuple(m.kernel_size), stride=_tuple(m.stride), padding=pad,
                 dilation=_tuple(m.dilation), groups=m.groups, in_channels=m.in_channels,
                 out_channels=m.out_channels, bias=m.bias is not None)
        if m.transposed:
            p["transposed"] = True
            p["output_padding"] = _tuple(m.output_padding)
    elif kind == "pool":
        name = cls.__name__
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
        p["function"] = _ACT_NAMES.get(cls, cls.__name__.lower())
        if issubclass(cls, nn.LeakyReLU):
            p["alpha"] = float(m.negative_slope)
        elif issubclass(cls, (nn.ELU, nn.CELU)):
            p["alpha"] = float(m.alpha)
        elif issubclass(cls, nn.GELU):
            p["approximate"] = m.approximate
        elif issubclass(cls, (nn.Softmax, nn.LogSoftmax)):
            p["dim"] = m.dim
        elif issubclass(cls, nn.Softplus):
            p["beta"], p["threshold"] = float(m.beta), float(m.threshold)
        if getattr(m, "inplace", False):
            p["inplace"] = True
    elif kind == "norm":
        for attr in ("eps", "momentum", "num_groups", "size", "alpha", "beta", "k"):
            v = getattr(m, attr, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                p[attr] = v
    elif kind == "dense" and issubclass(cls, nn.Linear):
        p = dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    elif kind == "flatten" and issubclass(cls, nn.Flatten):
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
        if _kind(m) == "conv":
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


def _run_script(model: torch.jit.ScriptModule, x: torch.Tensor, keep) -> tuple[Recorder, Any]:
    """Step through a loaded TorchScript ``nn.Sequential`` module by module.

    TorchScript runs ``forward`` outside Python, so hooks cannot see inside it;
    a scripted Sequential can still be run one child at a time.
    """
    rec = Recorder(keep)
    rec.mark_input(x)

    def forward(m: Any, x: Any, prefix: str) -> Any:
        kids = list(m.named_children())
        if kids:
            if getattr(m, "original_name", "") != "Sequential":
                raise ModelError(
                    f"TorchScript module {prefix or 'model'!r} is a scripted "
                    f"{getattr(m, 'original_name', type(m).__name__)}, whose forward convlens "
                    "cannot step through; expected a scripted nn.Sequential — or pass the "
                    "Python nn.Module to convlens.capture"
                )
            for n, c in kids:
                x = forward(c, x, f"{prefix}.{n}" if prefix else n)
            return x
        kind, params = describe_module(m)
        out = m(x)
        p = rec.record(rec.unique_name(prefix or m.original_name.lower()), kind,
                       m.original_name, params, lambda: _weights(m), x, out)
        if p is not None:
            p.tensor = out.detach().clone()
        return out

    return rec, forward(model, x, "")


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
                if isinstance(model, torch.jit.ScriptModule):
                    (rec, output), mutated = _run_script(model, xt, keep), False
                else:
                    rec, output, mutated = _run(model, xt, keep, copy_all=False)
                if mutated:  # an in-place op inside some forward(): repeat, copying
                    rec, output, mutated = _run(model, xt, keep, copy_all=True)
            except ConvlensError:
                raise
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
