"""Capture every leaf module of a PyTorch ``nn.Module`` with forward hooks.

Hooks are added per call and removed in ``finally``; the model runs in eval
mode under ``torch.no_grad()`` and every module's train/eval flag is restored
afterwards, so the user's model comes back exactly as it was.

Outputs are kept by reference (no copy on the hot path, see ``torch_pass``).  A
stored output that a later op would overwrite in place is copied just before: a
pre-hook does it for in-place modules (``ReLU(inplace=True)``); for in-place ops
hidden inside a module's ``forward`` (``out += identity``) the tensor's version
counter reveals the change after the pass, and the pass is repeated copying the
overwritten outputs as their layers return (remembered per model, so the next
capture of that model copies them at once and runs once).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import weakref

from ..errors import CaptureError, ConvlensError, ModelError
from ..trace import Deferred, Stage, _freeze
from .options import CaptureOptions, finish_stages
from .recorder import Recorder
from .torch_derive import wants_weights
from .torch_pass import Record, leaf_table, run_pass
from .torch_weights import shared_views, weights_of
from .torch_pass import first_tensor as _first_tensor

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
    return kind, p


def _weights(m: nn.Module) -> dict[str, np.ndarray]:
    """Copies of one module's floating-point parameters and buffers (shared, cached)."""
    return dict(weights_of([m])[id(m)][0])


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


def _training(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` (itself included) that is in training mode."""
    out: list[nn.Module] = []
    seen: set[int] = set()

    def walk(m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if m.training:
            out.append(m)
        for c in m._modules.values():
            if c is not None:
                walk(c)

    walk(model)
    return out


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    if t.dtype is torch.float32 and t.is_cpu and not t.requires_grad:
        return t.numpy()
    return t.detach().to("cpu", torch.float32).numpy()


def _converter(opts: CaptureOptions) -> Any:
    """What a layer's output becomes as it returns, or None to hold it by reference."""
    if opts.dtype == "float16":
        return lambda t: t.detach().to("cpu", torch.float16, copy=True).numpy()
    if opts.store == "disk":
        return lambda t: t.detach().to("cpu", torch.float32).numpy()
    return None


def _with_sources(params: dict[str, Any], r: Record) -> dict[str, Any]:
    """A merge stage lists all its inputs (stage indices, -1 = the model input)."""
    if r.sources is None or any(s is None for s in r.sources):
        return dict(params)  # each stage its own dict (a module called twice: two stages)
    return {**params, "sources": r.sources}


def _stages(records: list[Record], opts: CaptureOptions) -> list[Stage]:
    described: dict[int, tuple[str, dict[str, Any]]] = {}
    modules: list[nn.Module] = []
    for r in records:
        if id(r.module) not in described:
            kind, params = describe_module(r.module)
            described[id(r.module)] = (kind, _freeze(params))
            modules.append(r.module)
    if opts.weights == "copy":
        copies = weights_of(modules)
        weights = {k: v[0] for k, v in copies.items()}
    else:
        derived = [r.module for r in records if r.recipe is not None and wants_weights(r.module)]
        copies = weights_of(list({id(m): m for m in derived}.values()))
        weights = shared_views(modules) if opts.weights == "share" else {id(m): {} for m in modules}
    stages: list[Stage] = []
    for i, r in enumerate(records):
        if r.recipe is not None:
            output: Any = Deferred(_recompute(r.recipe, stages[r.source], copies.get(id(r.module))),
                                   r.value)
        else:
            output = _to_numpy(r.value)
        stages.append(Stage._trusted(i, r.name, r.kind, type(r.module).__name__, output,
                                     _with_sources(described[id(r.module)][1], r),
                                     dict(weights[id(r.module)]), r.source))
    return stages


def _recompute(fn: Any, source: Stage, copies: Any) -> Any:
    """The deferred output of a derived stage: ``fn`` on the source stage's output."""
    tensors = copies[1] if copies is not None else {}

    def compute() -> np.ndarray:
        with torch.no_grad():
            return fn(torch.from_numpy(source.output), tensors).numpy()

    return compute


_INPLACE_HINT: "weakref.WeakKeyDictionary[nn.Module, frozenset[str]]" = weakref.WeakKeyDictionary()
"""Per model, the stages an in-place op inside some ``forward`` overwrote last time: the
next capture copies them as their layers return instead of running the model twice."""


def _record(model: nn.Module, xt: torch.Tensor, keep, opts: CaptureOptions,
            table: dict | None) -> tuple[list, Any]:
    """The recorded pass (and, when an unforeseen in-place op overwrote a held output,
    the pass again with that output copied as its layer returns)."""
    if table is None:  # a TorchScript module
        rec, output = _run_script(model, xt, keep)
        return finish_stages(rec.stages(lambda t, _p: _to_numpy(t)), opts, opts.sink()), output
    convert, sink = _converter(opts), opts.sink()
    if torch.is_inference_mode_enabled():  # inference tensors have no version counter
        convert = convert or (lambda t: t.detach().clone())
    copy: frozenset[str] = _INPLACE_HINT.get(model, frozenset()) if convert is None else frozenset()
    for _ in range(3):
        records, output, mutated = run_pass(model, xt, table, keep, copy, convert, sink)
        if not mutated:
            break
        copy = copy | mutated  # an in-place op inside some forward(): repeat, copying those
    else:
        records, output, _ = run_pass(model, xt, table, keep, convert=lambda t: t.detach().clone())
    if convert is None:
        if copy:
            _INPLACE_HINT[model] = copy
        else:
            _INPLACE_HINT.pop(model, None)
    return _stages(records, opts), output


def capture_torch(model: nn.Module, x: np.ndarray, keep,
                  options: CaptureOptions | None = None) -> tuple[list, np.ndarray, str]:
    """Run ``model`` on the channels-first batch ``x`` and record every leaf call.

    Returns the Stage list, the model's own output and the model's name.
    """
    opts = options or CaptureOptions()
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype if param.is_floating_point() else torch.float32
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
    if isinstance(model, _SCRIPT):
        table, training = None, _training(model)
    else:
        training = []
        table = leaf_table(model, _kind, training)  # (one walk finds both)
    modes = {m: m.training for m in model.modules()} if training else None
    try:
        if modes:  # nothing to switch (and nothing to restore) when already in eval mode
            model.eval()
        with torch.no_grad():
            try:
                stages, output = _record(model, xt, keep, opts, table)
            except ConvlensError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CaptureError(
                    f"{type(model).__name__} failed on an input of shape {tuple(x.shape)} "
                    f"(B, C, H, W): {msg}; check the image size and channels the model expects"
                ) from None
    finally:
        for m, mode in (modes or {}).items():
            m.training = mode
    out = _first_tensor(output)
    if out is None:
        raise ModelError(f"{type(model).__name__} returned {type(output).__name__}; expected a tensor")
    return stages, _to_numpy(out), type(model).__name__
