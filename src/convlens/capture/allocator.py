"""Keep freed memory for the next capture instead of handing it back to the OS.

Why: a capture keeps tens of megabytes of layer outputs.  When the Trace is dropped,
glibc's ``malloc`` returns that memory to the operating system (the heap is "trimmed"
once more than a few megabytes are free at its top), so the next capture gets fresh
pages again, and the kernel must fault in and zero every one of them: ~8,000 page
faults, 30-40 % of an EfficientNet-Lite0 forward pass at 224 px on a small VM.
Keeping up to ``retain_mb`` of freed memory in the process removes that cost, the
way PyTorch's CUDA caching allocator (or jemalloc/tcmalloc, which PyTorch's tuning
guide recommends for CPU inference) keeps memory for reuse.

Policy: **an explicit opt-in.**  This is a process-wide setting, so convlens never
makes it on its own (``capture()`` changes nothing in the process); a program that
captures many times may call :func:`retain_freed_memory` or :func:`ensure_tuned`:

* :func:`ensure_tuned` applies it once per process, where the user has not chosen;
* nothing is changed when the C library is not glibc, when the user set glibc's own
  malloc tuning (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TOP_PAD_``, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) or preloads another
  allocator (``LD_PRELOAD``), or when ``CONVLENS_RETAIN_MB=0``;
* ``CONVLENS_RETAIN_MB=N`` (or :func:`retain_freed_memory`) sets the amount.

The cost is memory: up to ``retain_mb`` of freed heap stays resident (RSS) for reuse.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

from convlens.errors import ConvlensError

__all__ = ["retain_freed_memory", "ensure_tuned", "allocator_status", "DEFAULT_RETAIN_MB"]

DEFAULT_RETAIN_MB = 256
_ENV = "CONVLENS_RETAIN_MB"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_MB = 64
"""Blocks up to this size come from the heap (and are reused); larger ones are mapped
and unmapped as glibc does by default."""

_state: dict[str, Any] = {"checked": False, "retain_mb": None, "reason": "not applied yet"}
_lock = threading.Lock()


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None  # musl and other C libraries: no mallopt of this kind
    version.restype = ctypes.c_char_p
    return libc if version() else None


def _user_choice() -> str | None:
    """Why the user's own allocator settings win, or None when there are none."""
    for var in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"):
        if var in os.environ:
            return f"{var} is set"
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    if any(k in os.environ.get("LD_PRELOAD", "") for k in ("jemalloc", "tcmalloc", "mimalloc")):
        return "another allocator is preloaded"
    return None


def _env_mb() -> int:
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return DEFAULT_RETAIN_MB
    try:
        mb = int(raw)
        if mb < 0:
            raise ValueError
    except ValueError:
        raise ConvlensError(
            f"{_ENV}={raw!r} is not a size; expected a whole number of megabytes (0 turns "
            "the memory retention off) — fix or unset the variable"
        ) from None
    return mb


def retain_freed_memory(mb: int = DEFAULT_RETAIN_MB) -> bool:
    """Keep up to ``mb`` megabytes of freed memory in the process for reuse (glibc only).

    Returns True when the setting took effect.  ``mb=0`` does nothing (the C library's
    defaults stay).  An explicit call overrides the environment checks of
    :func:`ensure_tuned`.
    """
    if not isinstance(mb, int) or isinstance(mb, bool) or mb < 0:
        raise ConvlensError(f"retain_freed_memory expects a whole number of megabytes >= 0; got {mb!r}")
    with _lock:
        _state["checked"] = True
        if mb == 0:
            _state.update(retain_mb=None, reason="turned off (0 MB)")
            return False
        libc = _libc()
        if libc is None:
            _state.update(retain_mb=None, reason="not glibc: nothing to tune")
            return False
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_MB << 20)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, mb << 20))
        _state.update(retain_mb=mb if ok else None, reason="applied" if ok else "mallopt refused")
        return ok


def ensure_tuned() -> None:
    """Apply the default retention once per process, unless the user chose otherwise."""
    if _state["checked"]:
        return
    reason = _user_choice()
    if reason is not None:
        with _lock:
            _state.update(checked=True, retain_mb=None, reason=f"left alone: {reason}")
        return
    retain_freed_memory(_env_mb())


def allocator_status() -> dict[str, Any]:
    """``{"retain_mb": int | None, "reason": str}``: what convlens did to the allocator."""
    return {"retain_mb": _state["retain_mb"], "reason": _state["reason"]}
