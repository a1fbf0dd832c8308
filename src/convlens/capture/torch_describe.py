"""What each PyTorch module is (its stage kind) and its op parameters.

Read once per module and remembered with the model's capture plan (``torch_plan``), so
an unchanged model is not described again on every capture.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["describe_module", "stage_kind", "torch_class"]

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


_SCRIPT = torch.jit.ScriptModule
_MISSING = object()
_KIND_OF_TYPE: dict[type, str] = {}


def _cls(m: nn.Module) -> type:
    """The module's class; for a loaded TorchScript module, the ``torch.nn`` class it was."""
    if isinstance(m, _SCRIPT):
        return getattr(nn, getattr(m, "original_name", ""), type(m))
    return type(m)


def _attr(m: nn.Module, name: str) -> Any:
    """``getattr(m, name, None)`` for a plain attribute, without ``nn.Module.__getattr__``'s
    slow miss (it looks in parameters, buffers and submodules and raises)."""
    v = m.__dict__.get(name, _MISSING)
    if v is not _MISSING:
        return v
    v = getattr(type(m), name, _MISSING)
    if v is _MISSING:
        return getattr(m, name, None) if isinstance(m, _SCRIPT) else None
    return getattr(m, name, None) if hasattr(v, "__get__") else v  # a property: its value


def _kind(m: nn.Module) -> str:
    declared = _attr(m, "convlens_kind")  # a module may say what it is (e.g. "merge")
    if declared is not None:
        return declared
    t = type(m)
    kind = _KIND_OF_TYPE.get(t)
    if kind is None:
        cls = _cls(m)
        kind = next((k for classes, k in _KINDS if issubclass(cls, classes)), "other")
        if not isinstance(m, _SCRIPT):  # scripted modules share one type
            _KIND_OF_TYPE[t] = kind
    return kind


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def describe_module(m: nn.Module) -> tuple[str, dict[str, Any]]:
    """The stage kind and the op parameters of one module."""
    kind, cls = _kind(m), _cls(m)
    p: dict[str, Any] = {}
    if kind == "conv":
        pad = _attr(m, "convlens_padding") or _tuple(m.padding)
        # (TorchScript keeps these attributes, so scripted modules are described too)
        bias = m._parameters.get("bias") if not isinstance(m, _SCRIPT) else m.bias
        p = dict(kernel_size=_tuple(m.kernel_size), stride=_tuple(m.stride), padding=pad,
                 dilation=_tuple(m.dilation), groups=m.groups, in_channels=m.in_channels,
                 out_channels=m.out_channels, bias=bias is not None)
        if m.transposed:
            p["transposed"] = True
            p["output_padding"] = _tuple(m.output_padding)
    elif kind == "pool":
        name = cls.__name__
        p["mode"] = "max" if "Max" in name else ("avg" if "Avg" in name else "lp")
        if "Adaptive" in name:
            p["adaptive"] = True
            p["output_size"] = _tuple(m.output_size)
            size = p["output_size"]
            if all(v == 1 for v in (size if isinstance(size, tuple) else (size,))):
                p["global"] = True  # (as Keras' GlobalAveragePooling2D says)
        else:
            p["kernel_size"] = _tuple(m.kernel_size)
            p["stride"] = _tuple(m.stride)
            if hasattr(m, "padding"):
                p["padding"] = _attr(m, "convlens_padding") or _tuple(m.padding)
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
        d = m.__dict__
        stock = cls.__module__.startswith("torch.nn.")  # no class-level values to look up
        for attr in ("eps", "momentum", "num_groups", "size", "alpha", "beta", "k"):
            v = d.get(attr) if stock else _attr(m, attr)
            if type(v) is float or type(v) is int:
                p[attr] = v
    elif kind == "dense" and issubclass(cls, nn.Linear):
        p = dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    elif kind == "flatten" and issubclass(cls, nn.Flatten):
        p = dict(start_dim=m.start_dim, end_dim=m.end_dim)
    elif kind == "dropout":
        p = dict(p=float(m.p))
    declared = _attr(m, "convlens_params")  # a module may say its parameters (a merge's op)
    if isinstance(declared, dict):
        p = {**declared, **p}
    return kind, p


stage_kind = _kind
torch_class = _cls
