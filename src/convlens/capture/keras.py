"""Capture every leaf layer of a Keras 3 model (Sequential, functional, nested, subclassed).

Each leaf layer's ``call`` is wrapped for the duration of one forward pass
(an instance attribute, removed in ``finally``), so the adapter sees the
layers in execution order whatever the model type.  A layer with a fused
activation (``Conv2D(..., activation="relu")``) is recorded as two stages:
the pre-activation, then the activation.  Written against ``keras.ops``
only, so it works on any Keras backend (convlens picks torch by default).
"""
from __future__ import annotations

import contextlib

from typing import Any, Callable

import numpy as np

from convlens.errors import CaptureError
from convlens.nets.keras_backend import import_keras
from convlens.trace import Deferred, Stage, _freeze
from convlens.capture.options import finish_stages, model_failed
from convlens.capture.keras_pass import KerasPass, first_tensor

__all__ = ["capture_keras", "run_pass", "expected_input", "describe_layer"]

keras = import_keras()
L = keras.layers
_TORCH = keras.backend.backend() == "torch"

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
_ACT_ALIASES = {"swish": "silu", "linear": "identity", "hard_silu": "hardswish",
                "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid",
                "log_sigmoid": "logsigmoid", "hard_tanh": "hardtanh"}


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


_MERGE_OPS = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Average": "mean",
              "Maximum": "max", "Minimum": "min", "Concatenate": "cat"}
_NORM_FNS = {"BatchNormalization": "batch_norm", "LayerNormalization": "layer_norm",
             "GroupNormalization": "group_norm", "UnitNormalization": "unit_norm"}


def describe_layer(layer: Any) -> tuple[str, dict[str, Any]]:
    """``(kind, params)`` of a layer, params in the schema of its kind
    (``convlens.params``); what depends on the input (``in_channels``, ``in_features``,
    a concatenation's ``dim``) is added at the call."""
    kind = _kind(layer)
    p: dict[str, Any] = {}
    if kind == "conv":
        p = dict(kernel_size=_t(layer.kernel_size), stride=_t(layer.strides),
                 padding=layer.padding, dilation=_t(layer.dilation_rate),
                 groups=getattr(layer, "groups", 1), bias=bool(layer.use_bias))
        if isinstance(layer, (L.DepthwiseConv2D, L.DepthwiseConv1D)):
            p["depth_multiplier"] = layer.depth_multiplier
        elif hasattr(layer, "filters"):
            p["out_channels"] = layer.filters
        if "Transpose" in type(layer).__name__:
            p["transposed"] = True
    elif kind == "pool":
        name = type(layer).__name__
        p["mode"] = "max" if "Max" in name else "avg"
        if "Global" in name:
            p["global"] = True
            p["keepdim"] = bool(getattr(layer, "keepdims", False))
            p["dims"] = tuple(range(2, 2 + int(name[-2]))) if name[-2].isdigit() else (2,)
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
                p["max"] = float(layer.max_value)
                if float(layer.max_value) == 6.0 and not layer.negative_slope \
                        and not layer.threshold:
                    p["function"] = "relu6"
        elif isinstance(layer, L.LeakyReLU):
            p.update(function="leaky_relu", alpha=float(layer.negative_slope))
        elif isinstance(layer, L.ELU):
            p.update(function="elu", alpha=float(layer.alpha))
        elif isinstance(layer, L.PReLU):
            p["function"] = "prelu"
        elif isinstance(layer, L.Softmax):
            p.update(function="softmax")
    elif kind == "norm":
        p["function"] = _NORM_FNS.get(type(layer).__name__, type(layer).__name__.lower())
        if hasattr(layer, "epsilon"):
            p["eps"] = float(layer.epsilon)
        if hasattr(layer, "momentum"):
            p["momentum"] = float(layer.momentum)
        if isinstance(getattr(layer, "groups", None), int):
            p["num_groups"] = int(layer.groups)
    elif kind == "dense":
        p = dict(out_features=layer.units, bias=bool(layer.use_bias))
    elif kind == "dropout" and hasattr(layer, "rate"):
        p["p"] = float(layer.rate)
    elif kind == "merge":
        p["operation"] = _MERGE_OPS.get(type(layer).__name__, type(layer).__name__.lower())
    elif kind == "reshape":
        p["operation"] = "permute" if isinstance(layer, L.Permute) else "reshape"
        if isinstance(getattr(layer, "target_shape", None), (tuple, list)):
            p["target_shape"] = tuple(int(v) for v in layer.target_shape)
    elif kind == "flatten":
        p = {"start_dim": 1, "end_dim": -1}
    return kind, p


