"""What the demo's sections need beyond the base install, and how a section says that
part of it was skipped.

A section (or a part of one) calls :func:`need` before it starts; when the package is
not installed it raises :class:`MissingExtra`, which names what was skipped and the
``convlens[...]`` extra that brings it.  A section that can do the rest goes on and
adds :func:`skipped_card` to its cards; :func:`convlens.demo.tutorial.run_demo` collects
them (and whole sections that raised) into one line at the end.
"""
from __future__ import annotations

import importlib
from typing import Any

from convlens.errors import ConvlensError

__all__ = ["MissingExtra", "need", "skipped_card", "is_skipped"]


class MissingExtra(ConvlensError, ImportError):
    """A part of the demo needs a package that is not installed."""

    def __init__(self, what: str, package: str, extra: str):
        self.what, self.package, self.extra = what, package, extra
        super().__init__(f"{what} skipped: it needs {package} — pip install 'convlens[{extra}]'")

    @property
    def short(self) -> str:
        """``LeNet-5 on a digit (convlens[digits]: scikit-learn)``."""
        return f"{self.what} (convlens[{self.extra}]: {self.package})"


def need(module: str, package: str, extra: str, what: str) -> None:
    """Import ``module`` or raise :class:`MissingExtra` saying ``what`` is skipped."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(what, package, extra) from None


def skipped_card(exc: MissingExtra) -> dict[str, Any]:
    """The card a section returns for a part it skipped (no picture)."""
    return {"skipped": exc.short, "extra": exc.extra}


def is_skipped(card: dict[str, Any]) -> bool:
    return "skipped" in card
