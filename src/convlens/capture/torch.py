"""Capture every stage of a PyTorch ``nn.Module``: each leaf module and every op run
between modules (``torch_pass`` records them; ``torch_ops`` says what an op is).

The model runs in eval mode under ``torch.no_grad()``; every module's train/eval flag
is restored afterwards, and whatever the pass installs (``forward`` wrappers, the op
mode) is removed in ``finally``, so the user's model comes back exactly as it was.

Outputs are kept by reference, or not held at all and computed again when read (see
``torch_derive`` and :func:`_replay`).  A held output that a later op would overwrite
in place is copied just before; for in-place ops hidden inside a leaf's ``forward`` the
tensor's version counter reveals the change after the pass, and the pass is repeated
copying the overwritten outputs as they are made (remembered per model, so the next
capture of that model copies them at once and runs once).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

import weakref

from convlens.errors import ConvlensError, ModelError
from convlens.trace import Deferred, LazyStages, Stage
from convlens.capture.options import CaptureOptions, model_failed
from convlens.capture.torch_derive import Settings, same_settings, settings_now
from convlens.capture.torch_describe import _kind, describe_module
from convlens.capture.torch_pass import Record, device_dtype, run_pass
from convlens.capture.torch_plan import Plan, cached_plan, plan_for
from convlens.capture.torch_weights import shared_views
from convlens.capture.torch_pass import first_tensor as _first_tensor

__all__ = ["capture_torch", "describe_module", "expected_channels", "expected_input"]


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    if not leaves:  # the model is itself one layer
        leaves = [(type(model).__name__.lower(), model)]
    return leaves


def expected_input(model: nn.Module) -> tuple[int | None, None]:
    """What input a PyTorch model declares: its first conv layer's channels, no size."""
    return expected_channels(model), None


def expected_channels(model: nn.Module) -> int | None:
    """Input channels of the first conv layer (or None when there is none)."""
    for _, m in _leaves(model):
        if _kind(m) == "conv":
            return int(m.in_channels)
    return None


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


def _stages(records: list[Record], plan: Plan, opts: CaptureOptions, final: Any,
            model_input: torch.Tensor) -> LazyStages:
    """The Stages of ``records``, made when the Trace's stages are first read; what they
    are made from is fixed now (the weight copies are taken here)."""
    leaves = plan.leaves
    copies = plan.copies()  # (the recipes use them whatever ``weights`` says)
    settings = settings_now()
    mode = opts.weights

    def make() -> list[Stage]:
        if mode == "copy":
            weights = {k: v[0] for k, v in copies.items()}
        elif mode == "share":  # (views of the model's memory: they follow the model)
            weights = shared_views(list({r.leaf: leaves[r.leaf] for r in records}.values()))
        else:
            weights = {id(m): {} for m in leaves}
        stages: list[Stage] = []
        ops = [type(m).__name__ for m in leaves]
        params = plan.params
        trusted = Stage._trusted
        for i, r in enumerate(records):
            if r.leaf < 0 and r.recipe is not None:  # an op computed again when read
                func, template, kwargs, inplace = r.recipe
                srcs = [s_ for s_ in r.sources if s_ >= 0]
                fn = partial(_replay, func, template, kwargs, inplace, stages, model_input,
                             r.weights, settings)
                stages.append(trusted(i, r.name, r.kind, r.op,
                                      Deferred(fn, r.value, after=stages[srcs[0]] if srcs else None),
                                      r.params, r.weights if mode != "none" else {}, r.source,
                                      r.sources))
                continue
            if r.leaf < 0:  # an op run between modules (its operand weights copied then)
                out = _to_numpy(r.value)
                p = r.params
                if r.last:
                    out, p = _first_channels(out), {**p, "layout": "channels_last"}
                stages.append(trusted(i, r.name, r.kind, r.op, out, p,
                                      r.weights if mode != "none" else {}, r.source,
                                      r.sources))
                continue
            m = leaves[r.leaf]
            if r.recipe is not None:  # (from an earlier stage, or the model input: -1)
                source = stages[r.source] if r.source >= 0 else None
                copy = copies.get(id(m))
                fn = partial(_recompute, r.recipe, model_input if source is None else source,
                             copy[1] if copy else {}, settings)
                if r.last:
                    fn = partial(_then_first, fn)
                    shape = tuple(r.value)
                    output: Any = Deferred(fn, (shape[0], shape[3], shape[1], shape[2]),
                                           after=source)
                else:
                    output = Deferred(fn, r.value, after=source)
            else:
                output = _to_numpy(r.value)
                if r.last:
                    output = _first_channels(output)
            p = dict(params[r.leaf])  # (each stage its own dict: a module called twice)
            if r.last:
                p["layout"] = "channels_last"
            stages.append(trusted(i, r.name, r.kind, ops[r.leaf], output, p,
                                  dict(weights[id(m)]), r.source, r.sources))
        return stages

    last = records[-1] if records else None
    names = lambda: [r.name for r in records]  # noqa: E731
    if last is None:
        return LazyStages(make, 0, names, None, False)
    shape = tuple(last.value) if last.recipe is not None else tuple(last.value.shape)
    held = last.recipe is None and last.value is final and final._version == last.version
    return LazyStages(make, len(records), names, shape, held)


def _first_channels(a: np.ndarray) -> np.ndarray:
    """A channels-last ``(B, H, W, C)`` map as convlens shows every map: ``(B, C, H, W)``."""
    return np.ascontiguousarray(np.moveaxis(a, 3, 1))


