"""Packed pixels: one little-endian ``uint32`` per RGB pixel (bytes R, G, B, 255).

Drawing thousands of tiles moves one 4-byte element per pixel instead of three bytes
(NumPy copies, repeats and colour look-ups are much faster on whole elements), and Pillow
reads the buffer as ``RGBX`` (its own in-memory layout of an RGB image) in one copy.
Only the bytes change form: a packed picture converts to exactly the RGB image it holds.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["PACKED", "pack", "pack_color", "unpack", "to_image", "canvas"]

PACKED = np.dtype("<u4")
"""The packed pixel type (explicitly little-endian, so bytes are R, G, B, X everywhere)."""


def pack(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 colours as ``(...)`` packed pixels."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    out = np.empty(rgb.shape[:-1] + (4,), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out.view(PACKED)[..., 0]


def pack_color(color: tuple[int, int, int] | np.ndarray) -> int:
    """One RGB colour as a packed pixel value."""
    r, g, b = (int(v) for v in color)
    return r | (g << 8) | (b << 16) | (255 << 24)


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed pixels back to ``(..., 3)`` uint8 colours (a copy)."""
    a = np.ascontiguousarray(packed, dtype=PACKED)
    return a.view(np.uint8).reshape(a.shape + (4,))[..., :3].copy()


def to_image(packed: np.ndarray) -> Image.Image:
    """A ``(H, W)`` packed picture as a Pillow RGB image."""
    a = np.ascontiguousarray(packed, dtype=PACKED)
    h, w = a.shape
    img = Image.new("RGB", (w, h), None)  # not initialised: every byte is written next
    img.frombytes(a, "raw", "RGBX")
    return img


def canvas(height: int, width: int, color: tuple[int, int, int]) -> np.ndarray:
    """A ``(height, width)`` packed picture of one colour."""
    return np.full((height, width), pack_color(color), PACKED)
