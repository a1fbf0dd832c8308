"""Build a :class:`~convlens.nets.spec.NetSpec` as a Keras 3 ``Sequential`` model.

Same layer names and the same weights as :func:`convlens.nets.torch.build_torch`
(kernels converted from PyTorch layout), so both give the same stages.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convlens.errors import SpecError
from convlens.nets.keras_backend import import_keras
from convlens.nets.spec import Act, Conv, Dense, Flatten, NetSpec, Pool

__all__ = ["build_keras"]

_KERAS_ACTS = {"identity": "linear", "hard_sigmoid": "hard_sigmoid"}


def _keras_padding(layer: Conv | Pool) -> str:
    if isinstance(layer.padding, str):
        return layer.padding
    if layer.padding == (0, 0):
        return "valid"
    raise SpecError(
        f"{layer.name}: padding={layer.padding[0]} has no Keras equivalent; use padding=same "
        "or padding=valid, or build with --backend torch"
    )


def _layer(keras: Any, layer: Any) -> Any:
    L = keras.layers
    if isinstance(layer, Conv):
        return L.Conv2D(layer.filters, layer.kernel, strides=layer.stride,
                        padding=_keras_padding(layer), dilation_rate=layer.dilation,
                        groups=layer.groups, use_bias=layer.bias, name=layer.name)
    if isinstance(layer, Pool):
        cls = L.MaxPooling2D if layer.mode == "max" else L.AveragePooling2D
        return cls(layer.size, strides=layer.stride, padding=_keras_padding(layer), name=layer.name)
    if isinstance(layer, Act):
        if layer.function == "leaky_relu":
            return L.LeakyReLU(negative_slope=layer.alpha, name=layer.name)
        if layer.function == "elu":
            return L.ELU(alpha=1.0 if layer.alpha is None else layer.alpha, name=layer.name)
        if layer.function == "softmax":
            return L.Softmax(axis=-1, name=layer.name)
        return L.Activation(_KERAS_ACTS.get(layer.function, layer.function), name=layer.name)
    if isinstance(layer, Flatten):
        return L.Flatten(name=layer.name)
    if isinstance(layer, Dense):
        return L.Dense(layer.units, use_bias=layer.bias, name=layer.name)
    raise SpecError(f"layer {layer!r} has no Keras builder")


def build_keras(spec: NetSpec, in_shape: tuple[int, int, int], seed: int = 0,
                fixed_size: bool = False) -> Any:
    """The network as ``keras.Sequential`` (channels-last input), Glorot weights from ``seed``.

    The input's height and width are left free (any image size) unless the spec
    has dense layers or ``fixed_size`` is set.
    """
    keras = import_keras()
    c, h, w = in_shape
    fixed = fixed_size or any(isinstance(l, Dense) for l in spec.layers)
    weights = spec.init_weights(in_shape, seed)
    shapes = dict(spec.shapes(in_shape))
    model = keras.Sequential(name="convlens_net")
    model.add(keras.Input((h, w, c) if fixed else (None, None, c)))
    prev: tuple[int, ...] = tuple(in_shape)
    flattened: tuple[int, ...] | None = None  # the (C, H, W) a flatten turned into a vector
    for layer in spec.layers:
        kl = _layer(keras, layer)
        model.add(kl)
        if isinstance(layer, Flatten):
            flattened = prev
        if layer.name in weights:
            wt = weights[layer.name]["weight"]
            if isinstance(layer, Conv):
                kernel = wt.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
            elif flattened is not None and len(flattened) == 3:
                # torch flattens (C, H, W), keras (H, W, C): reorder the input rows
                kernel = wt.reshape(-1, *flattened).transpose(0, 2, 3, 1).reshape(wt.shape[0], -1).T
            else:
                kernel = wt.T
            if isinstance(layer, Dense):
                flattened = None
            values = [np.ascontiguousarray(kernel)]
            if "bias" in weights[layer.name]:
                values.append(weights[layer.name]["bias"])
            kl.set_weights(values)
        prev = shapes[layer.name]
    return model
