"""How ``capture()`` stores what it records: weights, output precision, memory or disk.

* ``weights="copy"`` (default): each stage's weights are a NumPy copy taken during the
  capture, so the Trace never changes when the model is trained afterwards.
  ``"share"``: read-only NumPy views of the model's own CPU float32 parameters (no copy;
  the Trace's weights *follow the model* if it is changed later; other dtypes and devices
  are copied).  ``"none"``: no weights (params are still recorded).
* ``dtype="float16"`` stores the stage outputs in half precision (half the memory; the
  values are the float32 outputs rounded to the nearest float16).
* ``store="disk"`` writes every kept stage output to ``directory`` as a ``.npy`` file the
  moment its layer returns and keeps only a read-only memory map of it, so the stages of a
  big network at a large resolution need no RAM beyond the forward pass itself.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from convlens.errors import CaptureError
from convlens.trace import Stage

__all__ = ["Weights", "StoreDtype", "Store", "CaptureOptions", "check_options", "DiskStore",
           "WEIGHTS", "STORE_DTYPES", "STORES", "finish_stages"]

Weights = Literal["copy", "share", "none"]
StoreDtype = Literal["float32", "float16"]
Store = Literal["memory", "disk"]
WEIGHTS: tuple[str, ...] = get_args(Weights)
STORE_DTYPES: tuple[str, ...] = get_args(StoreDtype)
STORES: tuple[str, ...] = get_args(Store)


def _choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if isinstance(value, bool) and what == "weights":  # weights=True/False read naturally
        return "copy" if value else "none"
    if isinstance(value, np.dtype) or value in (np.float32, np.float16):
        value = np.dtype(value).name  # type: ignore[arg-type]
    if not isinstance(value, str) or value not in choices:
        raise CaptureError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
    return value


class DiskStore:
    """Writes stage outputs as ``NNNN-name.npy`` files in one directory and hands back
    read-only memory maps.  A file of an earlier capture is replaced by a rename, never
    overwritten in place, so traces that still map it keep reading their own data."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot use {self.directory} to store stages ({exc.strerror}); "
                               "expected a writable directory") from None

    def put(self, index: int, name: str, array: np.ndarray) -> np.ndarray:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
        path = self.directory / f"{index:04d}-{safe}.npy"
        tmp = path.with_suffix(".npy.tmp")
        with open(tmp, "wb") as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


@dataclass(frozen=True)
class CaptureOptions:
    weights: Weights = "copy"
    dtype: StoreDtype = "float32"
    store: Store = "memory"
    directory: Path | None = None

    @property
    def default(self) -> bool:
        return self.weights == "copy" and self.dtype == "float32" and self.store == "memory"

    def sink(self) -> DiskStore | None:
        return DiskStore(self.directory) if self.store == "disk" else None  # type: ignore[arg-type]


def check_options(weights: Any = "copy", dtype: Any = "float32", store: Any = "memory",
                  directory: Any = None) -> CaptureOptions:
    """The options as a :class:`CaptureOptions`; a one-line ``CaptureError`` when invalid."""
    w = _choice(weights, "weights", WEIGHTS)
    d = _choice(dtype, "dtype", STORE_DTYPES)
    s = _choice(store, "store", STORES)
    if s == "disk" and directory is None:
        raise CaptureError("store='disk' needs directory=, the folder the stage files go to; "
                           "got none")
    if s == "memory" and directory is not None:
        raise CaptureError(f"directory={str(directory)!r} is only used with store='disk'; "
                           "got store='memory'")
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise CaptureError(f"directory must be a path; got {type(directory).__name__}")
    return CaptureOptions(w, d, s, Path(directory) if directory is not None else None)  # type: ignore[arg-type]


def finish_stages(stages: list[Stage], opts: CaptureOptions, sink: DiskStore | None) -> list[Stage]:
    """Apply ``opts`` to stages an adapter recorded in memory as float32 with copied
    weights (the Keras adapter; the PyTorch one applies them while it records)."""
    if opts.default:
        return stages
    for s in stages:
        if opts.weights == "none":
            s.weights = {}
        if opts.dtype == "float16":
            s.output = s.output.astype(np.float16)
        if sink is not None:
            s.output = sink.put(s.index, s.name, s.output)
    return stages


def model_failed(name: str, shape: tuple[int, ...], exc: BaseException,
                 layout: str = " (B, C, H, W)") -> CaptureError:
    """The one-line error for a model that raised on its input (every adapter's)."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    return CaptureError(f"{name} failed on an input of shape {tuple(shape)}{layout}: "
                        f"{msg[:300]}; check the image size and channels the model expects")
