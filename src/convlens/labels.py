"""Class names that ship with convlens: the 1,000 ImageNet classes, and the ten digits.

The ImageNet names are read once from ``convlens/data/imagenet_classes.txt`` (one name a
line, in class-index order, so ``imagenet_classes()[281] == "tabby"``).  NumPy-free and
framework-free.
"""
from __future__ import annotations

import functools
from importlib import resources

from convlens.errors import ModelError

__all__ = ["imagenet_classes", "DIGIT_CLASSES"]

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
"""Class names of the digit classifier (``zoo:lenet``): ``"0"`` ... ``"9"``."""


@functools.lru_cache(maxsize=1)
def _imagenet() -> tuple[str, ...]:
    try:
        text = (resources.files("convlens") / "data" / "imagenet_classes.txt").read_text(
            encoding="utf-8")
    except OSError as exc:  # a broken install
        raise ModelError(f"cannot read the bundled ImageNet class names ({exc}); "
                         "reinstall convlens") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise ModelError(f"the bundled ImageNet class list has {len(names)} names; expected "
                         "1000; reinstall convlens")
    return names


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names in class-index order (a fresh list each call)."""
    return list(_imagenet())
