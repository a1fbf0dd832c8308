"""Hand-built Traces for the explain tests: a NumPy forward pass of a toy-network spec
through ``convlens.ops``, so these tests depend on no framework and no capture code.
(No tests here; the other test_explain_* modules import it.)"""
from __future__ import annotations

import numpy as np

from convlens import ops
from convlens.nets.spec import Act, Conv, Dense, Flatten, Pool, parse_spec
from convlens.trace import Stage, Trace


def forward(spec, x: np.ndarray, weights: dict) -> list[np.ndarray]:
    """Every layer's output for a (B, C, H, W) float64 batch."""
    outs = []
    for layer in spec.layers:
        if isinstance(layer, Conv):
            w = weights[layer.name]
            x = ops.conv2d(x, w["weight"], w.get("bias"), layer.stride, layer.padding,
                           layer.dilation, layer.groups)
        elif isinstance(layer, Pool):
            x = ops.pool2d(x, layer.size, layer.stride, layer.padding, layer.mode)
        elif isinstance(layer, Act):
            kw = {"alpha": layer.alpha} if layer.alpha is not None else {}
            x = ops.activation(x, layer.function, **kw)
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        elif isinstance(layer, Dense):
            w = weights[layer.name]
            x = ops.dense(x, w["weight"], w.get("bias"))
        outs.append(x)
    return outs


def make_weights(spec, in_shape, seed: int = 0, bias: bool = True) -> dict:
    weights = spec.init_weights(in_shape, seed)
    rng = np.random.default_rng(seed + 1)
    for w in weights.values():
        if bias and "bias" in w:
            w["bias"] = rng.uniform(-0.5, 0.5, size=w["bias"].shape).astype(np.float32)
    return weights


def numpy_trace(text: str, x: np.ndarray, seed: int = 0) -> Trace:
    """A Trace of the spec ``text`` on the (B, C, H, W) batch ``x``, built by hand."""
    x = np.asarray(x, dtype=np.float32)
    spec = parse_spec(text, in_channels=x.shape[1])
    weights = make_weights(spec, x.shape[1:], seed)
    outs = forward(spec, x.astype(np.float64), weights)
    stages = []
    for i, (layer, out) in enumerate(zip(spec.layers, outs)):
        if isinstance(layer, Conv):
            kind, params = "conv", dict(kernel_size=layer.kernel, stride=layer.stride,
                                        padding=layer.padding, dilation=layer.dilation,
                                        groups=layer.groups)
            op = "Conv2d"
        elif isinstance(layer, Pool):
            kind, params = "pool", dict(mode=layer.mode, kernel_size=layer.size,
                                        stride=layer.stride, padding=layer.padding)
            op = "MaxPool2d" if layer.mode == "max" else "AvgPool2d"
        elif isinstance(layer, Act):
            kind, params, op = "activation", {"function": layer.function}, "ReLU"
            if layer.alpha is not None:
                params["alpha"] = layer.alpha
        elif isinstance(layer, Flatten):
            kind, params, op = "flatten", {}, "Flatten"
        else:
            kind, params, op = "dense", {}, "Linear"
        stages.append(Stage(index=i, name=layer.name, kind=kind, op=op, output=out.astype(np.float32),
                            params=params, weights=weights.get(layer.name, {}), source=i - 1))
    if x.shape[1] == 3:
        shown = np.moveaxis(x, 1, -1)
    else:
        shown = np.repeat(np.moveaxis(x[:, :1], 1, -1), 3, axis=-1)
    shown = (shown - shown.min()) / (np.ptp(shown) or 1.0)
    return Trace(stages, input=shown, framework="numpy", model_name=text, model_input=x)