def _channels_last(layer: Any) -> bool:
    fmt = getattr(layer, "data_format", None) or keras.config.image_data_format()
    return fmt == "channels_last"


_RENAME = {"kernel": "weight", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
           "moving_variance": "running_var", "alpha": "weight"}


def _copy(v: Any) -> np.ndarray:
    """A float32 NumPy copy of a variable's value (one memcpy on the torch backend)."""
    value = v.value
    if _TORCH and type(value).__module__.startswith("torch"):
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        return value.numpy().astype(np.float32)  # always a copy
    return np.array(keras.ops.convert_to_numpy(value), dtype=np.float32)


def _weights(layer: Any) -> dict[str, np.ndarray]:
    """The layer's weights, copied as they are now, in PyTorch's layout.  The layout is a
    view of the copy (a transpose costs a second pass over memory; NumPy reads any
    strides)."""
    out = {}
    for v in layer.weights:
        key = v.name.split("/")[-1]
        arr = _copy(v)
        if key in ("kernel", "depthwise_kernel", "pointwise_kernel") and arr.ndim >= 3:
            if isinstance(layer, L.DepthwiseConv2D) and key == "kernel":
                kh, kw, cin, mult = arr.shape  # -> (cin * mult, 1, kh, kw)
                arr = arr.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None]
            else:  # (spatial..., in, out) -> (out, in, spatial...)
                n = arr.ndim
                arr = arr.transpose((n - 1, n - 2) + tuple(range(n - 2)))
        elif key == "kernel" and arr.ndim == 2:
            arr = arr.T
        arr.flags.writeable = False
        out[_RENAME.get(key, key)] = arr
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


_first_tensor = first_tensor  # (the attribution backend imports it by this name)


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


def _call(model: Any, xt: Any, channels_last: bool) -> Any:
    try:
        return model(xt, training=False)
    except CaptureError:
        raise
    except Exception as exc:  # Keras raises many exception types for bad shapes
        raise model_failed(model.name, tuple(xt.shape), exc,
                           f" ({'B, H, W, C' if channels_last else 'B, C, H, W'})") from None


def _to_numpy(t: Any) -> np.ndarray:
    """A tensor's values as a NumPy array (a view of a CPU float32 torch tensor)."""
    if _TORCH and type(t).__module__.startswith("torch"):
        t = t.detach()
        if t.device.type != "cpu" or t.dtype != _torch().float32:
            t = t.to("cpu", _torch().float32)
        return t.numpy()
    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float32)


def _torch() -> Any:
    import torch
    return torch


def _layout(t: Any, r: Any) -> tuple[tuple[int, ...], Callable[[], np.ndarray]]:
    """The channels-first shape of a recorded tensor and how to read it."""
    shape = tuple(int(s) for s in t.shape)
    move = r.move and len(shape) in (3, 4, 5)
    hwc = r.hwc
    if hwc is not None:
        cf = (shape[0], int(np.prod(shape[1:])))
    elif move:
        cf = (shape[0], shape[-1], *shape[1:-1])
    else:
        cf = shape

    def read() -> np.ndarray:
        arr = _to_numpy(t)
        if hwc is not None:  # a flattened (H, W, C) map: reorder as (C, H, W), convlens' layout
            arr = arr.reshape(-1, *hwc).transpose(0, 3, 1, 2).reshape(arr.shape[0], -1)
        elif move:
            # channels-last -> channels-first as a view: no copy of the data.  (A copy
            # of every map costs a third of MobileNetV2's forward pass on this machine;
            # NumPy reads any strides, and np.ascontiguousarray makes one on demand.)
            arr = np.moveaxis(arr, -1, 1)
        arr.flags.writeable = False  # may share the pass's memory (and other stages')
        return arr

    return cf, read


