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

from .base import Attribution, mass_fraction
from .gradcam import CAM_METHODS, cam, gradcam, gradcam_plus_plus, layercam
from .maximize import Maximization, maximize, maximize_figure
from .overlay import overlay, overlay_map
from .saliency import GRADIENT_METHODS, gradient_x_input, saliency, smoothgrad
from .sanity import SanityReport, SanityStep, sanity, sanity_figure, spearman, ssim
from .stimuli import Stimulus, TopStimuli, stimuli_figure, top_stimuli

__all__ = [
    "Attribution", "mass_fraction",
    "cam", "gradcam", "gradcam_plus_plus", "layercam", "CAM_METHODS",
    "saliency", "smoothgrad", "gradient_x_input", "GRADIENT_METHODS",
    "maximize", "Maximization", "maximize_figure",
    "top_stimuli", "TopStimuli", "Stimulus", "stimuli_figure",
    "sanity", "SanityReport", "SanityStep", "sanity_figure", "spearman", "ssim",
    "overlay", "overlay_map",
]
