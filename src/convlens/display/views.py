"""Static HTML views of a Trace, a Stage and a Figure: what Jupyter shows inline.

* :func:`trace_html` — the journey as a strip of stage cards (input first, each card
  titled with the stage's kind and ``HxWxC`` shape and its colour range), the first
  ``first`` shown and the rest behind "show all", the top predictions of a classifier,
  and the layer statistics.
* :func:`stage_html` — the stage's channels (:func:`~convlens.display.channel_gallery`)
  with its colour bar and statistics.
* :func:`figure_html` — a Figure's picture and what it shows.

Every picture is a ``data:`` URI: the HTML stands alone (no server, no files).
"""
from __future__ import annotations

from typing import Any

from convlens.errors import RenderError
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.journeyview import global_range, journey
from convlens.render.panel import finish, input_panel, stage_panel
from convlens.render.resolve import check_image, check_int, check_options
from convlens.render.scale import NORM_LABELS, Norm
from convlens.render.text import fmt
from convlens.render.views import stage as stage_figure
from convlens.preprocess import describe_steps
from convlens.trace import Stage, Trace
from convlens.display.embed import data_uri, escape, img_tag
from convlens.display.gallery import channel_gallery
from convlens.display.style import style_tag
from convlens.display.tables import predictions, predictions_table, stats_line, stats_table

__all__ = ["trace_html", "stage_html", "figure_html", "trace_png", "stage_png", "journey_strip",
           "preprocessing_text", "params_text"]


def _wrap(body: str) -> str:
    return f"<div class='cl'>{style_tag()}{body}</div>"


def params_text(stage: Stage) -> str:
    """``kernel_size=3x3 · stride=1x1 · ...`` from the stage's params."""
    def show(v: Any) -> str:
        if isinstance(v, tuple) and v and all(isinstance(t, (int, float)) for t in v):
            return "x".join(str(t) for t in v)
        return str(v)
    return " · ".join(f"{k}={show(v)}" for k, v in stage.params.items())


def preprocessing_text(trace: Trace) -> str:
    """The preprocessing steps, in order, as one line (:func:`convlens.preprocess.describe_steps`)."""
    return describe_steps(trace.preprocessing)


def _card(block_fig: Figure, alt: str, lazy: bool) -> str:
    return img_tag(data_uri(block_fig.image), alt, lazy=lazy, cls="cl-card", title=alt)


def journey_strip(trace: Trace, image: int = 0, norm: Norm = "stage", first: int = 12,
                  tile: int = 96, max_channels: int = 9, cmap: CmapName | None = None,
                  show_all: bool = True, stages: list[Stage] | None = None) -> str:
    """The input and each stage of one image as cards with arrows between them; cards
    after the first ``first`` stages sit behind "show all"."""
    stages = list(trace.stages) if stages is None else stages
    if len(stages) <= first + 3:  # hiding one to three cards saves nothing
        first = len(stages)
    vrange = global_range(stages) if norm == "global" else None
    arrow = "<span class='cl-arrow'>→</span>"
    cards = [_card(finish(input_panel(trace.input, image, tile), {}, margin=2), "input", False)]
    shown = stages if show_all else stages[:first]
    for k, s in enumerate(shown):
        fig = finish(stage_panel(s, image, norm, tile, max_channels, cmap, vrange), {}, margin=2)
        cards.append(_card(fig, f"{s.name}: {s.kind} {s.shape_str}", lazy=k >= first))
    head = arrow.join(cards[: first + 1])
    out = f"<div class='cl-strip'>{head}</div>"
    rest = cards[first + 1:]
    if rest:
        out += (f"<details class='cl-more'><summary>show all {len(stages)} stages "
                f"({len(rest)} more)</summary><div class='cl-strip'>{arrow}{arrow.join(rest)}"
                "</div></details>")
    elif len(shown) < len(stages):
        out += f"<div class='cl-muted'>first {len(shown)} of {len(stages)} stages shown</div>"
    return out


