"""The explorer shows atlases: ``convlens serve --atlas OUT`` (or ``create_app(atlases=)``)
serves the pages ``convlens atlas`` wrote — the index, one page per stage, the crops and
maximisation images — under ``/atlas/<id>/``, and the page links to them.

Only files of the atlas folder are served, looked up by the names the folder holds (never
a path a request made up: no ``..``, no symlink out), HTML with its own
Content-Security-Policy (the page's, computed from the document), pictures as PNG.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from fastapi import FastAPI
from fastapi.responses import Response

from convlens.errors import ConvlensError
from convlens.report import security
from convlens.server.state import Missing

__all__ = ["Atlases", "add_routes"]

_PART = re.compile(r"^[\w.-]+$")
_KINDS = {".html": "text/html; charset=utf-8", ".png": "image/png"}


class Atlases:
    """The atlas folders a server offers, by id (``a1``, ``a2``...)."""

    def __init__(self, folders: Sequence[str | Path] | Mapping[str, str | Path] = ()):
        items = folders.items() if isinstance(folders, Mapping) else ((None, f) for f in folders)
        self.items: dict[str, tuple[str, Path]] = {}
        for k, (label, folder) in enumerate(items, 1):
            path = Path(folder).resolve()
            if not (path / "atlas.json").is_file() or not (path / "index.html").is_file():
                raise ConvlensError(f"{folder}: not an atlas folder (no atlas.json and "
                                    "index.html); expected the -o folder of convlens atlas")
            self.items[f"a{k}"] = (label or path.name, path)

    def listing(self) -> list[dict[str, str]]:
        return [{"id": aid, "label": label} for aid, (label, _) in self.items.items()]

    def file(self, aid: str, parts: Sequence[str]) -> Path:
        """The file ``parts`` of atlas ``aid``; Missing for anything else."""
        if aid not in self.items:
            raise Missing(f"no atlas {aid!r}; this server has {', '.join(self.items) or 'none'}")
        root = self.items[aid][1]
        if not parts or len(parts) > 3 or not all(_PART.match(p) and p not in (".", "..")
                                                  for p in parts):
            raise Missing(f"no such atlas file {'/'.join(parts)!r}")
        path = root.joinpath(*parts)
        try:
            real = path.resolve(strict=True)
        except OSError:
            raise Missing(f"no such atlas file {'/'.join(parts)!r}") from None
        if root not in real.parents or real.suffix not in _KINDS or not real.is_file():
            raise Missing(f"no such atlas file {'/'.join(parts)!r}")
        return real


def add_routes(app: FastAPI, atlases: Atlases) -> None:
    def serve(aid: str, parts: Sequence[str]) -> Response:
        path = atlases.file(aid, parts)
        data = path.read_bytes()
        headers = {}
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = security.page_policy(data.decode("utf-8"))
        return Response(data, media_type=_KINDS[path.suffix], headers=headers)

    @app.get("/atlas/{aid}/", include_in_schema=False)
    def atlas_index(aid: str) -> Any:
        return serve(aid, ["index.html"])

    @app.get("/atlas/{aid}/{path:path}", include_in_schema=False)
    def atlas_file(aid: str, path: str) -> Any:
        return serve(aid, path.split("/"))
