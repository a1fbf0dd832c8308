"""Capture every leaf layer of a Keras 3 model (Sequential, functional, nested, subclassed).

Each leaf layer's ``call`` is wrapped for the duration of one forward pass
(an instance attribute, removed in ``finally``), so the adapter sees the
layers in execution order whatever the model type.  A layer with a fused
activation (``Conv2D(..., activation="relu")``) is recorded as two stages:
the pre-activation, then the activation.  Written against ``keras.ops``
only, so it works on any Keras backend (convlens picks torch by default).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CaptureError
from ..nets.keras_backend import import_keras
from .recorder import Recorder

__all__ = ["capture_keras", "expected_input", "describe_layer"]

keras = import_keras()
L = keras.layers

_KINDS: list[tuple[tuple[type, ...], str]] = [
    ((L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose,
      L.Conv1DTranspose, L.Conv3DTranspose, L.DepthwiseConv1D, L.SeparableConv1D), "conv"),
    ((L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
      L.UnitNormalization), "norm"),
    ((L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax), "activation"),
    ((L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
      L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
      L.GlobalMaxPooling1D, L.GlobalMaxPooling2D), "pool"),
    ((L.Dense,), "dense"),
    ((L.Flatten,), "flatten"),
    ((L.Reshape, L.Permute), "reshape"),
    ((L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise), "dropout"),
    ((L.Add, L.Concatenate, L.Multiply, L.Subtract, L.Average, L.Maximum, L.Minimum), "merge"),
]
_ACT_ALIASES = {"swish": "silu", "linear": "identity"}


def _kind(layer: Any) -> str:
    for classes, kind in _KINDS:
        if isinstance(layer, classes):
            return kind
    return "other"


def _act_name(fn: Any) -> str:
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # a user's own function
        name = getattr(fn, "__name__", type(fn).__name__)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", "custom"))
    name = str(name)
    return _ACT_ALIASES.get(name, name)


def _t(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def describe_layer(layer: Any) -> tuple[str, dict[str, Any]]:
    kind = _kind(layer)
    p: dict[str, Any] = {}
    if kind == "conv":
        p = dict(kernel_size=_t(layer.kernel_size), stride=_t(layer.strides),
                 padding=layer.padding, dilation=_t(layer.dilation_rate),
                 groups=getattr(layer, "groups", 1), bias=bool(layer.use_bias))
        if isinstance(layer, L.DepthwiseConv2D):
            p["depth_multiplier"] = layer.depth_multiplier
        elif hasattr(layer, "filters"):
            p["out_channels"] = layer.filters
    elif kind == "pool":
        name = type(layer).__name__
        p["mode"] = "max" if "Max" in name else "avg"
        if "Global" in name:
            p["global"] = True
        else:
            p.update(kernel_size=_t(layer.pool_size), stride=_t(layer.strides),
                     padding=layer.padding)
    elif kind == "activation":
        if isinstance(layer, L.Activation):
            p["function"] = _act_name(layer.activation)
        elif isinstance(layer, L.ReLU):
            p["function"] = "relu"
            if layer.negative_slope:
                p["function"], p["alpha"] = "leaky_relu", float(layer.negative_slope)
            if layer.max_value is not None:
                p["max_value"] = float(layer.max_value)
        elif isinstance(layer, L.LeakyReLU):
            p.update(function="leaky_relu", alpha=float(layer.negative_slope))
        elif isinstance(layer, L.ELU):
            p.update(function="elu", alpha=float(layer.alpha))
        elif isinstance(layer, L.PReLU):
            p["function"] = "prelu"
        elif isinstance(layer, L.Softmax):
            p.update(function="softmax")
    elif kind == "norm" and hasattr(layer, "epsilon"):
        p["eps"] = float(layer.epsilon)
        if hasattr(layer, "momentum"):
            p["momentum"] = float(layer.momentum)
    elif kind == "dense":
        p = dict(out_features=layer.units, bias=bool(layer.use_bias))
    elif kind == "dropout" and hasattr(layer, "rate"):
        p["p"] = float(layer.rate)
    return kind, p


def _channels_last(layer: Any) -> bool:
    fmt = getattr(layer, "data_format", None) or keras.config.image_data_format()
    return fmt == "channels_last"


_RENAME = {"kernel": "weight", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
           "moving_variance": "running_var", "alpha": "weight"}


def _weights(layer: Any) -> dict[str, np.ndarray]:
    out = {}
    for v in layer.weights:
        key = v.name.split("/")[-1]
        arr = np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float32)
        if key in ("kernel", "depthwise_kernel", "pointwise_kernel") and arr.ndim >= 3:
            if isinstance(layer, L.DepthwiseConv2D) and key == "kernel":
                kh, kw, cin, mult = arr.shape  # -> (cin * mult, 1, kh, kw)
                arr = arr.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None]
            else:  # (spatial..., in, out) -> (out, in, spatial...)
                n = arr.ndim
                arr = arr.transpose((n - 1, n - 2) + tuple(range(n - 2)))
        elif key == "kernel" and arr.ndim == 2:
            arr = arr.T
        out[_RENAME.get(key, key)] = np.ascontiguousarray(arr)
    return out


def _sublayers(layer: Any) -> list:
    return [s for s in layer._flatten_layers(include_self=False, recursive=False)]


def _leaves(model: Any) -> list:
    out, seen = [], set()

    def walk(layer: Any) -> None:
        subs = _sublayers(layer)
        if not subs:
            if id(layer) not in seen and not isinstance(layer, L.InputLayer):
                seen.add(id(layer))
                out.append(layer)
            return
        for s in subs:
            walk(s)

    walk(model)
    return out


def expected_input(model: Any) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (H, W))`` a built functional/Sequential model expects; None when free."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None, None
    if len(shape) != 4:
        return None, None
    h, w, c = shape[1:] if _channels_last(model) else (shape[2], shape[3], shape[1])
    size = (int(h), int(w)) if h is not None and w is not None else None
    return (int(c) if c is not None else None), size


def _first_tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return _first_tensor(value[0]) if value else None
    if isinstance(value, dict):
        return _first_tensor(next(iter(value.values()))) if value else None
    return value if hasattr(value, "shape") else None


def _reorder_after_flatten(rec: Recorder, p: Any) -> None:
    """A dense layer fed by a flattened (H, W, C) map: order its input columns as
    (C, H, W), to match the flatten stage as convlens stores it."""
    src = rec.pending[p.source] if p.source is not None and p.source >= 0 else None
    hwc = src.extra.get("hwc") if src is not None else None
    w = p.weights.get("weight")
    if hwc is not None and w is not None and w.ndim == 2:
        p.weights["weight"] = np.ascontiguousarray(
            w.reshape(w.shape[0], *hwc).transpose(0, 3, 1, 2).reshape(w.shape[0], -1))
        p.params["input_order"] = "reordered from (H, W, C) to (C, H, W)"


def _all_tensors(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _all_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _all_tensors(v)]
    return [value] if hasattr(value, "shape") else []


def fused_activation(layer: Any, kind: str, linear: Any) -> Any:
    """The activation a conv/dense layer applies inside its own call, or None."""
    act = getattr(layer, "activation", None)
    return act if kind in ("conv", "dense") and callable(act) and act is not linear else None


def call_split(layer: Any, original: Any, args: tuple, kwargs: dict,
               linear: Any) -> tuple[Any, Any, str]:
    """Call a layer with a fused activation as two steps: ``(pre-activation, output,
    activation name)``; the layer's activation is restored whatever happens."""
    act = layer.activation
    layer.activation = linear
    try:
        pre = original(*args, **kwargs)
    finally:
        layer.activation = act
    return pre, act(pre), _act_name(act)


