"""Writing many figures as PNG files at once, on several threads.

Pillow's PNG encoder (zlib) runs without the GIL, so figures encode in parallel on
threads: the bytes of each file are exactly what :meth:`Figure.save` writes (each file
is encoded on its own, with the same settings), only the wall time shrinks.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from convlens.errors import RenderError
from convlens.render.figure import Figure, save_png

__all__ = ["save_pngs", "png_bytes"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def save_pngs(items: Iterable[tuple[Figure, str | os.PathLike[str]]],
              workers: int | None = None) -> list[Path]:
    """Save each ``(figure, path)`` as a PNG; ``workers`` threads (default: one per CPU,
    at most 8; 1 saves one after another).  Returns the paths in the order given."""
    pairs = list(items)
    for fig, _ in pairs:
        _check(fig, "save_pngs needs (Figure, path) pairs")
    return _map(lambda fp: save_png(fp[0].image, fp[1]), pairs, workers)


def png_bytes(figures: Sequence[Figure], workers: int | None = None) -> list[bytes]:
    """Each figure as PNG bytes (those of :meth:`Figure.to_png_bytes`), encoded on
    ``workers`` threads as :func:`save_pngs` does; in the order given."""
    figs = list(figures)
    for fig in figs:
        _check(fig, "png_bytes needs Figures")
    return _map(lambda f: f.to_png_bytes(), figs, workers)


def _check(fig: object, what: str) -> None:
    if not isinstance(fig, Figure):
        raise RenderError(f"{what}; got a {type(fig).__name__}")


def _map(fn: Callable[[_T], _R], items: list[_T], workers: int | None) -> list[_R]:
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RenderError(f"workers must be an integer >= 1; got {workers!r}")
    if workers == 1 or len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
