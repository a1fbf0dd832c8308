"""Model archives are checked before any loader opens them.

A ``.keras`` file and a TorchScript ``.pt`` are zip archives.  :func:`check_archive`
reads only the archive's central directory (a few kilobytes, whatever the archive
holds) and refuses one that

* is truncated or corrupt (it starts like a zip but has no complete central directory,
  or a ``.keras`` file that is not a zip at all);
* holds more than :data:`MAX_MEMBERS` files;
* declares more than :data:`MAX_UNCOMPRESSED_BYTES` once inflated;
* inflates more than :data:`MAX_RATIO` times its own size to more than
  :data:`RATIO_FLOOR` bytes (a "zip bomb": 1 MB of zeros deflated from 1 GiB).

Both loaders read a member up to the size the central directory declares (Python's
``zipfile`` for Keras, miniz for TorchScript), so the declared sizes are the ones that
count.  The limits are module constants: a trusted archive beyond them can be loaded
after raising the constant (``convlens.capture.archive.MAX_UNCOMPRESSED_BYTES = ...``).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from convlens.errors import ModelError

__all__ = ["MAX_UNCOMPRESSED_BYTES", "MAX_MEMBERS", "MAX_RATIO", "RATIO_FLOOR",
           "ZIP_SUFFIXES", "check_archive"]

MAX_UNCOMPRESSED_BYTES = 4 << 30
"""At most 4 GiB once inflated (the largest zoo model is under 20 MB)."""
MAX_MEMBERS = 10_000
"""At most 10,000 files in one archive (a Keras or TorchScript file holds a few dozen)."""
MAX_RATIO = 100
"""Inflating more than 100 times the archive's size ... (float weights barely compress)"""
RATIO_FLOOR = 64 << 20
"""... is refused once the inflated total exceeds 64 MiB."""
ZIP_SUFFIXES = {".keras": "Keras", ".pt": "TorchScript", ".pth": "TorchScript",
                ".ts": "TorchScript"}
"""Model-file suffixes that are zip archives, and what writes them."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_RAISE = "if you trust the file, raise convlens.capture.archive.{name} and load it again"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):,.2f} GiB"


def check_archive(path: str | Path, kind: str | None = None) -> int | None:
    """Check the zip archive at ``path`` before a loader opens it; returns its inflated
    size in bytes, or None when the file is not a zip and ``kind`` allows that (a
    TorchScript loader says so itself).  ``kind`` ("Keras", "TorchScript") defaults to
    the suffix's (:data:`ZIP_SUFFIXES`).  Raises a one-line :class:`ModelError`."""
    path = Path(path)
    kind = kind or ZIP_SUFFIXES.get(path.suffix.lower(), "model")
    what = f"{path}: cannot load this {kind} model"
    redo = ("re-save it with model.save('model.keras')" if kind == "Keras"
            else "re-export it with torch.jit.script(model).save(path)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ModelError(f"{what}: cannot read the file ({exc.strerror or exc}); "
                         "check its permissions") from None
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if head in _ZIP_MAGIC:
            raise ModelError(
                f"{what}: the file is truncated or corrupt (a zip archive of {size:,} bytes "
                f"without a complete directory: {' '.join(str(exc).split())[:80]}); copy "
                f"it again or {redo}") from None
        if kind == "Keras":
            raise ModelError(
                f"{what}: the file is truncated or corrupt (a .keras file is a zip archive; "
                f"this one of {size:,} bytes is not); copy it again or {redo}") from None
        return None
    if len(infos) > MAX_MEMBERS:
        raise ModelError(
            f"{what}: the archive holds {len(infos):,} files; the limit is {MAX_MEMBERS:,} — "
            + _RAISE.format(name="MAX_MEMBERS"))
    total = sum(max(0, i.file_size) for i in infos)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ModelError(
            f"{what}: the archive inflates to {_mib(total)}; the limit is "
            f"{_mib(MAX_UNCOMPRESSED_BYTES)} — " + _RAISE.format(name="MAX_UNCOMPRESSED_BYTES"))
    if total > RATIO_FLOOR and total > MAX_RATIO * max(size, 1):
        raise ModelError(
            f"{what}: the archive's {_mib(size)} inflate to {_mib(total)} "
            f"({total // max(size, 1):,} times; model weights barely compress, the limit is "
            f"{MAX_RATIO}), so it looks like a zip bomb — " + _RAISE.format(name="MAX_RATIO"))
    return total