def _wrap(layer: Any, rec: Recorder, original: Any, linear: Any) -> Any:
    kind, params = describe_layer(layer)
    op = type(layer).__name__

    def call(*args: Any, **kwargs: Any) -> Any:
        inp = _first_tensor(args)
        if fused_activation(layer, kind, linear) is None:
            out = original(*args, **kwargs)
            p = rec.record(rec.unique_name(layer.name), kind, op, params,
                           lambda: _weights(layer), inp, _first_tensor(out))
            if p is not None and kind == "flatten" and len(inp.shape) == 4 and _channels_last(layer):
                p.extra["hwc"] = tuple(int(s) for s in inp.shape[1:])
            if p is not None and kind == "dense":
                _reorder_after_flatten(rec, p)
            if p is not None and kind == "merge":
                sources = tuple(rec.source_of(t) for t in _all_tensors(args))
                if None not in sources:
                    p.params["sources"] = sources
            return out
        pre, out, fn = call_split(layer, original, args, kwargs, linear)
        p = rec.record(rec.unique_name(layer.name), kind, op, {**params, "activation": fn},
                       lambda: _weights(layer), inp, pre)
        if p is not None and kind == "dense":
            _reorder_after_flatten(rec, p)
        rec.record(rec.unique_name(f"{layer.name}.{fn}"), "activation", f"{op}.activation",
                   {"function": fn, "fused": True}, dict, pre, out)
        return out

    return call


def _call(model: Any, xt: Any, channels_last: bool) -> Any:
    try:
        return model(xt, training=False)
    except CaptureError:
        raise
    except Exception as exc:  # Keras raises many exception types for bad shapes
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptureError(
            f"{model.name} failed on an input of shape {tuple(xt.shape)} "
            f"({'B, H, W, C' if channels_last else 'B, C, H, W'}): {msg}; "
            "check the image size and channels the model expects"
        ) from None


def capture_keras(model: Any, x_nchw: np.ndarray, keep) -> tuple[list, np.ndarray, str]:
    """Run ``model`` on ``x_nchw`` (converted to its data format) and record every leaf call."""
    rec = Recorder(keep)
    leaves = _leaves(model)
    linear = keras.activations.linear
    channels_last = _channels_last(model)
    x = np.transpose(x_nchw, (0, 2, 3, 1)) if channels_last else x_nchw
    xt = keras.ops.convert_to_tensor(np.ascontiguousarray(x))
    if not model.built:
        # a subclassed model builds on its first call, partly symbolically:
        # build it before the recorded pass so only real values are recorded
        _call(model, xt, channels_last)
    wrapped = []
    try:
        for layer in leaves:
            if "call" in layer.__dict__:
                raise CaptureError(f"layer {layer.name!r} already has a patched call(); "
                                   "is another capture running on this model?")
            object.__setattr__(layer, "call", _wrap(layer, rec, layer.call, linear))
            wrapped.append(layer)
        rec.mark_input(xt)
        output = _call(model, xt, channels_last)
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    def to_numpy(t: Any, kind: str = "output", hwc: tuple | None = None) -> np.ndarray:
        arr = np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float32)
        if arr.ndim in (3, 4, 5) and channels_last and kind != "reshape":
            arr = np.moveaxis(arr, -1, 1)  # channels-last -> channels-first
        if hwc is not None:  # a flattened (H, W, C) map: reorder as (C, H, W), convlens' layout
            arr = arr.reshape(-1, *hwc).transpose(0, 3, 1, 2).reshape(arr.shape[0], -1)
        return np.ascontiguousarray(arr)

    out = _first_tensor(output)
    stages = rec.stages(lambda t, p: to_numpy(t, p.kind, p.extra.get("hwc")))
    return stages, to_numpy(out), model.name
