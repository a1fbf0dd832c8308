"""Class activation maps: Grad-CAM, Grad-CAM++ and Layer-CAM, one base and three small variants.

For a spatial stage with activations ``A`` (channels ``k``, positions ``i, j``) and the
gradient ``g = dS / dA`` of the class score ``S`` (the logit):

* **Grad-CAM** (Selvaraju et al. 2017): ``relu(sum_k w_k A_k)`` with
  ``w_k = mean_ij g_kij`` — channels weighted by how much the class score rises with them.
* **Grad-CAM++** (Chattopadhay et al. 2018): the same sum with
  ``w_k = sum_ij a_kij relu(g_kij)``, ``a = g^2 / (2 g^2 + sum_ij(A_k) g^3)`` (0 where
  the denominator is 0) — the closed form for an exponential of the score, with second
  and third derivatives replaced by powers of the first, as the paper does.
* **Layer-CAM** (Jiang et al. 2021): ``relu(sum_k relu(g_k) * A_k)`` — a weight per
  position, so it stays sharp at early stages.

The map has the stage's resolution; :meth:`Attribution.upsampled` stretches it to the image.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from convlens.errors import ModelError
from convlens.preprocess import Preprocess
from convlens.attribute.registry import Method, method_named, register_method
from convlens.attribute.base import LOGITS, Attribution, Subject, TargetArg, class_seed, spatial_stages, subject

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM",
           "cam", "gradcam", "gradcam_plus_plus", "layercam", "default_stage"]



def default_stage(sub: Subject, x: np.ndarray) -> str:
    """The last spatial stage (more than 1x1) of the model on this input."""
    stages = spatial_stages(sub.backend.stages(x[:1]))
    if not stages:
        raise ModelError(f"{sub.name} has no spatial stage larger than 1x1 on a "
                         f"{x.shape[2]}x{x.shape[3]} input; class activation maps need one")
    return stages[-1].name


class CAM:
    """The shared recipe: one pass that keeps ``A`` and ``dS/dA``, then :meth:`combine`."""

    method: ClassVar[str] = ""

    def combine(self, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """``(B, h, w)`` maps from activations and gradients ``(B, C, h, w)`` (float64)."""
        w = self.weights(acts, grads)
        return np.maximum(np.einsum("bc,bchw->bhw", w, acts), 0.0)

    def weights(self, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, model: Any, images: Any, stage: str | None = None,
                 target: TargetArg = None, *, preprocess: Preprocess | None = None) -> Attribution:
        sub = subject(model, preprocess)
        batch, x = sub.prepare(images)
        stage = stage or default_stage(sub, x)
        chosen: list[int] = []
        p = sub.backend.run(x, keep=[stage],
                            objective=(LOGITS, class_seed(target, len(x), sub.class_names, chosen)))
        info = {s.name: s for s in p.stages}
        usable = [s.name for s in spatial_stages(p.stages)]
        if stage not in info or stage not in usable:
            why = ("no such stage" if stage not in info else
                   f"its output is {info[stage].shape_str}, not a spatial map larger than 1x1")
            raise ModelError(f"cannot compute {self.method} at stage {stage!r} ({why}); "
                             f"stages that can: {', '.join(usable) or '(none)'}")
        g = p.grads.get(stage)
        if g is None:
            raise ModelError(f"stage {stage!r} does not influence the class score of "
                             f"{sub.name}; stages that can: {', '.join(usable)}")
        maps = self.combine(p.values[stage].astype(np.float64), g.astype(np.float64))
        names = [sub.class_names[t] for t in chosen] if sub.class_names else None
        return Attribution(
            method=self.method, maps=maps.astype(np.float32), stage=stage, images=batch,
            targets=list(chosen), target_names=names,
            scores=p.values[p.objective_stage][np.arange(len(chosen)), chosen].astype(np.float32),
            signed=False, framework=sub.framework, model_name=sub.name,
            meta={"score_stage": p.objective_stage, "stage_shape": info[stage].shape_str},
        )


class GradCAM(CAM):
    method = "gradcam"

    def weights(self, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads.mean(axis=(2, 3))


class GradCAMPlusPlus(CAM):
    method = "gradcam++"

    def weights(self, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
        g2, g3 = grads ** 2, grads ** 3
        denom = 2.0 * g2 + acts.sum(axis=(2, 3), keepdims=True) * g3
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
        return (alpha * np.maximum(grads, 0.0)).sum(axis=(2, 3))


class LayerCAM(CAM):
    method = "layercam"

    def combine(self, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return np.maximum((np.maximum(grads, 0.0) * acts).sum(axis=1), 0.0)


for _cls, _title in ((GradCAM, "Grad-CAM"), (GradCAMPlusPlus, "Grad-CAM++"),
                     (LayerCAM, "Layer-CAM")):
    register_method(Method(_cls.method, _title, "cam", _cls()))


def cam(model: Any, images: Any, stage: str | None = None, target: TargetArg = None, *,
        method: str = "gradcam", preprocess: Preprocess | None = None) -> Attribution:
    """A class activation map of ``images`` for ``target`` at ``stage``.

    ``model``: a ``torch.nn.Module``, a ``keras.Model``, a zoo model or a loaded model.
    ``images``: anything :func:`convlens.as_batch` takes (one image, a batch, paths).
    ``stage``: a spatial stage name as :func:`convlens.capture` names it (default: the
    last spatial stage).  ``target``: a class index or name, one per image, or ``None``
    for each image's top class.  ``method``: ``gradcam``, ``gradcam++`` or ``layercam``.
    ``preprocess``: how images become model input (default: the zoo model's, or what
    the model's declared input needs).  The model is left exactly as it was.
    """
    return method_named(method, "cam").function(model, images, stage, target,
                                                 preprocess=preprocess)


def gradcam(model: Any, images: Any, stage: str | None = None, target: TargetArg = None, *,
            preprocess: Preprocess | None = None) -> Attribution:
    """Grad-CAM (see :func:`cam`)."""
    return GradCAM()(model, images, stage, target, preprocess=preprocess)


def gradcam_plus_plus(model: Any, images: Any, stage: str | None = None,
                      target: TargetArg = None, *,
                      preprocess: Preprocess | None = None) -> Attribution:
    """Grad-CAM++ (see :func:`cam`)."""
    return GradCAMPlusPlus()(model, images, stage, target, preprocess=preprocess)


def layercam(model: Any, images: Any, stage: str | None = None, target: TargetArg = None, *,
             preprocess: Preprocess | None = None) -> Attribution:
    """Layer-CAM (see :func:`cam`)."""
    return LayerCAM()(model, images, stage, target, preprocess=preprocess)
