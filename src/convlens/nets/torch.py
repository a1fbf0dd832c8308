"""Build a :class:`~convlens.nets.spec.NetSpec` as a PyTorch ``nn.Sequential``."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from convlens.errors import SpecError
from convlens.nets.spec import Act, Conv, Dense, Flatten, NetSpec, Pool
from convlens.nets.torch_layers import AvgPool2dSame, Conv2dSame, MaxPool2dSame

__all__ = ["build_torch"]

_ACTS = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "selu": nn.SELU, "gelu": nn.GELU,
    "silu": nn.SiLU, "softplus": nn.Softplus, "relu6": nn.ReLU6, "identity": nn.Identity,
}


def _module(layer, c: int) -> nn.Module:
    if isinstance(layer, Conv):
        same = layer.padding == "same"
        cls = Conv2dSame if same else nn.Conv2d
        pad = 0 if layer.padding in ("valid", "same") else layer.padding
        return cls(c, layer.filters, layer.kernel, stride=layer.stride, padding=pad,
                   dilation=layer.dilation, groups=layer.groups, bias=layer.bias)
    if isinstance(layer, Pool):
        if layer.padding == "same":
            cls = MaxPool2dSame if layer.mode == "max" else AvgPool2dSame
            return cls(layer.size, layer.stride)
        pad = 0 if layer.padding == "valid" else layer.padding
        if pad and (pad[0] > layer.size[0] // 2 or pad[1] > layer.size[1] // 2):
            raise SpecError(
                f"{layer.name}: padding {pad} is more than half the pool size {layer.size}; "
                "PyTorch refuses that — use a smaller padding or padding=same"
            )
        if layer.mode == "max":
            return nn.MaxPool2d(layer.size, layer.stride, padding=pad)
        return nn.AvgPool2d(layer.size, layer.stride, padding=pad)
    if isinstance(layer, Act):
        if layer.function == "leaky_relu":
            return nn.LeakyReLU(layer.alpha)
        if layer.function == "elu":
            return nn.ELU(1.0 if layer.alpha is None else layer.alpha)
        if layer.function == "softmax":
            return nn.Softmax(dim=1)
        return _ACTS[layer.function]()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dense):
        return nn.Linear(c, layer.units, bias=layer.bias)
    raise SpecError(f"layer {layer!r} has no PyTorch builder")


def build_torch(spec: NetSpec, in_shape: tuple[int, int, int], seed: int = 0) -> nn.Sequential:
    """The network as ``nn.Sequential`` with children named like the spec's layers
    (``conv1``, ``relu1``, ``maxpool1``...), Glorot weights from ``seed``, in eval mode."""
    weights = spec.init_weights(in_shape, seed)
    shapes = spec.shapes(in_shape)
    model = nn.Sequential()
    c_in: tuple[int, ...] = tuple(in_shape)
    for layer, (_, out_shape) in zip(spec.layers, shapes):
        module = _module(layer, c_in[0])
        if layer.name in weights:
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[layer.name]["weight"])))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(weights[layer.name]["bias"]))
        model.add_module(layer.name, module)
        c_in = out_shape
    return model.eval()
