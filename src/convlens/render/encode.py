"""Writing many figures as PNG files at once, on several threads.

Pillow's PNG encoder (zlib) runs without the GIL, so figures encode in parallel on
threads: the bytes of each file are exactly what :meth:`Figure.save` writes (each file
is encoded on its own, with the same settings), only the wall time shrinks.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from ..errors import RenderError
from .figure import Figure, save_png

__all__ = ["save_pngs"]


def save_pngs(items: Iterable[tuple[Figure, str | os.PathLike[str]]],
              workers: int | None = None) -> list[Path]:
    """Save each ``(figure, path)`` as a PNG; ``workers`` threads (default: one per CPU,
    at most 8; 1 saves one after another).  Returns the paths in the order given."""
    pairs = list(items)
    for fig, _ in pairs:
        if not isinstance(fig, Figure):
            raise RenderError(f"save_pngs needs (Figure, path) pairs; got a {type(fig).__name__}")
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RenderError(f"workers must be an integer >= 1; got {workers!r}")
    if workers == 1 or len(pairs) < 2:
        return [save_png(f.image, p) for f, p in pairs]
    with ThreadPoolExecutor(min(workers, len(pairs))) as pool:
        return list(pool.map(lambda fp: save_png(fp[0].image, fp[1]), pairs))
