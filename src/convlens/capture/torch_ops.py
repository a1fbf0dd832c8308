"""What a PyTorch op run *between* modules is: its stage name, kind and parameters.

The capture records every leaf module as one stage (``torch_pass``) and every
tensor-producing op run outside leaf modules (a functional ``F.relu``, a residual
``x + y``, ``torch.cat``, ``x.mean((2, 3))``, ``torch.flatten``...) as a stage of its
own, seen through a ``TorchFunctionMode`` installed for the pass only.  This module
says, for one intercepted function, what it is:

* its op name, normalised (``Tensor.__add__``, ``Tensor.__radd__``, ``Tensor.add_``,
  ``torch.add`` are all ``add``; in-place forms are flagged);
* its kind, from the op, never from a name (``add`` -> merge, ``relu`` -> activation,
  ``max_pool2d``/``mean`` over spatial axes/``interpolate`` -> pool, ``flatten``,
  ``permute``/``view``/``getitem`` -> reshape, anything unknown -> other);
* whether it is a no-op whose output is its input's values (``contiguous``, ``clone``,
  ``detach``, a same-dtype ``to``): not a stage, its sources pass through;
* its typed parameters (``operation``, ``dim``; a functional conv's ``stride``,
  ``padding``...; an activation's ``function``), read from the call's arguments.
"""
from __future__ import annotations

from typing import Any

__all__ = ["OpInfo", "op_info", "op_params", "is_inplace_call", "WEIGHT_ROLES"]

_IDUNDER = {"iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "iand", "ior",
            "ixor", "ilshift", "irshift", "imatmul"}
_RDUNDER = {"radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod", "rpow", "rmatmul",
            "rand", "ror", "rxor", "rdiv"}
_ALIASES = {
    "truediv": "div", "divide": "div", "true_divide": "div", "multiply": "mul",
    "subtract": "sub", "concat": "cat", "concatenate": "cat", "clip": "clamp",
    "absolute": "abs", "max_pool2d_with_indices": "max_pool2d", "upsample": "interpolate",
    "upsample_nearest": "interpolate", "upsample_bilinear": "interpolate",
    "swapaxes": "transpose", "swapdims": "transpose", "moveaxis": "movedim",
    "hardswish": "hardswish", "hard_swish": "hardswish",
}

_KIND_OF: dict[str, str] = {}
for _kind, _names in {
    "conv": "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d convolution",
    "dense": "linear matmul mm bmm addmm einsum bilinear",
    "activation": "relu relu6 leaky_relu elu selu celu gelu silu mish sigmoid tanh hardswish "
                  "hardsigmoid hardtanh softplus softmax log_softmax softsign tanhshrink "
                  "threshold prelu rrelu glu logsigmoid clamp clamp_min clamp_max hardshrink "
                  "softshrink",
    "pool": "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d "
            "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d "
            "adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d interpolate "
            "grid_sample",
    "norm": "batch_norm layer_norm group_norm instance_norm local_response_norm normalize "
            "rms_norm",
    "merge": "add sub mul div cat stack maximum minimum where floor_divide remainder "
             "addcmul addcdiv lerp",
    "flatten": "flatten",
    "reshape": "view reshape permute transpose squeeze unsqueeze getitem split chunk narrow "
               "select pad expand expand_as repeat flip roll unflatten movedim t T mT unbind "
               "tensor_split pixel_shuffle pixel_unshuffle channel_shuffle view_as "
               "reshape_as index_select repeat_interleave",
    "dropout": "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout",
}.items():
    for _n in _names.split():
        _KIND_OF[_n] = _kind

_REDUCE = {"mean", "amax", "amin", "sum", "max", "min", "logsumexp", "std", "var", "norm"}
"""Reductions: pooling when they reduce spatial axes only, else ``other``."""

_NOOP = {"contiguous", "clone", "detach", "alias", "data", "requires_grad", "cpu",
         "to", "float", "type_as", "type", "view_as_real_copy"}
"""Ops whose output holds their input's values (checked: same dtype and shape)."""

WEIGHT_ROLES: dict[str, tuple[str, ...]] = {
    "conv": ("input", "weight", "bias"),
    "linear": ("input", "weight", "bias"),
    "batch_norm": ("input", "running_mean", "running_var", "weight", "bias"),
    "layer_norm": ("input", "normalized_shape", "weight", "bias"),
    "group_norm": ("input", "num_groups", "weight", "bias"),
    "rms_norm": ("input", "normalized_shape", "weight"),
    "prelu": ("input", "weight"),
}
"""Names of a function's positional arguments, for the tensors that are not stages
(the op's weights)."""

_SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "conv": (("input", None), ("weight", None), ("bias", None), ("stride", 1),
             ("padding", 0), ("dilation", 1), ("groups", 1)),
    "conv_transpose": (("input", None), ("weight", None), ("bias", None), ("stride", 1),
                       ("padding", 0), ("output_padding", 0), ("groups", 1),
                       ("dilation", 1)),
    "max_pool": (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
                 ("dilation", 1), ("ceil_mode", False)),
    "avg_pool": (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
                 ("ceil_mode", False), ("count_include_pad", True)),
    "adaptive": (("input", None), ("output_size", None)),
    "interpolate": (("input", None), ("size", None), ("scale_factor", None),
                    ("mode", "nearest"), ("align_corners", None)),
    "batch_norm": (("input", None), ("running_mean", None), ("running_var", None),
                   ("weight", None), ("bias", None), ("training", False), ("momentum", 0.1),
                   ("eps", 1e-5)),
    "layer_norm": (("input", None), ("normalized_shape", None), ("weight", None),
                   ("bias", None), ("eps", 1e-5)),
    "group_norm": (("input", None), ("num_groups", None), ("weight", None), ("bias", None),
                   ("eps", 1e-5)),
    "leaky_relu": (("input", None), ("negative_slope", 0.01)),
    "elu": (("input", None), ("alpha", 1.0)),
    "hardtanh": (("input", None), ("min_val", -1.0), ("max_val", 1.0)),
    "clamp": (("input", None), ("min", None), ("max", None)),
    "softmax": (("input", None), ("dim", None)),
    "log_softmax": (("input", None), ("dim", None)),
    "gelu": (("input", None),),
    "flatten": (("input", None), ("start_dim", 0), ("end_dim", -1)),
    "cat": (("tensors", None), ("dim", 0)),
    "stack": (("tensors", None), ("dim", 0)),
    "reduce": (("input", None), ("dim", None), ("keepdim", False)),
}


class OpInfo:
    """What one intercepted function is (cached per function object)."""

    __slots__ = ("op", "kind", "inplace", "noop", "reflected")

    def __init__(self, op: str, kind: str, inplace: bool, noop: bool, reflected: bool):
        self.op, self.kind, self.inplace, self.noop = op, kind, inplace, noop
        self.reflected = reflected


_CACHE: dict[Any, OpInfo] = {}


def op_info(func: Any) -> OpInfo:
    """The normalised op name, kind and flags of an intercepted ``func``."""
    try:
        return _CACHE[func]
    except (KeyError, TypeError):
        pass
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a tensor property (``x.T``, ``x.data``)
        name = getattr(getattr(func, "__self__", None), "__name__", "attribute")
    inplace = reflected = False
    if name.startswith("__") and name.endswith("__"):
        core = name[2:-2]
        if core in _IDUNDER:
            core, inplace = core[1:], True
        elif core in _RDUNDER:
            core, reflected = core[1:], True
        name = core
        if name == "setitem":
            inplace = True
    elif name.endswith("_") and not name.startswith("_"):
        name, inplace = name[:-1], True
    name = _ALIASES.get(name, name)
    kind = _KIND_OF.get(name, "pool" if name in _REDUCE else "other")
    info = OpInfo(name, kind, inplace, name in _NOOP, reflected)
    try:
        _CACHE[func] = info
    except TypeError:  # (an unhashable callable: described each time)
        pass
    return info


def is_inplace_call(info: OpInfo, args: tuple, kwargs: dict) -> bool:
    """Does this call write into its first argument (or an ``out=`` tensor)?"""
    if info.inplace or kwargs.get("inplace") is True or "out" in kwargs:
        return True
    # F.relu(x, True), F.hardswish(x, True)...: a positional ``inplace`` flag
    if info.kind in ("activation", "dropout") and len(args) >= 2 and args[-1] is True:
        return True
    return False


