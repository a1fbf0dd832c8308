"""convlens: see what a convolutional network does to an image, stage by stage.

    import convlens
    trace = convlens.capture(model, convlens.cat())   # torch.nn.Module or keras.Model
    convlens.render.journey(trace).save("journey.png")

``import convlens`` imports neither torch nor keras; the capture adapters and
network builders import them when they are first needed.
"""
from __future__ import annotations

from convlens import analysis, display, ops, render, report  # display, report, analysis register what a Trace shows  # noqa: F401
from convlens.capture import capture
from convlens.analysis import compare
from convlens.errors import (
    CaptureError, ConvlensError, ImageError, ModelError, RenderError, SpecError, TraceError,
)
from convlens.digits import digits
from convlens.images import as_batch, cat, load_image, resize
from convlens.capture.files import LoadedModel, load_model
from convlens.nets import build, parse_spec
from convlens.pipeline import make_trace
from convlens.preprocess import Preprocess
from convlens.trace import STAGE_KINDS, Stage, Trace

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
