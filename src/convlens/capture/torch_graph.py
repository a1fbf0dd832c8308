"""Stages from a PyTorch *graph* (TorchScript, ``torch.export``): names, kinds, params,
sources, shared by :mod:`~convlens.capture.torchscript` and
:mod:`~convlens.capture.exported`.

An adapter walks its graph in execution order and, for every node, tells a
:class:`GraphStages` what the node is: the model input, a pass-through (``contiguous``,
eval-mode dropout: the sources go through it), or an op with its output tensor, the
module path it ran in and the graph values it read.  Names follow the eager capture
(:mod:`~convlens.capture.torch_pass`): the output of a leaf module's call is named by the
module's path (``layer1.0.conv1``; a second call ``shared#2``), any other op by the path of
the module whose ``forward`` ran it plus the op (``layer1.0.add``, ``layer1.0.relu_1``).
Kinds and typed params come from :mod:`~convlens.capture.torch_ops`, read off the op's
arguments; nothing is guessed from a name.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Hashable, Iterable

import numpy as np
import torch

from convlens.capture.torch_ops import OpInfo, op_info, op_params
from convlens.capture.torch_pass import unique_op_name
from convlens.trace import Stage

__all__ = ["GraphStages", "aten_info", "functional_args", "to_numpy", "NOOPS"]

_UNKEPT = -2

NOOPS = frozenset({"contiguous", "clone", "detach", "alias", "to", "type_as", "lift_fresh",
                   "lift_fresh_copy", "dropout", "feature_dropout", "alpha_dropout",
                   "feature_alpha_dropout", "_to_copy", "detach_", "alias_copy"})
"""aten ops whose output holds their input's values (checked: same dtype and shape);
dropout only in eval mode (the adapters run eval mode)."""

_RENAME = {"_convolution": "conv2d", "convolution": "conv2d",
           "upsample_nearest2d": "interpolate", "upsample_bilinear2d": "interpolate",
           "upsample_bicubic2d": "interpolate", "_adaptive_avg_pool2d": "adaptive_avg_pool2d",
           "max_pool2d_with_indices": "max_pool2d", "_softmax": "softmax",
           "_log_softmax": "log_softmax", "_native_batch_norm_legit_no_training": "batch_norm",
           "native_batch_norm": "batch_norm", "native_layer_norm": "layer_norm",
           "native_group_norm": "group_norm", "_unsafe_view": "view"}


class _Named:
    """Stands for a function named ``name`` (what :func:`op_info` reads)."""

    def __init__(self, name: str):
        self.__name__ = name

    def __hash__(self) -> int:
        return hash(("aten", self.__name__))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Named) and other.__name__ == self.__name__


@lru_cache(maxsize=None)
def aten_info(name: str) -> OpInfo:
    """What the aten op ``name`` (``relu_``, ``_convolution``, ``add``) is, as for the
    functional it implements: normalised name, kind, in-place flag."""
    inplace = name.endswith("_") and not name.endswith("__") and not name.startswith("_")
    core = name[:-1] if inplace else name
    core = _RENAME.get(core, core)
    info = op_info(_Named(core))
    if inplace and not info.inplace:
        info = OpInfo(info.op, info.kind, True, info.noop, info.reflected)
    return info


def functional_args(name: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, list, dict]:
    """The aten op ``name``'s arguments as the functional :func:`op_params` reads expects
    them (``batch_norm``'s weights come first in aten, ``_convolution`` has a
    ``transposed`` flag, ``add`` an ``alpha``...).  Returns the functional's name too."""
    core = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    if core in ("_convolution", "convolution") and len(args) >= 9:
        inp, w, b, stride, pad, dil, transposed, out_pad, groups = args[:9]
        nd = max((w.dim() if isinstance(w, torch.Tensor) else 4) - 2, 1)
        if transposed:
            return f"conv_transpose{nd}d", [inp, w, b, stride, pad, out_pad, groups, dil], {}
        return f"conv{nd}d", [inp, w, b, stride, pad, dil, groups], {}
    if core in ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm"):
        a = list(args) + [None] * 8
        if core == "_native_batch_norm_legit_no_training":  # (x, w, b, mean, var, momentum, eps)
            return "batch_norm", [a[0], a[3], a[4], a[1], a[2], False, a[5], a[6]], {}
        return "batch_norm", [a[0], a[3], a[4], a[1], a[2], a[5], a[6], a[7]], {}
    if core.startswith("upsample_"):
        mode = core[len("upsample_"):].rstrip("123d").rstrip("_") or "nearest"
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        scale = kwargs.get("scale_factors")
        if scale is None and len(args) > 2 and isinstance(args[2], (list, tuple)):
            scale = args[2]
        return "interpolate", [args[0]], {"size": size, "scale_factor": scale, "mode": mode}
    if core == "gelu":
        return "gelu", list(args[:1]), {"approximate": kwargs.get(
            "approximate", args[1] if len(args) > 1 else "none")}
    info = aten_info(name)
    if info.kind == "merge" and core not in ("cat", "stack", "concat", "concatenate"):
        return core, list(args[:2]), {}  # (not ``alpha``: a scalar of the call, not the op's)
    if core in ("mean", "sum", "amax", "amin") and len(args) == 1 and "dim" not in kwargs:
        return core, [args[0], None], {}
    return core, list(args), dict(kwargs)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype is torch.float32 and t.device.type == "cpu" and not t.requires_grad:
        return t.numpy()
    return t.detach().to("cpu", torch.float32).numpy()


def _first_channels(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 3, 1))


