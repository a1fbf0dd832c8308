"""Gradient plumbing for Keras 3 models on the torch backend.

The model is called through Keras (``model(x, training=False)``, inputs made with
``keras.ops``); on the torch backend its tensors are torch tensors, so the torch
autograd engine computes the vector-Jacobian product (``torch.autograd.grad``: no
``.grad`` is written into any variable).  The pass is the capture's own
(:func:`convlens.capture.keras.run_pass`, everything installed for the one pass and
removed in ``finally``), so stages, names and kinds are capture's by construction: a
layer with a fused activation is two stages (``conv1``, the pre-activation, then
``conv1.relu``), and ``keras.ops`` calls are stages too.

Outputs are converted to convlens' channels-first layout on the way out and the seeds
back to the layer's own layout on the way in.  Other Keras backends (JAX, TensorFlow)
are refused with a one-line error.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from convlens.capture.keras import _channels_last, _leaves, run_pass
from convlens.capture.keras import _first_tensor as _first
from convlens.errors import CaptureError, ConvlensError, ModelError
from convlens.trace import nearest_names
from convlens.nets.keras_backend import import_keras
from convlens.attribute.base import LOGITS, Backend, Pass, Seed, StageInfo, wanted_stages

__all__ = ["KerasBackend"]

keras = import_keras()
_SOFTMAX = ("softmax", "log_softmax")


def _torch():
    if keras.backend.backend() != "torch":
        raise ModelError(
            f"attribution of Keras models needs the torch backend (KERAS_BACKEND=torch); "
            f"this Keras runs on {keras.backend.backend()!r} — set KERAS_BACKEND=torch before "
            "importing keras")
    import torch
    return torch


class _Layout:
    """How one stage's tensor maps to convlens' channels-first layout and back."""

    def __init__(self, channels_last: bool, kind: str, hwc: tuple[int, ...] | None = None):
        self.move = channels_last and kind != "reshape"
        self.hwc = hwc

    @classmethod
    def of(cls, r: Any) -> "_Layout":
        """The layout the capture gave a recorded stage."""
        lay = cls(False, r.kind, r.hwc)
        lay.move = bool(r.move)
        return lay

    def to_cf(self, a: np.ndarray) -> np.ndarray:
        if self.hwc is not None:
            return a.reshape(-1, *self.hwc).transpose(0, 3, 1, 2).reshape(a.shape[0], -1)
        return np.moveaxis(a, -1, 1) if self.move and a.ndim >= 3 else a

    def from_cf(self, a: np.ndarray) -> np.ndarray:
        if self.hwc is not None:
            h, w, c = self.hwc
            return a.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
        return np.moveaxis(a, 1, -1) if self.move and a.ndim >= 3 else a


class KerasBackend(Backend):
    framework = "keras"

    def __init__(self, model: Any):
        _torch()
        self.model = model
        self.name = model.name
        self._leaves = _leaves(model)
        self._channels_last = _channels_last(model)

    def run(self, x: np.ndarray, keep: Sequence[str] = (),
            objective: tuple[str, Seed] | None = None, input_grad: bool = False,
            stop_early: bool = False) -> Pass:
        torch = _torch()
        grad = objective is not None
        xin = np.transpose(x, (0, 2, 3, 1)) if self._channels_last else x
        xt = keras.ops.convert_to_tensor(np.ascontiguousarray(xin, dtype=np.float32))
        if grad and input_grad:
            xt.requires_grad_(True)
        want, target = wanted_stages(keep, objective)
        stages: list[StageInfo] = []
        tensors: dict[str, tuple[Any, _Layout]] = {}
        softmax: list[tuple[Any, Any, _Layout]] = []
        output: Any = None
        with torch.set_grad_enabled(grad):
            try:
                # the capture's own walker: the same stages, names and kinds by construction
                rec, output = run_pass(self.model, xt, None, grad=grad)
            except ConvlensError:
                raise
            except Exception as exc:  # Keras raises many exception types for bad shapes
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CaptureError(
                    f"{self.name} failed on an input of shape {tuple(xin.shape)}: {msg}; "
                    "check the image size and channels the model expects") from None
            for r in rec.recs:
                lay = _Layout.of(r)
                shape = lay.to_cf(np.empty((1, *[int(s) for s in r.tensor.shape[1:]]),
                                           np.float32)).shape
                fn = str(r.params.get("function", ""))
                stages.append(StageInfo(r.name, r.kind, tuple(shape[1:]), fn))
                if r.kind == "activation" and fn in _SOFTMAX and r.sources and r.sources[0] >= 0:
                    src = rec.recs[r.sources[0]]
                    softmax.append((src.tensor, r.tensor, _Layout.of(src)))
                if r.name in want:
                    tensors[r.name] = (r.tensor, lay)
                    if stop_early and target != LOGITS and want <= tensors.keys():
                        break  # (the Keras pass ran to its end; report as far as needed)
            return self._finish(torch, output, xt, tensors, stages, softmax, keep,
                                objective, input_grad)

    def _finish(self, torch: Any, output: Any, xt: Any, tensors: dict, stages: list,
                softmax: list, keep: Sequence[str], objective: tuple[str, Seed] | None,
                input_grad: bool) -> Pass:
        def numpy(t: Any, lay: _Layout) -> np.ndarray:
            return lay.to_cf(t.detach().to("cpu", torch.float32).numpy().copy())

        values = {k: numpy(*tensors[k]) for k in keep if k in tensors}
        if objective is None:
            return Pass(stages, values, {})
        target = objective[0]
        if target == LOGITS:
            out_t = _first(output)
            if out_t is None:
                raise ModelError(f"{self.name} returned {type(output).__name__}; expected a "
                                 "tensor of class scores")
            obj_t, lay = out_t, _Layout(self._channels_last, "dense")
            obj_name = stages[-1].name if stages else "output"
            if softmax and softmax[-1][1] is out_t:
                obj_t, lay = softmax[-1][0], softmax[-1][2]
                obj_name = stages[-2].name if len(stages) > 1 else "logits"
        elif target in tensors:
            obj_t, lay = tensors[target]
            obj_name = target
        else:
            raise ModelError(f"no stage named {target!r} in {self.name}; "
                             f"{nearest_names(target, [s.name for s in stages])}")
        value = numpy(obj_t, lay)
        seed = np.asarray(objective[1](value), dtype=np.float32)
        seed_t = torch.from_numpy(np.ascontiguousarray(lay.from_cf(seed))).to(
            device=obj_t.device, dtype=obj_t.dtype)
        names = [k for k in keep if k in tensors]
        inputs = [tensors[k][0] for k in names] + ([xt] if input_grad else [])
        grads_t = torch.autograd.grad(obj_t, inputs, grad_outputs=seed_t,
                                      allow_unused=True) if inputs else ()
        grads: dict[str, np.ndarray | None] = {}
        for k, g in zip(names, grads_t):
            grads[k] = numpy(g, tensors[k][1]) if g is not None else None
        if input_grad:
            g = grads_t[-1]
            grads["input"] = None if g is None else numpy(g, _Layout(self._channels_last, "conv"))
        values[obj_name] = value
        obj = (value.astype(np.float64) * seed).reshape(len(value), -1).sum(1)
        return Pass(stages, values, grads, obj, obj_name)

    # -- copies with randomised weights (sanity checks) --------------------------------
    def clone(self) -> "KerasBackend":
        try:
            copy = keras.models.clone_model(self.model)
        except Exception as exc:
            raise ModelError(f"cannot copy Keras model {self.name!r} to randomise its weights "
                             f"({type(exc).__name__}: {exc}); the sanity check needs a "
                             "Sequential or functional model") from None
        copy.set_weights(self.model.get_weights())
        return KerasBackend(copy)

    def _layer(self, stage: str) -> Any:
        base = stage.split("#")[0]
        for layer in self._leaves:
            if layer.name == base:
                return layer
        raise ModelError(f"no layer behind stage {stage!r} in {self.name}")

    def parameter_stages(self) -> list[str]:
        return [layer.name for layer in self._leaves if layer.trainable_weights]

    def randomize(self, stage: str, rng: np.random.Generator) -> None:
        for v in self._layer(stage).trainable_weights:
            a = np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float64)
            v.assign(rng.normal(a.mean(), a.std(), size=a.shape).astype(v.dtype))
