"""An atlas in a notebook: the compact HTML Jupyter shows for an :class:`AtlasResult`.

A summary (model, images, k, a line per stage: shape, channels, dead channels), then per
stage the top-k crops of the first ``first`` channels (and each one's activation
maximisation, when the run made them), and the next channels up to ``limit`` behind a
closed ``<details>`` ("show all"), lazily loaded.  Like :mod:`convlens.display`: every
picture is a small ``data:`` URI (crops shrunk to ``thumb`` px), no script, no server, no
file — so it still shows in a saved notebook, and :func:`convlens.atlas.load` can show an
atlas computed elsewhere.
"""
from __future__ import annotations

import html
import io
from typing import Any, Callable, Mapping

from PIL import Image

from convlens.atlas.pages import crop_path

__all__ = ["atlas_html", "thumbnail"]

_CSS = """
.cl .at-row{display:flex;gap:8px;align-items:center;margin:2px 0}
.cl .at-row .at-label{width:64px;flex:none;font-size:12px;text-align:right;color:#444}
.cl .at-row img{display:block;border:1px solid #ccc;image-rendering:pixelated}
.cl .at-row img.at-maxi{margin-left:8px;outline:1px dashed #888}
"""


def thumbnail(png: bytes, thumb: int) -> bytes:
    """``png`` shrunk (area average) to at most ``thumb`` px on its longer side; returned
    as is when it is that small already."""
    from convlens.display.embed import png_bytes

    pic = Image.open(io.BytesIO(png))
    if max(pic.size) <= thumb:
        return png
    f = thumb / max(pic.size)
    size = (max(1, round(pic.width * f)), max(1, round(pic.height * f)))
    return png_bytes(pic.convert("RGB").resize(size, Image.Resampling.BOX))


def _row(stage: str, ch: Mapping[str, Any], picture: Callable[[str], bytes | None],
         thumb: int, lazy: bool) -> str:
    from convlens.display.embed import data_uri, img_tag

    c = ch["channel"]
    imgs = []
    for r, e in enumerate(ch["top"]):
        png = picture(crop_path(stage, c, r))
        if png is None:
            continue
        pos = f" at {tuple(e['position'])}" if "position" in e else ""
        value = "" if e["value"] is None else f": {e['value']:.4g}"
        imgs.append(img_tag(data_uri(thumbnail(png, thumb)), e["image"], lazy=lazy,
                            title=f"rank {r + 1}, {e['image']}{value}{pos}"))
    mx = ch.get("maximization")
    png = picture(mx["image"]) if mx else None
    if png is not None:
        imgs.append(img_tag(data_uri(thumbnail(png, thumb)),
                            f"activation maximisation of channel {c}", lazy=lazy, cls="at-maxi",
                            title=f"activation maximisation: objective {mx['start']:.4g} -> "
                                  f"{mx['final']:.4g}"))
    if not imgs:  # no pictures to show: the names
        imgs.append("<span class='cl-muted'>" + html.escape(", ".join(
            e["image"] for e in ch["top"])) + "</span>")
    dead = "" if ch["dead"] is None else f"<br>dead {100 * ch['dead']:.0f}%"
    return (f"<div class='at-row'><div class='at-label'>#{c}{dead}</div>{''.join(imgs)}"
            "</div>")


def atlas_html(data: Mapping[str, Any], picture: Callable[[str], bytes | None],
               first: int = 4, limit: int = 16, thumb: int = 48, source: str = "") -> str:
    """The notebook view of an atlas (see the module docs); ``picture(path)`` gives the
    PNG bytes of a file relative to OUT (a crop or a maximisation image) or None."""
    from convlens.display.style import style_tag

    esc = html.escape
    stages = data["stages"]
    mx = data.get("maximize") or {}
    lines = []
    for s in stages:
        n = len(s["channels"])
        dead = sum(1 for ch in s["channels"] if ch["dead"] == 1.0)
        lines.append(f"<tr><td class='cl-l'>{esc(s['name'])}</td>"
                     f"<td>{' x '.join(map(str, s['shape']))}</td><td>{n}</td><td>{dead}</td></tr>")
    head = (f"<div class='cl-head'>Atlas of {esc(data['model'])}</div>"
            f"<div class='cl-muted'>{data['images']} images ({data['files']} files), top "
            f"{data['k']} per channel by its response (maximum over positions)"
            f"{'; ' + esc(source) if source else ''}</div>"
            "<table class='cl-table'><tr><th class='cl-l'>stage</th><th>output</th>"
            "<th>channels</th><th>dead on every image</th></tr>" + "".join(lines) + "</table>")
    if mx.get("note"):
        head += f"<div class='cl-muted'>{esc(mx['note'])}.</div>"
    elif mx:
        head += ("<div class='cl-muted'>last picture of a row (dashed): the channel's "
                 f"activation maximisation ({mx['settings']['steps']} steps)</div>")
    parts = [head]
    for s in stages:
        chans = s["channels"]
        shown = chans[:limit]
        rows = [_row(s["name"], ch, picture, thumb, lazy=i >= first) for i, ch in enumerate(shown)]
        parts.append(f"<h4>{esc(s['name'])} <span class='cl-muted'>"
                     f"{' x '.join(map(str, s['shape']))}, {len(chans)} channels</span></h4>")
        parts.append("".join(rows[:first]))
        rest = rows[first:]
        if rest:
            what = (f"show all {len(chans)} channels" if len(shown) == len(chans)
                    else f"show channels 0..{len(shown) - 1}")
            parts.append(f"<details class='cl-more'><summary>{what} ({len(rest)} more)</summary>"
                         f"{''.join(rest)}</details>")
        if len(chans) > len(shown):
            parts.append(f"<div class='cl-muted'>channels 0..{len(shown) - 1} of {len(chans)} "
                         "included here; the stage's page and atlas.json have the rest</div>")
    return (f"<div class='cl'>{style_tag()}<style>{_CSS}</style>" + "".join(parts) + "</div>")
