"""``convlens demo`` as one self-contained page: the demo's sections, every picture it
wrote (PNG, GIF or SVG in ``outdir``) embedded as a ``data:`` URI."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from convlens.display.embed import data_uri, img_tag
from convlens.errors import ConvlensError
from convlens.report.page import page

__all__ = ["demo_report_html", "write_demo_report", "IMAGE_KEYS"]

IMAGE_KEYS = ("result", "journey", "file")
"""Keys of a demo item that name a picture file (relative to ``outdir``)."""
_MIME = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml"}


def _embed(outdir: Path, name: str, alt: str) -> str:
    path = outdir / name
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ConvlensError(f"demo picture {name!r} is not a PNG, GIF or SVG; expected one of "
                            f"{', '.join(_MIME)}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConvlensError(f"{path}: no such file; the demo section lists it, so write it "
                            "before building the report") from None
    return img_tag(data_uri(data, mime), alt, cls="cl-fig")


def _item(outdir: Path, item: dict[str, Any], anchor: str) -> str:
    e = html.escape
    title = str(item.get("title", ""))
    num = f"{item['n']}. " if "n" in item else ""
    parts = [f"<figure class='rp-fig' id='{anchor}'><h3>{num}{e(title)}</h3>"]
    if item.get("spec") is not None:
        shape = f" · output shape <b>{e(str(item['shape']))}</b>" if item.get("shape") else ""
        parts.append(f"<p>Network: <code>{e(str(item['spec']))}</code>{shape}</p>")
    for key in ("result", "file"):
        if item.get(key):
            parts.append(_embed(outdir, str(item[key]), title))
    for key in ("note", "caption"):
        if item.get(key):
            parts.append(f"<p>{e(str(item[key]))}</p>")
    if item.get("said"):
        parts.append(f"<p class='cl-muted'>{e(str(item['said']))}</p>")
    if item.get("journey"):
        parts.append("<details class='cl-more'><summary>The journey, stage by stage</summary>"
                     + _embed(outdir, str(item["journey"]), f"journey: {title}") + "</details>")
    parts.append("</figure>")
    return "".join(parts)


def demo_report_html(outdir: str | Path, sections: Sequence[tuple[str, Sequence[dict]]],
                     title: str = "convlens demo: what a CNN does to a cat",
                     intro: str = "") -> str:
    """The page for ``sections``: ``(title, items)`` pairs, each item a dict with a
    ``title`` and any of ``n``, ``spec``, ``shape``, ``note``, ``caption``, ``said`` and the
    picture files ``result``, ``file``, ``journey`` (relative to ``outdir``)."""
    out = Path(outdir)
    body = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        body.append(f"<p>{html.escape(intro)}</p>")
    nav = ["<b>Contents</b>"]
    for k, (sec_title, items) in enumerate(sections):
        sid = f"section-{k}"
        body.append(f"<section id='{sid}'><h2>{html.escape(sec_title)}</h2>")
        nav.append(f"<p><a href='#{sid}'>{html.escape(sec_title)}</a></p><ol>")
        for j, item in enumerate(items):
            anchor = f"{sid}-{j}"
            body.append(_item(out, item, anchor))
            nav.append(f"<li><a href='#{anchor}'>{html.escape(str(item.get('title', '')))}"
                       "</a></li>")
        nav.append("</ol>")
        body.append("</section>")
    body.append("<p class='cl-muted'>Image: Chelsea the cat, CC0, by Stefan van der Walt "
                "(scikit-image sample data).</p>")
    return page(title, "".join(nav), "".join(body))


def write_demo_report(outdir: str | Path, sections: Sequence[tuple[str, Sequence[dict]]],
                      path: str | Path | None = None, **kwargs: Any) -> Path:
    """Write :func:`demo_report_html` to ``path`` (default ``outdir/report.html``);
    returns the path."""
    target = Path(path) if path is not None else Path(outdir) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(demo_report_html(outdir, sections, **kwargs), encoding="utf-8")
    return target
