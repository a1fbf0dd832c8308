"""convlens: see what a convolutional network does to an image, stage by stage.

    import convlens
    trace = convlens.capture(model, convlens.cat())   # torch.nn.Module or keras.Model
    convlens.render.journey(trace).save("journey.png")

``import convlens`` imports neither torch nor keras; the capture adapters and
network builders import them when they are first needed.
"""
from __future__ import annotations

from . import ops, render
from .capture import capture
from .comparison import compare
from .errors import (
    CaptureError, ConvlensError, ImageError, ModelError, RenderError, SpecError, TraceError,
)
from .digits import digits
from .images import as_batch, cat, load_image, resize
from .models import LoadedModel, load_model
from .nets import build, parse_spec
from .pipeline import make_trace
from .preprocess import Preprocess
from .trace import STAGE_KINDS, Stage, Trace

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # images in
    "load_image", "cat", "digits", "as_batch", "resize", "Preprocess",
    # capture
    "capture", "make_trace", "Trace", "Stage", "STAGE_KINDS",
    # networks and models
    "build", "parse_spec", "load_model", "LoadedModel",
    # pictures and reference maths
    "render", "ops", "compare",
    # errors
    "ConvlensError", "ImageError", "ModelError", "CaptureError", "SpecError", "TraceError",
    "RenderError",
]