class GraphStages:
    """The stages of one graph walk (see the module docs).  ``keep(name, kind)`` says
    which stages to keep; ``taken`` are the model's module paths (an op's name never
    takes one); ``batch`` the input's batch size (an output without it is no stage)."""

    def __init__(self, keep: Callable[[str, str], bool] | None, taken: Iterable[str],
                 batch: int):
        self.keep = keep
        self.taken = set(taken)
        self.batch = batch
        self.producer: dict[Hashable, int] = {}
        self.stages: list[Stage] = []
        self.last: dict[int, bool] = {}  # stage index -> a channels-last map
        self._ops: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self.skipped: Counter[str] = Counter()
        self.notices: list[str] = []
        self._shapes: dict[int, tuple[int, ...]] = {}

    # -- the graph's edges ------------------------------------------------------------
    def input(self, key: Hashable) -> None:
        self.producer[key] = -1

    def through(self, out: Hashable, inp: Hashable) -> None:
        """``out`` holds ``inp``'s values: its sources are ``inp``'s."""
        if inp in self.producer:
            self.producer[out] = self.producer[inp]

    def sources(self, keys: Iterable[Hashable]) -> tuple[list[int], bool]:
        """The stages ``keys`` come from (in order, once each) and whether any does
        (stages not kept count, though they are not listed)."""
        out: list[int] = []
        derived = False
        for k in keys:
            i = self.producer.get(k)
            if i is None:
                continue
            derived = True
            if i != _UNKEPT and i not in out:
                out.append(i)
        return out, derived

    def skip(self, what: str) -> None:
        """Something computed that is not a stage, summed up in one notice."""
        self.skipped[what] += 1

    # -- names ------------------------------------------------------------------------
    def _op_name(self, path: str, op: str) -> str:
        return unique_op_name(path, op, self._ops, self.taken)

    def _call_name(self, path: str) -> str:
        n = self._calls.get(path, 0) + 1
        self._calls[path] = n
        return path if n == 1 else f"{path}#{n}"

    # -- one op -----------------------------------------------------------------------
    def op(self, key: Hashable, aten: str, path: str, args: list[Any], kwargs: dict[str, Any],
           out: torch.Tensor, source_keys: Iterable[Hashable], weights: dict[str, Any],
           call: str | None = None, first: torch.Tensor | None = None) -> int | None:
        """The node ``key`` (aten op ``aten``, run in module ``path``) returned ``out``.
        ``call`` is the leaf module's op name (``"Conv2d"``) when ``out`` is what a leaf
        module's call returned; ``first`` is the op's first tensor input (for pass-through
        checks and a reduction's axes).  Returns the stage index, or None."""
        srcs, derived = self.sources(source_keys)
        if not derived:
            self.skip(f"{aten} (from weights or constants only)")
            return None
        if not out.is_floating_point():  # (not a stage; what reads it reads its sources)
            self.skip(f"{aten} ({str(out.dtype).replace('torch.', '')})")
            if srcs:
                self.producer[key] = srcs[0]
            return None
        info = aten_info(aten)
        keys = list(source_keys)
        if (info.op in NOOPS or info.kind == "dropout") and first is not None and \
                out.dtype == first.dtype and out.shape == first.shape and keys:
            self.through(key, keys[0])
            return None
        if out.dim() == 0 or out.shape[0] != self.batch:
            self.skip(f"{aten} (shape {tuple(out.shape)}, no batch axis)")
            return None
        fname, fargs, fkwargs = functional_args(aten, args, kwargs)
        finfo = aten_info(fname) if fname != aten else info
        if info.inplace and not finfo.inplace:
            finfo = OpInfo(finfo.op, finfo.kind, True, finfo.noop, finfo.reflected)
        in_shape = tuple(first.shape) if first is not None else None
        kind, params = op_params(finfo, tuple(fargs), fkwargs, tuple(out.shape), in_shape)
        name = self._call_name(path) if call is not None else self._op_name(path, finfo.op)
        if self.keep is not None and not self.keep(name, kind):
            self.producer[key] = _UNKEPT
            return None
        index = len(self.stages)
        source = srcs[0] if srcs else None
        src_last = source is not None and source >= 0 and self.last.get(source, False)
        last = False
        if finfo.op == "permute" and out.dim() == 4:
            dims = _dims(fargs)
            last = dims == (0, 1, 2, 3) if src_last else dims == (0, 2, 3, 1)
        elif src_last:
            shape = self._shapes[source]
            last = out.dim() == 4 and len(shape) == 4 and tuple(out.shape[1:3]) == shape[1:3]
        output = to_numpy(out).copy() if out.dtype is torch.float32 else to_numpy(out)
        if last:
            output = _first_channels(output)
            params = {**params, "layout": "channels_last"}
        w = {k: to_numpy(v).copy() for k, v in weights.items()
             if isinstance(v, torch.Tensor) and v.is_floating_point()}
        self.stages.append(Stage(index, name, kind, call or finfo.op, output, params, w,
                                 sources=tuple(srcs)))
        self.last[index] = last
        self._shapes[index] = tuple(out.shape)
        self.producer[key] = index
        return index

    def summary(self) -> list[str]:
        """One notice for everything computed that is not a stage (plus the adapter's)."""
        out = list(self.notices)
        if self.skipped:
            items = self.skipped.most_common()
            shown = ", ".join(f"{n} x {what}" if n > 1 else what for what, n in items[:6])
            more = f" and {len(items) - 6} more kinds" if len(items) > 6 else ""
            out.append(f"{sum(self.skipped.values())} computed value(s) are not stages "
                       f"(constants, shape arithmetic, non-float values): {shown}{more}")
        return out


def _dims(args: list[Any]) -> tuple[int, ...] | None:
    rest = args[1:]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        rest = rest[0]
    try:
        return tuple(int(d) % 4 for d in rest)
    except (TypeError, ValueError):
        return None
