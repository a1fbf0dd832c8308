"""``Figure``: what every plot function returns (a picture plus what it shows)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Figure", "save_png"]


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save a PNG deterministically (no timestamps or other metadata; fixed compression)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False, compress_level=6)
    return path


@dataclass(eq=False)
class Figure:
    """A rendered picture.  ``image`` is a Pillow RGB image; ``meta`` says what it shows
    (stage names, shapes, the value range each colour scale maps)."""

    image: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.size

    def to_array(self) -> np.ndarray:
        """The pixels as a ``(H, W, 3)`` uint8 array."""
        return np.asarray(self.image.convert("RGB"))

    def save(self, path: str | Path) -> Path:
        """Write a PNG (byte-identical for the same inputs); returns the path."""
        return save_png(self.image, path)

    def to_png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()

    def _repr_png_(self) -> bytes:  # Jupyter
        return self.to_png_bytes()

    def _repr_html_(self) -> str:  # Jupyter: at its own size, with what it shows
        from convlens.trace import _view  # display/ registers it: render imports no consumer

        return _view("figure_html")(self)