def _then_first(fn: Any) -> np.ndarray:
    return _first_channels(fn())


def _replay(func: Any, template: tuple, kwargs: dict, inplace: bool, stages: list,
            model_input: torch.Tensor, weights: dict, settings: Settings) -> np.ndarray:
    """The deferred output of an op run between modules: the same function, on the
    outputs of the stages it read (the model input unchanged: the pass checked) and the
    copies of the weights it read, under the capture's settings.  An in-place op runs on
    a copy of its first argument."""
    def value(mark: tuple) -> Any:
        tag = mark[0]
        if tag == "s":
            k = mark[1]
            return model_input if k < 0 else torch.from_numpy(stages[k].output)
        if tag == "w":
            return torch.from_numpy(weights[mark[1]])
        if tag == "l":
            return mark[2](value(m) for m in mark[1])
        return mark[1]

    args = [value(m) for m in template]
    if inplace and args and isinstance(args[0], torch.Tensor):
        args[0] = args[0].clone()
    with torch.no_grad(), same_settings(settings):
        out = func(*args, **kwargs)
    if inplace and out is None:
        out = args[0]
    return _to_numpy(out)


def _recompute(fn: Any, source: Stage | torch.Tensor, tensors: dict[str, torch.Tensor],
               settings: Settings) -> np.ndarray:
    """The deferred output of a derived stage: ``fn`` on the source stage's output (or on
    the model input tensor, unchanged: the pass checked), under the capture's settings."""
    x = source if isinstance(source, torch.Tensor) else torch.from_numpy(source.output)
    with torch.no_grad(), same_settings(settings):  # (the layer saw a contiguous input)
        return fn(x.contiguous(), tensors).numpy()


_INPLACE_HINT: "weakref.WeakKeyDictionary[nn.Module, frozenset[str]]" = weakref.WeakKeyDictionary()
"""Per model, the stages an in-place op inside some ``forward`` overwrote last time: the
next capture copies them as their layers return instead of running the model twice."""


def _record(model: nn.Module, make_input: Any, keep, opts: CaptureOptions,
            plan: Plan) -> tuple[Any, Any, list[str]]:
    """The recorded pass (and, when an unforeseen in-place op overwrote a held output or
    the model's input, the pass again on a fresh input with that output copied as its
    layer returns).  ``make_input()`` gives the model an input of its own each time: a
    model that writes into its input changes neither the Trace's ``model_input`` nor the
    next pass."""
    xt = make_input()
    convert, sink = _converter(opts), opts.sink()
    if torch.is_inference_mode_enabled():  # inference tensors have no version counter
        convert = convert or (lambda t: t.detach().clone())
    copy: frozenset[str] = _INPLACE_HINT.get(model, frozenset()) if convert is None else frozenset()
    for attempt in range(3):
        if attempt:
            xt = make_input()
        records, output, mutated, notices = run_pass(model, xt, plan, keep, copy, convert, sink)
        if not mutated:
            break
        copy = copy | mutated  # an in-place op inside some forward(): repeat, copying those
    else:
        xt = make_input()
        records, output, _, notices = run_pass(model, xt, plan, keep,
                                               convert=lambda t: t.detach().clone())
    if convert is None:
        if copy:
            _INPLACE_HINT[model] = copy
        else:
            _INPLACE_HINT.pop(model, None)
    return _stages(records, plan, opts, _first_tensor(output), xt), output, notices


def capture_torch(model: nn.Module, x: np.ndarray, keep,
                  options: CaptureOptions | None = None) -> tuple[list, np.ndarray, str, list[str]]:
    """Run ``model`` on the channels-first batch ``x`` and record every leaf call.

    Returns the Stage list, the model's own output and the model's name.
    """
    opts = options or CaptureOptions()
    device, dtype = device_dtype(model)
    x = np.ascontiguousarray(x)

    def make_input() -> torch.Tensor:  # the model's own copy (see _record)
        t = torch.from_numpy(x).to(device=device, dtype=dtype)
        return t.clone() if t.data_ptr() == x.ctypes.data else t
    plan = cached_plan(model)
    if plan is None:
        training = _training(model)
    else:  # (the plan lists every module below the model: no walk)
        training = plan.training()
        if model.training:
            training.append(model)
    modes = {m: m.training for m in training} if training else None
    try:
        if modes:  # nothing to switch (and nothing to restore) when already in eval mode
            model.eval()
        plan = plan_for(model, plan)  # (made in eval mode, checked in eval mode)
        with torch.no_grad():
            try:
                stages, output, notices = _record(model, make_input, keep, opts, plan)
            except ConvlensError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise model_failed(type(model).__name__, x.shape, exc) from None
    finally:
        for m, mode in (modes or {}).items():
            m.training = mode
    out = _first_tensor(output)
    if out is None:
        raise ModelError(f"{type(model).__name__} returned {type(output).__name__}; expected a tensor")
    return stages, _to_numpy(out), type(model).__name__, _summarised(notices)


def _summarised(notices: list[str]) -> list[str]:
    """One line for what the pass computed but could not make stages of."""
    if not notices:
        return []
    shown = "; ".join(notices[:5])
    more = f" (and {len(notices) - 5} more)" if len(notices) > 5 else ""
    return [f"{len(notices)} computed value(s) are not stages: {shown}{more}"]