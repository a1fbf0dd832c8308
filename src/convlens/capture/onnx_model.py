"""A loaded ONNX model, as convlens holds it: no ``onnx`` import here, so the adapter
registry can tell an ONNX model by its type without importing a framework.

:func:`convlens.load_model` makes one from a ``.onnx`` file (see
:mod:`convlens.capture.onnx`).  The model is kept as its serialised bytes (external data
already read in), which nothing can change: the onnxruntime session built for it on the
first capture serves every later capture of the same object and is never stale.  Another
``OnnxModel``, even of the same file, gets its own session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OnnxModel"]


@dataclass(eq=False)
class OnnxModel:
    """An ONNX model ready for :func:`convlens.capture`."""

    data: bytes = field(repr=False)
    """The serialised ``ModelProto`` (external data included)."""
    name: str
    """The file's name (or the graph's name)."""
    input_name: str
    input_shape: tuple[int | str | None, ...]
    """The image input's declared shape: an int per fixed axis, a name or None otherwise."""
    input_type: str
    """Its element type (``"float"``, ``"float16"``, ``"double"``...)."""
    opset: int
    """The default-domain opset the model is stamped with."""
    path: Path | None = None
    _plan: Any = field(default=None, repr=False)
    """What the first capture worked out (the instrumented onnxruntime session...)."""

    @property
    def proto(self) -> Any:
        """A fresh ``onnx.ModelProto`` of the model (changing it changes nothing here)."""
        import onnx
        return onnx.load_from_string(self.data)
