"""The report page: one self-contained HTML document for a Trace.

Sections, in order: input and predictions, architecture (when ``convlens.explain`` can
draw it), the journey, explanations that apply to this model, layer statistics, then
one section per stage (description, statistics, channels), with a table of contents
linking to each.  Every picture is a ``data:`` URI; there is no script and no URL, and
a Content-Security-Policy ``<meta>`` says so to the browser.
"""
from __future__ import annotations

import html
from typing import Sequence

from convlens.display.style import CSS
from convlens.render.resolve import check_images
from convlens.trace import Trace
from convlens.report.options import ReportOptions
from convlens.report.security import harden_html
from convlens.report.sections import (
    architecture_section, explanations_section, input_section, journey_section,
    stage_id, stage_section, stats_section,
)

__all__ = ["report_html", "PAGE_CSS", "page"]

PAGE_CSS = """
body{margin:0}
.rp-wrap{display:flex;align-items:flex-start}
nav#contents{position:sticky;top:0;max-height:100vh;overflow:auto;width:250px;flex:none;
 padding:12px 10px;border-right:1px solid #ddd;font-size:13px;background:#fafafa}
nav#contents ol{padding-left:1.4em;margin:.3em 0}
nav#contents a{text-decoration:none;color:#1a5fb4}
main{padding:0 24px 40px;min-width:0;flex:1}
figure.rp-fig{margin:.5em 0 1.2em;overflow-x:auto}figure.rp-fig img.cl-fig{max-width:none}
figure.rp-fig figcaption{color:#555;font-size:.9em}
section.rp-stage{border-top:1px solid #e4e4e4;padding-top:.4em}
.rp-input{display:flex;gap:12px;align-items:flex-start;margin:0 16px 8px 0}
.rp-top{font-size:.85em}
@media print{nav#contents{display:none}}
"""


def page(title: str, nav: str, body: str, css: str = "") -> str:
    """A complete HTML document: ``nav`` in the sticky side bar, ``body`` in main, with
    the Content-Security-Policy and referrer ``<meta>`` tags (:mod:`.security`).  ``css``
    is added to the style block before the policy hashes it (never after: the browser
    would refuse the whole block)."""
    return harden_html("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}{PAGE_CSS}{css}</style></head>"
            f"<body class='cl'><div class='rp-wrap'><nav id='contents'>{nav}</nav>"
            f"<main>{body}</main></div></body></html>\n")


def _contents(parts: Sequence[tuple[str, str]], stages: list) -> str:
    items = "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in parts)
    st = "".join(f"<li value='{s.index}'><a href='#{stage_id(s)}' "
                 f"title='{html.escape(s.shape_str)}'>{html.escape(s.name)}</a></li>"
                 for s in stages)
    return (f"<b>Contents</b><ul>{items}</ul><b>Stages</b>"
            f"<ol start='{stages[0].index if stages else 0}'>{st}</ol>")


def report_html(trace: Trace, options: ReportOptions | None = None) -> str:
    """The whole report for ``trace`` as one HTML string."""
    from convlens import __version__

    opts = options or ReportOptions()
    stages = trace.select(opts.layers) if opts.layers is not None else list(trace.stages)
    images = check_images(trace.batch_size, list(opts.images) if opts.images is not None
                          else None, "the trace")
    title = opts.title or f"convlens report: {trace.model_name}"
    b = trace.batch_size
    h, w = trace.input.shape[1:3]
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
    sections.append(("input", "Input and predictions", input_section(trace, images)))
    arch = architecture_section(trace)
    if arch:
        sections.append(("architecture", "Architecture", arch))
    if stages:
        sections.append(("journey", "The journey", journey_section(trace, stages, opts, images)))
    if opts.explanations:
        expl = explanations_section(trace)
        if expl:
            sections.append(("explanations", "Explanations", expl))
    if stages:
        sections.append(("statistics", "Layer statistics", stats_section(trace, stages)))
    rows = {r["name"]: r for r in trace.stats()}
    stage_html = "".join(stage_section(trace, s, opts, images, rows[s.name]) for s in stages)
    if stages:
        sections.append(("stages", "Stages", f"<section id='stages'><h2>Stages</h2>"
                                              f"{stage_html}</section>"))
    shown = f"{len(stages)} of {len(trace.stages)}" if len(stages) < len(trace.stages) \
        else f"{len(stages)}"
    head = (f"<h1>{html.escape(title)}</h1><p class='cl-muted'>{html.escape(trace.model_name)} · "
            f"{html.escape(trace.framework)} · {b} image{'s' if b != 1 else ''} ({h}x{w}) · "
            f"{shown} stages · up to {opts.max_channels} channels per stage, tiles of "
            f"{opts.thumb} px · made by convlens {__version__}</p>")
    nav = _contents([(a, t) for a, t, _ in sections], stages)
    return page(title, nav, head + "".join(x for _, _, x in sections))
