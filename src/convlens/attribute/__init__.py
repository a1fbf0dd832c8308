"""Where a network looks, and what a channel wants.

    from convlens import attribute
    from convlens.nets import zoo

    zm = zoo.load("efficientnet-lite0")
    a = attribute.gradcam(zm, convlens.cat())        # top class, last spatial stage
    attribute.overlay(a).save("gradcam.png")
    attribute.sanity(zm, convlens.cat()).summary()   # does the map depend on the weights?
    m = attribute.maximize(zm, "blocks.8.project.bn", [0, 1, 2], size=128)

Every function takes a ``torch.nn.Module``, a ``keras.Model`` (torch backend), a zoo
model or a loaded model, names stages as :func:`convlens.capture` does, and leaves the
model exactly as it was (modes, ``requires_grad``, hooks, no ``.grad``).  See
``docs/attribute.md``.
"""
from __future__ import annotations

from typing import Any

from convlens.errors import ModelError
from convlens.preprocess import Preprocess
from convlens.attribute.base import TargetArg

from convlens.attribute.base import Attribution, mass_fraction
from convlens.attribute.registry import Method, method_named, methods, register_method
from convlens.attribute.gradcam import cam, gradcam, gradcam_plus_plus, layercam
from convlens.attribute.maximize import Maximization, maximize, maximize_figure
from convlens.attribute.overlay import overlay, overlay_map
from convlens.attribute.saliency import gradient_x_input, saliency, smoothgrad
from convlens.attribute.sanity import SanityReport, SanityStep, sanity, sanity_figure, spearman, ssim
from convlens.attribute.stimuli import Stimulus, TopStimuli, stimuli_figure, top_stimuli

__all__ = [
    "Attribution", "mass_fraction", "attribute", "Method", "methods", "method_named",
    "register_method",
    "cam", "gradcam", "gradcam_plus_plus", "layercam",
    "saliency", "smoothgrad", "gradient_x_input",
    "maximize", "Maximization", "maximize_figure",
    "top_stimuli", "TopStimuli", "Stimulus", "stimuli_figure",
    "sanity", "SanityReport", "SanityStep", "sanity_figure", "spearman", "ssim",
    "overlay", "overlay_map",
]


def attribute(model: Any, images: Any, method: str = "gradcam", stage: str | None = None,
              target: TargetArg = None, *, preprocess: Preprocess | None = None,
              **options: Any) -> Attribution:
    """Any registered map method by name (``convlens.attribute.registry()``): a CAM at
    ``stage`` or a gradient map at the input; ``options`` are the method's own
    (``noise``, ``samples``, ``seed`` for SmoothGrad)."""
    m = method_named(method, "cam", "gradient")
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        raise ModelError(f"{method} takes no option {unknown[0]!r}; expected "
                         f"{', '.join(m.options) or 'none'}")
    return m.function(model, images, stage, target, preprocess=preprocess, **options)
