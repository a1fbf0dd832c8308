"""convlens: see what a convolutional network does to an image, stage by stage."""
from __future__ import annotations

from .errors import (
    CaptureError, ConvlensError, ImageError, ModelError, RenderError, SpecError, TraceError,
)
from .trace import STAGE_KINDS, Stage, Trace

__version__ = "0.1.0"
