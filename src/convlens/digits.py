"""Real handwritten digits: scikit-learn's bundled ``load_digits()`` and its fixed split.

1,797 digits of 8 x 8 pixels, values 0..16, written by 43 people (UCI "Optical
Recognition of Handwritten Digits").  convlens returns them as images like any other:
float32 RGB ``(H, W, 3)`` in [0, 1] (value / 16, the grey copied to three channels),
**a light digit on a black background**, as scikit-learn stores them.

The held-out split is fixed and stratified: for every class, a permutation drawn from
``numpy.random.default_rng(SPLIT_SEED)`` (classes in order 0..9) puts the first
``round(TEST_FRACTION * count)`` of that class's samples in ``"test"`` (359 of them), the
rest in ``"train"`` (1,438).  ``convlens.nets.train`` trains only on ``"train"``; the
shipped LeNet weights are scored on ``"test"``.

Needs scikit-learn (``pip install 'convlens[digits]'``); nothing is downloaded.
"""
from __future__ import annotations

import functools
from typing import Literal, get_args

import numpy as np

from convlens.errors import ImageError

__all__ = ["digits", "split_indices", "DigitSplit", "SPLIT_SEED", "TEST_FRACTION"]

DigitSplit = Literal["train", "test", "all"]
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64), read-only."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImageError("convlens.digits() needs scikit-learn, which is not installed; "
                         "install it with pip install 'convlens[digits]'") from None
    data = load_digits()
    images = (np.asarray(data.images, dtype=np.float64) / 16.0).astype(np.float32)
    labels = np.asarray(data.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_indices(split: DigitSplit = "test") -> np.ndarray:
    """Sorted indices into ``load_digits()`` of the fixed ``"train"``/``"test"`` split."""
    if split not in get_args(DigitSplit):
        raise ImageError(f"unknown digits split {split!r}; expected one of "
                         f"{', '.join(get_args(DigitSplit))}")
    _, labels = _raw()
    if split == "all":
        return np.arange(len(labels))
    return _split(split == "test")


@functools.lru_cache(maxsize=2)
def _split(test: bool) -> np.ndarray:
    _, labels = _raw()
    rng = np.random.default_rng(SPLIT_SEED)
    chosen = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(TEST_FRACTION * len(idx)))
        chosen.append(idx[:k] if test else idx[k:])
    out = np.sort(np.concatenate(chosen))
    out.flags.writeable = False
    return out


def digits(n: int | None = None, split: DigitSplit = "test") -> tuple[np.ndarray, np.ndarray]:
    """Real handwritten digits as a batch of images and their labels.

    Returns ``(images, labels)``: float32 ``(N, 8, 8, 3)`` in [0, 1] (light digit on
    black, the three channels equal) and int64 ``(N,)`` in 0..9.  ``split`` is
    ``"test"`` (the 359 held-out digits no convlens network was trained on, the default),
    ``"train"`` or ``"all"``; ``n`` keeps the first ``n`` of the split (all by default).
    Each call returns fresh arrays.  ``zoo:lenet``'s preprocessing resizes them to 32 x 32.
    """
    idx = split_indices(split)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ImageError(f"digits(n={n!r}) is not valid; expected a positive integer "
                             f"(at most {len(idx)} for split {split!r}) or None for all")
        idx = idx[:int(n)]
    images, labels = _raw()
    rgb = np.repeat(images[idx][..., None], 3, axis=-1)
    return np.ascontiguousarray(rgb, dtype=np.float32), labels[idx].copy()
