"""Gradient maps of the class score with respect to the input pixels.

* **saliency** (Simonyan et al. 2014): ``max_c |dS/dx_c|`` — how much a small change of
  each pixel (its most sensitive channel) moves the class score ``S`` (the logit).
* **SmoothGrad** (Smilkov et al. 2017): the gradient averaged over ``samples`` copies of
  the input with Gaussian noise of standard deviation ``noise * (max - min)`` of that
  image's model input, then ``max_c |.|`` as above; the average removes much of the
  pixel-to-pixel jitter of plain gradients.  Seeded.
* **gradient x input**: ``sum_c x_c dS/dx_c`` — signed, the first-order contribution of
  each pixel relative to an all-zero input (in the model input's units).

Maps have the model input's resolution; ``x`` is the preprocessed input, so for a
normalised model "zero" means the dataset mean colour.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convlens.errors import ModelError
from convlens.preprocess import Preprocess
from convlens.attribute.registry import Method, register_method
from convlens.attribute.base import LOGITS, Attribution, Subject, TargetArg, class_seed, subject

__all__ = ["saliency", "smoothgrad", "gradient_x_input",
           "input_gradients"]



def input_gradients(sub: Subject, x: np.ndarray, target: TargetArg) -> tuple[np.ndarray, list[int], np.ndarray]:
    """``(dS/dx (B, C, H, W), classes used, scores (B,))`` for the model input ``x``."""
    chosen: list[int] = []
    p = sub.backend.run(x, objective=(LOGITS, class_seed(target, len(x), sub.class_names, chosen)),
                        input_grad=True)
    g = p.grads.get("input")
    if g is None:  # pragma: no cover - a model whose output ignores its input
        raise ModelError(f"the class score of {sub.name} does not depend on its input")
    return g.astype(np.float64), chosen, p.objective.astype(np.float32)


def _result(sub: Subject, method: str, maps: np.ndarray, batch: np.ndarray, chosen: list[int],
            scores: np.ndarray, signed: bool, meta: dict) -> Attribution:
    names = [sub.class_names[t] for t in chosen] if sub.class_names else None
    return Attribution(method=method, maps=maps.astype(np.float32), stage="input", images=batch,
                       targets=chosen, target_names=names, scores=scores, signed=signed,
                       framework=sub.framework, model_name=sub.name, meta=meta)


def saliency(model: Any, images: Any, target: TargetArg = None, *,
             preprocess: Preprocess | None = None) -> Attribution:
    """Plain gradient saliency ``max_c |dS/dx_c|`` (arguments as in :func:`~.gradcam.cam`)."""
    sub = subject(model, preprocess)
    batch, x = sub.prepare(images)
    g, chosen, scores = input_gradients(sub, x, target)
    return _result(sub, "saliency", np.abs(g).max(axis=1), batch, chosen, scores, False, {})


def smoothgrad(model: Any, images: Any, target: TargetArg = None, *, noise: float = 0.15,
               samples: int = 25, seed: int = 0, chunk: int = 16,
               preprocess: Preprocess | None = None) -> Attribution:
    """SmoothGrad: gradients averaged over ``samples`` noisy copies (noise level ``noise``
    as a fraction of each image's input range), then ``max_c |.|``.  The class is fixed
    first (each image's top class on the clean input unless ``target`` says otherwise),
    so every noisy copy explains the same class.  ``chunk`` copies go through at once."""
    if not (isinstance(noise, (int, float)) and 0 <= noise <= 10):
        raise ModelError(f"noise={noise!r} is not valid; expected a fraction of the input "
                         "range between 0 and 10, e.g. 0.15")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ModelError(f"samples={samples!r} is not valid; expected a positive integer")
    sub = subject(model, preprocess)
    batch, x = sub.prepare(images)
    _, chosen, scores = input_gradients(sub, x, target)
    rng = np.random.default_rng(seed)
    span = (x.reshape(len(x), -1).max(1) - x.reshape(len(x), -1).min(1))
    sigma = (noise * np.where(span > 0, span, 1.0)).reshape(-1, 1, 1, 1)
    total = np.zeros(x.shape, dtype=np.float64)
    reps = np.repeat(np.arange(len(x)), samples)
    targets = [chosen[i] for i in reps]
    for start in range(0, len(reps), max(1, int(chunk))):
        idx = reps[start:start + max(1, int(chunk))]
        noisy = x[idx] + rng.standard_normal(x[idx].shape) * sigma[idx]
        g, _, _ = input_gradients(sub, noisy.astype(np.float32),
                                  targets[start:start + len(idx)])
        np.add.at(total, idx, g)
    maps = np.abs(total / samples).max(axis=1)
    return _result(sub, "smoothgrad", maps, batch, chosen, scores, False,
                   {"noise": float(noise), "samples": int(samples), "seed": int(seed)})


def gradient_x_input(model: Any, images: Any, target: TargetArg = None, *,
                     preprocess: Preprocess | None = None) -> Attribution:
    """Gradient x input, ``sum_c x_c dS/dx_c`` (signed)."""
    sub = subject(model, preprocess)
    batch, x = sub.prepare(images)
    g, chosen, scores = input_gradients(sub, x, target)
    return _result(sub, "gxi", (g * x).sum(axis=1), batch, chosen, scores, True, {})


def _at_input(function: Any) -> Any:
    """``function`` with the common map-method signature (the stage is the input)."""
    def run(model: Any, images: Any, stage: str | None = None, target: TargetArg = None, *,
            preprocess: Preprocess | None = None, **options: Any) -> Attribution:
        return function(model, images, target, preprocess=preprocess, **options)
    return run


register_method(Method("saliency", "Saliency (|gradient|)", "gradient", _at_input(saliency)))
register_method(Method("smoothgrad", "SmoothGrad", "gradient", _at_input(smoothgrad),
                       deterministic=False, options=("noise", "samples", "seed")))
register_method(Method("gxi", "Gradient x input", "gradient", _at_input(gradient_x_input)))
