"""``convlens serve``: a local web app to explore a network on an image, stage by stage.

    from convlens.server import create_app      # needs fastapi (convlens[serve])
    app = create_app(model="zoo:lenet")

Importing this package is cheap; FastAPI is imported when :func:`create_app` is first
used.  See docs/explorer.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(model: str | None = None, **kwargs: Any):
    """The explorer's FastAPI app (see :func:`convlens.server.app.create_app`)."""
    from convlens.server.app import create_app as _create
    return _create(model, **kwargs)
