"""Compact activations for the browser: 8 bits per value plus a scale per channel.

A channel ``x`` (float32) travels as ``q = round((x - lo) / (hi - lo) * 255)`` (uint8)
with its ``lo`` and ``hi``; the browser reads ``lo + q * (hi - lo) / 255`` back, so a
value is off by at most ``(hi - lo) / 510``.  ``lo``/``hi`` are the channel's real
minimum and maximum at full resolution (finite values only), so colour scales built
from them state the real range even when the picture was downsampled.

Responses that carry arrays are one binary *frame*::

    b"CLv1" | uint32 LE header length | UTF-8 JSON header | zero padding to 8 |
    blob 0 | padding to 8 | blob 1 | ...

``header["blobs"]`` lists each blob's ``[offset, length]`` from the end of the padded
header.  :func:`pack` writes a frame, :func:`unpack` reads one (the browser's
``api.js`` does the same).
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

__all__ = [
    "MAGIC", "pack", "unpack", "finite_minmax", "channel_ranges", "downsample",
    "quantize", "dequantize", "encode_channels",
]

MAGIC = b"CLv1"
_ALIGN = 8


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def pack(header: dict[str, Any], blobs: list[bytes | np.ndarray]) -> bytes:
    """One frame: the JSON ``header`` (``"blobs"`` is added) and the byte blobs."""
    raw = [b.tobytes() if isinstance(b, np.ndarray) else bytes(b) for b in blobs]
    table, pos = [], 0
    for b in raw:
        table.append([pos, len(b)])
        pos += len(b) + _pad(len(b))
    head = json.dumps({**header, "blobs": table}, separators=(",", ":"), allow_nan=False)
    hb = head.encode("utf-8")
    parts = [MAGIC, struct.pack("<I", len(hb)), hb, b"\0" * _pad(8 + len(hb))]
    for b in raw:
        parts += [b, b"\0" * _pad(len(b))]
    return b"".join(parts)


def unpack(frame: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """``(header, blobs)`` of a frame written by :func:`pack`."""
    if frame[:4] != MAGIC or len(frame) < 8:
        raise ValueError("not a convlens frame (bad magic); expected bytes written by pack()")
    (n,) = struct.unpack("<I", frame[4:8])
    header = json.loads(frame[8:8 + n].decode("utf-8"))
    base = 8 + n + _pad(8 + n)
    blobs = [frame[base + off: base + off + length] for off, length in header["blobs"]]
    return header, blobs


def finite_minmax(x: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values of ``x``; None when it holds none."""
    if x.size == 0:
        return None
    lo, hi = float(np.min(x)), float(np.max(x))
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = x[np.isfinite(x)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def channel_ranges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel finite ``(lo, hi)`` of ``x`` ``(C, ...)``, float64 (0, 0 for no data)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(axis=1).astype(np.float64)
    hi = flat.max(axis=1).astype(np.float64)
    bad = ~(np.isfinite(lo) & np.isfinite(hi))
    for c in np.flatnonzero(bad):
        r = finite_minmax(flat[c])
        lo[c], hi[c] = r if r is not None else (0.0, 0.0)
    return lo, hi


def downsample(x: np.ndarray, max_side: int) -> np.ndarray:
    """``(C, H, W)`` reduced by block means so that ``max(H, W) <= max_side``.

    The factor is the smallest integer that fits; edge blocks may be smaller (their
    mean is over the pixels they hold).  ``max_side <= 0`` or a small map: unchanged.
    """
    h, w = x.shape[-2:]
    if max_side <= 0 or max(h, w) <= max_side:
        return x
    f = -(-max(h, w) // max_side)
    rows, cols = np.arange(0, h, f), np.arange(0, w, f)
    s = np.add.reduceat(np.add.reduceat(x, rows, axis=-2, dtype=np.float64), cols, axis=-1)
    nr = np.minimum(rows + f, h) - rows
    nc = np.minimum(cols + f, w) - cols
    return (s / (nr[:, None] * nc[None, :])).astype(np.float32)


def quantize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """uint8 codes of ``x`` ``(C, ...)`` on each channel's ``[lo, hi]`` (NaN -> 0)."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    lo_ = np.asarray(lo, dtype=np.float64).reshape(shape)
    span = (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)).reshape(shape)
    step = np.where(span > 0, span / 255.0, 1.0)
    with np.errstate(invalid="ignore"):
        q = np.rint((x - lo_) / step)
    return np.nan_to_num(np.clip(q, 0, 255), nan=0.0).astype(np.uint8)


def dequantize(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The values the browser reads back: ``lo + q * (hi - lo) / 255`` (float64)."""
    shape = (-1,) + (1,) * (q.ndim - 1)
    lo_ = np.asarray(lo, dtype=np.float64).reshape(shape)
    span = (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)).reshape(shape)
    return lo_ + q.astype(np.float64) * span / 255.0


def encode_channels(x: np.ndarray, max_side: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    """Encode channels ``(C, H, W)``: ``(description, uint8 codes (C, h, w))``.

    The description holds the sent size ``h``, ``w``, the full size and each channel's
    real ``lo``/``hi`` (from the full-resolution data).
    """
    lo, hi = channel_ranges(x)
    small = downsample(x, max_side)
    q = quantize(small, lo, hi)
    desc = {
        "channels": int(x.shape[0]), "h": int(q.shape[1]), "w": int(q.shape[2]),
        "full_h": int(x.shape[1]), "full_w": int(x.shape[2]),
        "lo": [float(v) for v in lo], "hi": [float(v) for v in hi],
    }
    return desc, q
