"""Errors convlens raises for user mistakes.

Every error is one line that says what was expected, what was received and what
to do.  Each kind is also a built-in exception (``ValueError`` / ``TypeError``)
so callers can catch either.  The CLI turns any ``ConvlensError`` into that one
line on stderr and exit status 2.
"""
from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "nearest",
    "did_you_mean",
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


def nearest(word: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6,
            close: bool = False) -> list[str]:
    """The few ``choices`` nearest ``word`` (what every "did you mean" of convlens says),
    best first; ``close``: only those about as near as the best one."""
    found = difflib.get_close_matches(str(word), list(dict.fromkeys(map(str, choices))),
                                      n=n, cutoff=cutoff)
    if close and found:
        ratio = [difflib.SequenceMatcher(None, str(word), c).ratio() for c in found]
        found = [c for c, r in zip(found, ratio) if r >= ratio[0] - 0.1]
    return found


def did_you_mean(word: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """``"; did you mean 'run'?"`` for the nearest of ``choices``, or ``""``."""
    near = nearest(word, choices, n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in near)}?" if near else ""