def _reorder_flat(rec: Any, recs: list) -> None:
    """A dense layer fed by a flattened (H, W, C) map: order its input columns as
    (C, H, W), to match the flatten stage as convlens stores it."""
    src = recs[rec.sources[0]] if rec.sources and rec.sources[0] >= 0 else None
    hwc = src.hwc if src is not None else None
    w = rec.weights.get("weight") if rec.weights else None
    if hwc is not None and w is not None and w.ndim == 2:
        rec.weights = {**rec.weights, "weight": np.ascontiguousarray(
            w.reshape(w.shape[0], *hwc).transpose(0, 3, 1, 2).reshape(w.shape[0], -1))}
        rec.params["input_order"] = "reordered from (H, W, C) to (C, H, W)"


def run_pass(model: Any, xt: Any, keep: Callable[[str, str], bool] | None = None, *,
             grad: bool = False) -> tuple[KerasPass, Any]:
    """One recorded forward pass of a built ``model`` on ``xt`` (in the model's own data
    format): ``(the pass, the model's output)``.  ``pass.recs`` are the stages in
    execution order, each with its framework tensor, name, kind, params and sources —
    the one walker behind :func:`capture_keras` and usable by attribution (``grad=True``
    keeps autograd on, torch backend), so stage names agree by construction."""
    rec = KerasPass(keras, model, keep, describe_layer, _channels_last, fused_activation,
                    call_split)
    channels_last = _channels_last(model)
    with contextlib.ExitStack() as stack:
        try:
            rec.install(model, top=True)
            if _TORCH:
                if not grad:
                    stack.enter_context(_torch().no_grad())
                if rec.needs_mode:
                    stack.enter_context(rec.torch_mode())
            rec.mark_input(xt)
            output = _call(model, xt, channels_last)
        finally:
            rec.uninstall()
    return rec, output


def capture_keras(model: Any, x_nchw: np.ndarray, keep,
                  options: Any = None) -> tuple[list, np.ndarray, str, list]:
    """Run ``model`` on ``x_nchw`` (converted to its data format) and record every layer
    call and every op (see :mod:`convlens.capture.keras_pass`).  Returns the stages, the
    model's output (channels-first), its name and the notices (what was computed but could
    not be recorded: never dropped silently)."""
    channels_last = _channels_last(model)
    x = np.transpose(x_nchw, (0, 2, 3, 1)) if channels_last else x_nchw
    xt = keras.ops.convert_to_tensor(np.ascontiguousarray(x))
    if not model.built:
        # a subclassed model builds on its first call, partly symbolically:
        # build it before the recorded pass so only real values are recorded
        _call(model, xt, channels_last)
    rec, output = run_pass(model, xt, keep)
    # what the stages are made from is taken now, as the model is at the call
    weights: dict[int, dict[str, np.ndarray]] = {}
    for r in rec.recs:
        if r.layer is not None:
            w = weights.get(id(r.layer))
            if w is None:
                w = weights[id(r.layer)] = _weights(r.layer)
            r.weights = w
    stages = []
    for i, r in enumerate(rec.recs):
        if r.kind == "dense" and r.weights:
            _reorder_flat(r, rec.recs)
        shape, read = _layout(r.tensor, r)
        stages.append(Stage._trusted(
            i, r.name, r.kind, r.op, Deferred(read, shape), _freeze(r.params),
            r.weights or {}, r.sources[0] if r.sources else None, r.sources))
    out = first_tensor(output)
    last = rec.recs[-1] if rec.recs else None
    if stages and last is not None and last.tensor is out:
        final = stages[-1].output
    else:
        arr = _to_numpy(out)
        if arr.ndim in (3, 4, 5) and channels_last:
            arr = np.moveaxis(arr, -1, 1)
        final = np.ascontiguousarray(arr)
    notices = []
    if rec.unrecorded:
        backend = keras.backend.backend()
        why = ("" if backend == "torch" else
               f" (ops in call() are recorded on the torch backend only; this is {backend})")
        notices.append("computed but not recorded as stages: " + "; ".join(rec.unrecorded)
                       + why + " — a custom layer's output is a stage of its own, kind other")
    if options is not None:
        stages = finish_stages(stages, options, options.sink())
    return stages, final, model.name, notices