def trace_html(trace: Trace, image: int = 0, norm: Norm = "stage", first: int = 12,
               tile: int = 96, max_channels: int = 9, cmap: CmapName | None = None,
               show_all: bool = True, stats: bool = True) -> str:
    """The notebook view of a Trace (see module docs) for batch item ``image``."""
    if not isinstance(trace, Trace):
        raise RenderError(f"trace_html needs a convlens Trace; got {type(trace).__name__}")
    norm, cmap = check_options(norm, cmap)
    first = check_int(first, "first", 1)
    tile = check_int(tile, "tile", 64)
    max_channels = check_int(max_channels, "max_channels", 1)
    b = trace.batch_size
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < b:
        raise RenderError(f"image index {image!r} is out of range; the trace holds {b} "
                          f"image{'s' if b != 1 else ''} (valid: 0..{b - 1})")
    n = len(trace.stages)
    h, w = trace.input.shape[1:3]
    parts = [f"<div class='cl-head'>Trace · {escape(trace.model_name)} · {escape(trace.framework)}"
             f" · {b} image{'s' if b != 1 else ''} ({h}x{w}) · {n} stage{'s' if n != 1 else ''}"
             "</div>"]
    if trace.preprocessing:
        parts.append(f"<div class='cl-muted'>preprocessing: {escape(preprocessing_text(trace))}"
                     "</div>")
    preds = predictions(trace)
    if preds is not None:
        parts.append("<div class='cl-strip'>")
        for i, row in enumerate(preds):
            label = f"image {i}: top {len(row)}" if b > 1 else f"top {len(row)} predictions"
            parts.append(predictions_table(row, label))
        parts.append("</div>")
    sub = f"image {image} of {b} · " if b > 1 else ""
    parts.append(f"<div class='cl-muted'>{sub}journey · {escape(NORM_LABELS[norm])}</div>")
    if n:
        parts.append(journey_strip(trace, image, norm, first, tile, max_channels, cmap, show_all))
    if stats and n:
        table = stats_table(list(trace.stats()))
        opened = " open" if n <= 16 else ""
        parts.append(f"<details class='cl-more'{opened}><summary>layer statistics ({n} stages, "
                     f"all images)</summary>{table}</details>")
    parts.append("<div class='cl-muted'>a stage: <code>trace[\"name\"]</code> · controls: "
                 "<code>convlens.display.explore(trace)</code> · one shareable page: "
                 "<code>trace.to_html(\"report.html\")</code></div>")
    return _wrap("".join(parts))


def stage_html(stage: Stage, image: int = 0, norm: Norm = "stage", first: int = 16,
               thumb: int = 64, cmap: CmapName | None = None, limit: int | None = None) -> str:
    """The notebook view of a Stage: header, statistics and its channels."""
    if not isinstance(stage, Stage):
        raise RenderError(f"stage_html needs a convlens Stage; got {type(stage).__name__}")
    i = check_image(stage, image)
    b = int(stage.output.shape[0])
    sub = " · ".join(t for t in (stage.kind, stage.op, stage.shape_str, params_text(stage)) if t)
    img = f" · image {i} of {b}" if b > 1 else ""
    parts = [f"<div class='cl-head'>{escape(stage.name)}</div>",
             f"<div class='cl-muted'>stage {stage.index} · {escape(sub)}{img}</div>",
             stats_line(stage),
             channel_gallery(stage, i, norm, cmap, first, thumb, limit)]
    return _wrap("".join(parts))


def _figure_caption(fig: Figure) -> str:
    m = fig.meta
    bits = [str(m.get("view", "figure"))]
    panels = m.get("panels") or []
    if m.get("view") == "journey":
        bits.append(f"{m.get('model')} · {len(m.get('stages', []))} stages")
    elif len(panels) == 1:
        p = panels[0]
        bits += [str(p.get(k)) for k in ("stage", "shape") if p.get(k) is not None]
        if p.get("vmin") is not None and p.get("vmax") is not None:
            rng = f"{fmt(p['vmin'])} ... {fmt(p['vmax'])}"
            bits.append(f"{rng} ({p['cmap']})" if p.get("cmap") else rng)
    if m.get("norm") in NORM_LABELS:
        bits.append(NORM_LABELS[m["norm"]])
    bits.append(f"{fig.size[0]}x{fig.size[1]} px")
    return " · ".join(bits)


def figure_html(fig: Figure) -> str:
    """A Figure at its own size (never blurred up), with a line saying what it shows."""
    img = img_tag(data_uri(fig.image), _figure_caption(fig), width=fig.size[0], cls="cl-fig")
    return _wrap(f"{img}<div class='cl-muted'>{escape(_figure_caption(fig))}</div>")


def trace_png(trace: Trace) -> bytes:
    """The journey as PNG (what a frontend without HTML shows); past 24 stages the panels
    are smaller (64 px, 4 channels each) so a large trace stays under a megabyte or so."""
    if len(trace.stages) > 24:
        return journey(trace, tile=64, max_channels=4, per_row=8).to_png_bytes()
    return journey(trace, tile=96, max_channels=9).to_png_bytes()


def stage_png(stage: Stage) -> bytes:
    """The stage's natural view (:func:`convlens.render.stage`) as PNG, at most 64 channels."""
    return stage_figure(stage, max_channels=64 if stage.channels > 64 else None).to_png_bytes()