def _bind(sig: tuple[tuple[str, Any], ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    out = {}
    for i, (name, default) in enumerate(sig):
        out[name] = args[i] if i < len(args) else kwargs.get(name, default)
    return out


def _pair(v: Any, n: int = 2) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(int(x) if isinstance(x, (int, bool)) or hasattr(x, "__index__") else x
                     for x in v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (v,) * n
    return v


def _signature_key(op: str) -> str | None:
    if op.startswith("conv_transpose"):
        return "conv_transpose"
    if op.startswith("conv"):
        return "conv"
    if op.startswith("max_pool"):
        return "max_pool"
    if op.startswith("avg_pool"):
        return "avg_pool"
    if op.startswith("adaptive_"):
        return "adaptive"
    if op in _REDUCE:
        return "reduce"
    return op if op in _SIGNATURES else None


def op_params(info: OpInfo, args: tuple, kwargs: dict, out_shape: tuple[int, ...],
              in_shape: tuple[int, ...] | None) -> tuple[str, dict[str, Any]]:
    """The stage kind (a reduction's depends on its axes) and typed parameters of one
    call.  Values are Python numbers, strings, booleans or tuples."""
    op, kind = info.op, info.kind
    key = _signature_key(op)
    b = _bind(_SIGNATURES[key], args, kwargs) if key else {}
    p: dict[str, Any] = {}
    if kind == "conv":
        w = b.get("weight")
        shape = tuple(w.shape) if w is not None else ()
        groups = int(b.get("groups") or 1)
        nd = max(len(shape) - 2, 1)
        pad = b.get("padding", 0)
        p = dict(kernel_size=shape[2:], stride=_pair(b.get("stride", 1), nd),
                 padding=pad if isinstance(pad, str) else _pair(pad, nd),
                 dilation=_pair(b.get("dilation", 1), nd), groups=groups,
                 in_channels=int(shape[1]) * groups if len(shape) > 1 else None,
                 out_channels=int(shape[0]) if shape else None,
                 bias=b.get("bias") is not None)
        if key == "conv_transpose":
            p["transposed"] = True
            p["in_channels"], p["out_channels"] = int(shape[0]), int(shape[1]) * groups
    elif kind == "dense":
        p["operation"] = op
        if op == "linear" and len(args) > 1 and hasattr(args[1], "shape"):
            w = args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            p.update(in_features=int(w.shape[1]), out_features=int(w.shape[0]),
                     bias=bias is not None)
    elif kind == "pool":
        if key == "reduce":
            dims = b.get("dim")
            dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
            nd = len(in_shape or ())
            spatial = nd >= 3 and None not in dims and all(
                (d % nd) >= 2 for d in dims if isinstance(d, int))
            if not spatial:
                return "other", {"operation": op, "dim": _pair(b.get("dim"), 1)
                                 if b.get("dim") is not None else None}
            mode = {"mean": "avg", "amax": "max", "max": "max", "amin": "min",
                    "min": "min", "sum": "sum"}.get(op, op)
            p = {"mode": mode, "global": True, "dims": dims, "keepdim": bool(b.get("keepdim"))}
        elif key == "interpolate":
            p = {"mode": "resize", "method": b.get("mode") or "nearest"}
            if b.get("size") is not None:
                p["size"] = _pair(b["size"], len(out_shape) - 2)
            if b.get("scale_factor") is not None:
                p["scale_factor"] = _pair(b["scale_factor"], len(out_shape) - 2)
        elif key == "adaptive":
            size = _pair(b.get("output_size"), len(out_shape) - 2)
            p = {"mode": "max" if "max" in op else "avg", "adaptive": True, "output_size": size}
            if all(s == 1 for s in (size if isinstance(size, tuple) else (size,))):
                p["global"] = True
        elif key in ("max_pool", "avg_pool"):
            nd = len(out_shape) - 2
            k = _pair(b.get("kernel_size"), nd)
            stride = b.get("stride")
            p = {"mode": "max" if key == "max_pool" else "avg", "kernel_size": k,
                 "stride": _pair(stride, nd) if stride not in (None, (), []) else k,
                 "padding": _pair(b.get("padding", 0), nd)}
            if b.get("ceil_mode"):
                p["ceil_mode"] = True
            if key == "max_pool":
                p["dilation"] = _pair(b.get("dilation", 1), nd)
            else:
                p["count_include_pad"] = bool(b.get("count_include_pad", True))
        else:
            p = {"mode": op}
    elif kind == "activation":
        p = {"function": op}
        if op == "leaky_relu":
            p["alpha"] = float(b.get("negative_slope", 0.01))
        elif op == "elu":
            p["alpha"] = float(b.get("alpha", 1.0))
        elif op == "hardtanh":
            p["min"], p["max"] = float(b["min_val"]), float(b["max_val"])
        elif op == "clamp":
            for k in ("min", "max"):
                if isinstance(b.get(k), (int, float)):
                    p[k] = float(b[k])
        elif op in ("softmax", "log_softmax") and isinstance(b.get("dim"), int):
            p["dim"] = int(b["dim"])
        elif op == "gelu" and isinstance(kwargs.get("approximate"), str):
            p["approximate"] = kwargs["approximate"]
    elif kind == "norm":
        p = {"function": op}
        if key and isinstance(b.get("eps"), float):
            p["eps"] = float(b["eps"])
        if op == "group_norm" and isinstance(b.get("num_groups"), int):
            p["num_groups"] = int(b["num_groups"])
    elif kind == "merge":
        p = {"operation": op}
        if key in ("cat", "stack"):
            p["dim"] = int(b.get("dim") or 0)
        scalars = [] if key in ("cat", "stack") else [
            a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if scalars:
            p["scalar"] = float(scalars[0])
        if info.reflected:
            p["reflected"] = True
    elif kind == "flatten":
        p = {"start_dim": int(b.get("start_dim", 0)), "end_dim": int(b.get("end_dim", -1))}
    elif kind in ("reshape", "other", "dropout"):
        p = {"operation": op}
    if info.inplace or kwargs.get("inplace") is True:
        p["inplace"] = True
    return kind, p
