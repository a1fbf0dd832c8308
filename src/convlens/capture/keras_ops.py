"""Kinds and parameters of the ops a Keras model runs between its layers.

Two vocabularies, one table: ``keras.ops`` calls in a functional model are graph nodes
whose operation is a ``keras.src.ops`` class (``Add``, ``Relu``, ``Mean``...); ops in a
subclassed model's ``call()`` are seen, on the torch backend, as the torch functions
Keras calls (``add``, ``relu``, ``mean``...).  Both are mapped here to a stage kind
*from the op*, never from a name the user chose, and to plain parameters.  Knows no
framework: it reads class names, function names and plain attributes only.
"""
from __future__ import annotations

from typing import Any

__all__ = ["op_kind", "op_params", "cf_dim", "torch_kind", "torch_name", "SPATIAL_REDUCTIONS"]

_MERGE = {"add", "subtract", "multiply", "divide", "truedivide", "dividenonan", "floordivide",
          "concatenate", "stack", "maximum", "minimum", "hstack", "vstack", "dstack",
          "average", "power"}
_ACTIVATION = {"relu", "relu6", "sigmoid", "softplus", "softsign", "silu", "swish",
               "logsigmoid", "leakyrelu", "hardsigmoid", "hardsilu", "hardswish", "elu",
               "selu", "gelu", "celu", "glu", "tanhshrink", "hardtanh", "hardshrink",
               "softshrink", "threshold", "softmax", "logsoftmax", "sparsemax", "tanh",
               "mish", "squareplus", "sparseplus", "sparsesigmoid", "exp", "prelu", "rrelu"}
_POOL_OPS = {"maxpool", "averagepool", "adaptivemaxpool", "adaptiveaveragepool"}
SPATIAL_REDUCTIONS = {"mean", "max", "amax", "sum", "average", "nanmean", "nanmax"}
_NORM = {"layernorm", "rmsnorm", "batchnorm", "normalize", "groupnorm", "instancenorm",
         "localresponsenorm"}
_RESHAPE = {"reshape", "transpose", "ravel", "flatten", "expanddims", "squeeze", "moveaxis",
            "swapaxes", "view", "permute", "unsqueeze", "movedim", "depthtospace",
            "spacetodepth", "pixelshuffle", "pixelunshuffle", "unflatten"}
_CONV = {"conv", "depthwiseconv", "separableconv", "convtranspose"}
_RESIZE = {"resize", "interpolate", "upsample"}

# activation function names as convlens writes them (as the PyTorch adapter does)
_FUNCTION = {"hardsilu": "hardswish", "hardswish": "hardswish", "hardsigmoid": "hardsigmoid",
             "leakyrelu": "leaky_relu", "logsoftmax": "log_softmax",
             "logsigmoid": "logsigmoid", "swish": "silu", "hardtanh": "hardtanh",
             "softshrink": "softshrink", "hardshrink": "hardshrink",
             "tanhshrink": "tanhshrink", "sparseplus": "sparse_plus",
             "sparsesigmoid": "sparse_sigmoid"}
_MODE = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div",
         "truedivide": "div", "dividenonan": "div", "floordivide": "floordiv",
         "concatenate": "concat", "hstack": "concat", "vstack": "concat", "dstack": "concat",
         "stack": "stack", "maximum": "max", "minimum": "min", "average": "mean",
         "power": "pow"}


