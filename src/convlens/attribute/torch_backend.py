"""Gradient plumbing for PyTorch models: the capture's own walker (``torch_pass.run_pass``:
each module's ``forward`` wrapped and the ops between modules seen for one pass, removed
in ``finally``) records the stages asked for, and ``torch.autograd.grad`` computes one
vector-Jacobian product — so no ``.grad`` is ever written into the model.

The model runs in eval mode for the pass (batch norm uses its running statistics and
updates nothing) and every module's train/eval flag is restored afterwards; weights and
``requires_grad`` are never touched.  A recorded output is handed on as a copy, so an
in-place op further on (``ReLU(inplace=True)``) cannot overwrite the value whose gradient
is asked for.  Stages, names and kinds are the ones :func:`convlens.capture` gives, by
construction (one walker).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from convlens.capture.torch import _leaves, describe_module
from convlens.capture.torch_pass import StopPass, run_pass
from convlens.capture.torch_pass import first_tensor as _first_tensor
from convlens.capture.options import model_failed
from convlens.capture.torch_plan import cached_plan, plan_for
from convlens.errors import ConvlensError, ModelError
from convlens.trace import nearest_names
from convlens.attribute.base import LOGITS, Backend, Pass, Seed, StageInfo, wanted_stages

__all__ = ["TorchBackend"]

_SOFTMAX = ("softmax", "log_softmax")


def _live(t: torch.Tensor) -> torch.Tensor:
    """Records hold the live tensors (with their autograd history), nothing computed again."""
    return t


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


class TorchBackend(Backend):
    framework = "torch"

    def __init__(self, model: nn.Module):
        if isinstance(model, torch.jit.ScriptModule):
            raise ModelError("attribution needs the Python nn.Module; a TorchScript module "
                             "runs outside Python where hooks cannot reach its layers — "
                             "pass the nn.Module itself")
        self.model = model
        self.name = type(model).__name__
        self._leaves = _leaves(model)
        self._info = {id(m): (name, *describe_module(m)) for name, m in self._leaves}

    def _param(self) -> tuple[torch.device, torch.dtype]:
        for p in self.model.parameters():
            return p.device, (p.dtype if p.is_floating_point() else torch.float32)
        return torch.device("cpu"), torch.float32

    def run(self, x: np.ndarray, keep: Sequence[str] = (),
            objective: tuple[str, Seed] | None = None, input_grad: bool = False,
            stop_early: bool = False) -> Pass:
        device, dtype = self._param()
        grad = objective is not None
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
        if grad and input_grad:
            xt.requires_grad_(True)
        want, target = wanted_stages(keep, objective)
        stages: list[StageInfo] = []
        tensors: dict[str, torch.Tensor] = {}
        softmax: list[tuple[torch.Tensor, torch.Tensor]] = []
        can_stop = stop_early and target != LOGITS and bool(want)

        plan_params = None

        def substitute(rec: Any, args: tuple, out: torch.Tensor) -> Any:
            params = rec.params if rec.leaf < 0 else plan_params[rec.leaf]
            stages.append(StageInfo(rec.name, rec.kind, tuple(int(s) for s in out.shape[1:]),
                                    str(params.get("function", ""))))
            soft = rec.kind == "activation" and params.get("function") in _SOFTMAX
            if soft:
                inp = _first_tensor(args)
                if inp is not None:
                    softmax.append((inp, out))
            if rec.name not in want:
                return None
            tensors[rec.name] = out
            if can_stop and want <= tensors.keys():
                raise StopPass
            copy_ = out.clone()  # later in-place ops act on a copy
            if soft and softmax and softmax[-1][1] is out:
                softmax[-1] = (softmax[-1][0], copy_)
            return copy_

        modes = {m: m.training for m in self.model.modules()}
        output: Any = None
        try:
            self.model.eval()
            with torch.set_grad_enabled(grad):
                try:
                    # the capture's own walker: the same stages, names and kinds by construction
                    plan = plan_for(self.model, cached_plan(self.model))
                    plan_params = plan.params
                    _, output, _, _ = run_pass(self.model, xt.clone() if xt.requires_grad else xt,
                                               plan, None, convert=_live, substitute=substitute)
                except ConvlensError:
                    raise
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    raise model_failed(self.name, x.shape, exc) from None
                out_t = _first_tensor(output)
                obj_name, obj_t = target, None
                if target == LOGITS:
                    if out_t is None:
                        raise ModelError(f"{self.name} returned {type(output).__name__}; "
                                         "expected a tensor of class scores")
                    obj_t = out_t
                    obj_name = stages[-1].name if stages else "output"
                    if softmax and softmax[-1][1] is out_t:  # ends in a softmax: its input
                        obj_t = softmax[-1][0]
                        obj_name = stages[-2].name if len(stages) > 1 else "logits"
                elif target is not None:
                    obj_t = tensors.get(target)
                values = {k: _numpy(t) for k, t in tensors.items() if k in keep}
                if obj_t is None:
                    if target is not None:
                        return self._missing(target, stages)
                    return Pass(stages, values, {})
                value = _numpy(obj_t)
                seed = np.asarray(objective[1](value), dtype=np.float32)  # type: ignore[index]
                seed_t = torch.from_numpy(seed).to(device=obj_t.device, dtype=obj_t.dtype)
                inputs = [tensors[k] for k in keep if k in tensors]
                if input_grad:
                    inputs.append(xt)
                grads_t = torch.autograd.grad(obj_t, inputs, grad_outputs=seed_t,
                                              allow_unused=True) if inputs else ()
        finally:
            for m, training in modes.items():
                m.training = training
        names = [k for k in keep if k in tensors] + (["input"] if input_grad else [])
        grads = {k: (_numpy(g) if g is not None else None) for k, g in zip(names, grads_t)}
        objective_values = (value.astype(np.float64) * seed).reshape(len(value), -1).sum(1)
        values[obj_name] = value  # type: ignore[index]
        return Pass(stages, values, grads, objective_values, obj_name)

    def _missing(self, target: str, stages: list[StageInfo]) -> Pass:
        raise ModelError(f"no stage named {target!r} in {self.name}; "
                         f"{nearest_names(target, [s.name for s in stages])}")

    # -- copies with randomised weights (sanity checks) --------------------------------
    def clone(self) -> "TorchBackend":
        return TorchBackend(copy.deepcopy(self.model))

    def _module(self, stage: str) -> nn.Module:
        base = stage.split("#")[0]
        for name, m in self._leaves:
            if name == base:
                return m
        raise ModelError(f"no layer behind stage {stage!r} in {self.name}")

    def parameter_stages(self) -> list[str]:
        return [name for name, m in self._leaves
                if any(p.requires_grad for p in m.parameters(recurse=False))]

    def randomize(self, stage: str, rng: np.random.Generator) -> None:
        with torch.no_grad():
            for p in self._module(stage).parameters(recurse=False):
                if not p.requires_grad:
                    continue
                a = p.detach().to("cpu", torch.float64).numpy()
                new = rng.normal(a.mean(), a.std(), size=a.shape)
                p.copy_(torch.from_numpy(new).to(dtype=p.dtype, device=p.device))
