"""Errors convlens raises for user mistakes.

Every error is one line that says what was expected, what was received and what
to do.  Each kind is also a built-in exception (``ValueError`` / ``TypeError``)
so callers can catch either.  The CLI turns any ``ConvlensError`` into that one
line on stderr and exit status 2.
"""
from __future__ import annotations

__all__ = [
    "ConvlensError",
    "ImageError",
    "ModelError",
    "CaptureError",
    "SpecError",
    "TraceError",
    "RenderError",
]


class ConvlensError(Exception):
    """Base class of every error convlens raises on purpose."""

    def __init__(self, message: str):
        # Keep messages to one line: a user error never needs a traceback.
        super().__init__(" ".join(str(message).split()))


class ImageError(ConvlensError, ValueError):
    """An image could not be read, or is not an image convlens can use."""


class ModelError(ConvlensError, ValueError):
    """A model file or object convlens cannot load or does not support."""


class CaptureError(ConvlensError, ValueError):
    """Capturing the stages of a forward pass failed (bad input shape, bad layer selection)."""


class SpecError(ConvlensError, ValueError):
    """A toy-network spec such as ``"conv(3, 3x3) relu maxpool(5)"`` is malformed."""


class TraceError(ConvlensError, ValueError):
    """A Trace file is unreadable, or a stage asked for does not exist."""


class RenderError(ConvlensError, ValueError):
    """A rendering option is invalid for the data given."""