def _axes(axis: Any, ndim: int) -> set[int] | None:
    if axis is None:
        return set(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    try:
        return {int(a) % ndim for a in axis}
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _spatial(axis: Any, ndim: int, channels_last: bool) -> bool:
    """Does a reduction over ``axis`` of an ``ndim`` map reduce its spatial axes (and
    only those, batch and channels kept)?"""
    if ndim < 3:
        return False
    axes = _axes(axis, ndim)
    spatial = set(range(1, ndim - 1)) if channels_last else set(range(2, ndim))
    return axes == spatial


def op_kind(key: str, axis: Any = None, ndim: int = 0, channels_last: bool = True) -> str:
    """The stage kind of op ``key`` (a lower-case class or function name, no
    underscores)."""
    if key in _MERGE:
        return "merge"
    if key in _ACTIVATION:
        return "activation"
    if key in _POOL_OPS or key in _RESIZE:
        return "pool"
    if key in SPATIAL_REDUCTIONS:
        return "pool" if _spatial(axis, ndim, channels_last) else "other"
    if key in _NORM:
        return "norm"
    if key in _RESHAPE:
        return "reshape"
    if key in _CONV:
        return "conv"
    if key in ("matmul", "linear", "dot", "einsum", "tensordot"):
        return "dense"
    return "other"


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return isinstance(value, (tuple, list)) and all(_plain(v) for v in value)


def cf_dim(axis: int, ndim: int, moved: bool) -> int:
    """Axis ``axis`` of an ``ndim`` channels-last tensor as a dimension of the stage's
    channels-first output (``moved``: the stage is stored channels-first)."""
    a = axis % ndim if ndim else axis
    if not moved or ndim < 3 or a == 0:
        return a
    return 1 if a == ndim - 1 else a + 1


def op_params(key: str, kind: str, attrs: dict[str, Any], n_inputs: int, ndim: int = 0,
              moved: bool = False, scalars: list[tuple[int, float]] | None = None
              ) -> dict[str, Any]:
    """Plain parameters of one op call, in the schema of its kind (``convlens.params``);
    ``attrs`` are its plain arguments/attributes (Keras' names, kept as they are),
    ``scalars`` the numbers among its arguments with their positions."""
    p: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                         for k, v in attrs.items() if _plain(v) and k != "name"}
    if kind == "activation":
        p["function"] = _FUNCTION.get(key, key)
    elif kind == "merge":
        op = _MODE.get(key, key)
        p["operation"] = op
        axis = attrs.get("axis")
        if op in ("concat", "stack"):
            p["operation"] = "cat" if op == "concat" else "stack"
            if isinstance(axis, int) and ndim:
                p["dim"] = cf_dim(axis, ndim + (op == "stack"), moved)
        if scalars and p["operation"] not in ("cat", "stack"):
            p["scalar"], p["scalar_index"] = float(scalars[0][1]), int(scalars[0][0])
            if scalars[0][0] == 0 and p["operation"] in ("sub", "div"):
                p["reflected"] = True
    elif kind == "pool" and key in SPATIAL_REDUCTIONS:
        p["mode"] = "max" if "max" in key else ("sum" if key == "sum" else "avg")
        p["global"] = True
        p["keepdim"] = bool(attrs.get("keepdims", attrs.get("keepdim", False)))
        if ndim >= 3:
            p["dims"] = tuple(range(2, ndim))
    elif kind == "pool" and key in _POOL_OPS:
        p["mode"] = "max" if "max" in key else "avg"
        if "adaptive" in key:
            p["adaptive"] = True
    elif kind == "pool":
        p["mode"] = "resize"
    elif kind == "norm":
        p["function"] = {"layernorm": "layer_norm", "rmsnorm": "rms_norm",
                         "batchnorm": "batch_norm", "groupnorm": "group_norm",
                         "instancenorm": "instance_norm"}.get(key, key)
        if isinstance(p.get("epsilon"), float):
            p["eps"] = p["epsilon"]
    elif kind in ("reshape", "other", "dense"):
        p["operation"] = key
    return p


_TORCH_ALIASES = {
    "sub": "subtract", "rsub": "subtract", "mul": "multiply", "div": "divide",
    "truediv": "divide", "rtruediv": "divide", "rdiv": "divide", "floordiv": "floordivide",
    "cat": "concatenate", "concat": "concatenate", "radd": "add", "rmul": "multiply",
    "pow": "power", "rpow": "power", "neg": "negative", "hardswish": "hardswish",
    "layernorm": "layernorm", "batchnorm": "batchnorm", "groupnorm": "groupnorm",
    "rmsnorm": "rmsnorm", "maxpool1d": "maxpool", "maxpool2d": "maxpool",
    "maxpool3d": "maxpool", "avgpool1d": "averagepool", "avgpool2d": "averagepool",
    "avgpool3d": "averagepool", "adaptiveavgpool1d": "adaptiveaveragepool",
    "adaptiveavgpool2d": "adaptiveaveragepool", "adaptivemaxpool2d": "adaptivemaxpool",
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "convtranspose2d": "convtranspose",
    "maximum": "maximum", "minimum": "minimum", "interpolate": "interpolate",
}


def torch_name(func: Any) -> str:
    """A torch function's or tensor method's name without dunders or in-place mark:
    ``__add__`` -> ``add``, ``relu_`` -> ``relu``, ``__rmul__`` -> ``rmul``."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith("i") and name[1:] in ("add", "sub", "mul", "truediv", "div",
                                                 "floordiv", "pow", "and", "or"):
            name = name[1:]
    return name.rstrip("_") or name


def torch_kind(name: str, axis: Any = None, ndim: int = 0, channels_last: bool = True
               ) -> tuple[str, str]:
    """``(kind, key)`` of a torch function called ``name`` (see :func:`torch_name`)."""
    key = name.replace("_", "").lower()
    key = _TORCH_ALIASES.get(key, key)
    return op_kind(key, axis, ndim, channels_last), key
