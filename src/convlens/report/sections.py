"""The pieces of a report page, each a function of the Trace that returns HTML."""
from __future__ import annotations

from typing import Callable

from convlens.display.embed import data_uri, escape, img_tag
from convlens.display.gallery import channel_gallery
from convlens.display.tables import predictions, predictions_table, stats_table
from convlens.display.views import params_text, preprocessing_text
from convlens.errors import ConvlensError
from convlens.analysis.narrate import describe_stage
from convlens.render.figure import Figure
from convlens.render.journeyview import journey
from convlens.render.panel import finish, input_panel
from convlens.trace import Stage, Trace
from convlens.report.options import ReportOptions

__all__ = ["stage_id", "figure_block", "input_section", "architecture_section",
           "journey_section", "explanations_section", "stats_section", "stage_section"]


def stage_id(stage: Stage) -> str:
    """The anchor of a stage's section: ``stage-<index>``."""
    return f"stage-{stage.index}"


def figure_block(fig: Figure, caption: str, alt: str | None = None) -> str:
    """A Figure embedded at its own size (shrunk to the page width), with a caption."""
    img = img_tag(data_uri(fig.image), alt or caption, width=fig.size[0], cls="cl-fig")
    return f"<figure class='rp-fig'>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def input_section(trace: Trace, images: list[int]) -> str:
    parts = ["<section id='input'><h2>Input and predictions</h2>"]
    if trace.preprocessing:
        parts.append(f"<p class='cl-muted'>What the model received: "
                     f"{escape(preprocessing_text(trace))}</p>")
    preds = predictions(trace)
    parts.append("<div class='cl-strip'>")
    for i in images:
        h, w = trace.input.shape[1:3]
        pic = finish(input_panel(trace.input, i, 224, name=f"image {i}"), {}, margin=4)
        cell = img_tag(data_uri(pic.image), f"input image {i} ({h}x{w})", cls="cl-card")
        if preds is not None:
            cell += predictions_table(preds[i], f"top {len(preds[i])} predictions")
        parts.append(f"<div class='rp-input'>{cell}</div>")
    parts.append("</div>")
    if preds is None:
        parts.append("<p class='cl-muted'>No predictions: the trace is not a classifier with "
                     "class names (its last stage is not class probabilities or logits).</p>")
    parts.append("</section>")
    return "".join(parts)


def _optional(make: Callable[[], Figure]) -> Figure | None:
    """A figure from convlens.explain, or None when this model does not allow it."""
    try:
        return make()
    except (ImportError, ConvlensError):
        return None


def architecture_section(trace: Trace) -> str:
    def make() -> Figure:
        from convlens.explain.architecture import architecture_diagram
        return architecture_diagram(trace, title=trace.model_name)
    fig = _optional(make)
    if fig is None:
        return ""
    return ("<section id='architecture'><h2>Architecture</h2>"
            + figure_block(fig, "Every box is a tensor with its real shape (H x W x C), under "
                           "the step that made it; runs of identical steps are grouped.")
            + "</section>")


def journey_section(trace: Trace, stages: list[Stage], opts: ReportOptions,
                    images: list[int]) -> str:
    fig = journey(trace, norm=opts.norm, images=images, tile=opts.journey_tile,
                  max_channels=9, layers=[s.name for s in stages], cmap=opts.cmap)
    return ("<section id='journey'><h2>The journey</h2>"
            + figure_block(fig, "The input, then every stage in order: its kind, its shape "
                           "and the colour range of its picture.")
            + "</section>")


def explanations_section(trace: Trace) -> str:
    figs: list[tuple[Figure, str]] = []
    act = next((s for s in trace.stages if s.kind == "activation" and s.is_spatial), None)
    if act is not None:
        def hist() -> Figure:
            from convlens.explain.activations import activation_histogram
            return activation_histogram(trace, act.name)
        fig = _optional(hist)
        if fig is not None:
            figs.append((fig, f"What {act.name} ({act.op}) did to its input values."))

    def growth() -> Figure:
        from convlens.explain.receptive import receptive_field_growth_figure
        return receptive_field_growth_figure(trace, title=trace.model_name)
    fig = _optional(growth)
    if fig is not None:
        figs.append((fig, "How many input pixels one position of each stage can see."))
    if not figs:
        return ""
    return ("<section id='explanations'><h2>Explanations</h2>"
            + "".join(figure_block(f, c) for f, c in figs) + "</section>")


def stats_section(trace: Trace, stages: list[Stage]) -> str:
    keep = {s.name for s in stages}
    rows = [r for r in trace.stats() if r["name"] in keep]
    anchors = {s.name: stage_id(s) for s in stages}
    return ("<section id='statistics'><h2>Layer statistics</h2><p class='cl-muted'>Over all "
            "images; zeros: share of values exactly 0; dead ch: share of channels that are 0 "
            "everywhere.</p>" + stats_table(rows, anchors) + "</section>")


def stage_section(trace: Trace, stage: Stage, opts: ReportOptions, images: list[int],
                  stats_row: dict | None = None) -> str:
    sub = " · ".join(t for t in (stage.kind, stage.op, stage.shape_str, params_text(stage)) if t)
    parts = [f"<section class='rp-stage' id='{stage_id(stage)}'>",
             f"<h3>{stage.index}. {escape(stage.name)}</h3>",
             f"<p class='cl-muted'>{escape(sub)}</p>",
             f"<p>{escape(describe_stage(trace, stage))}</p>"]
    if stats_row is not None:
        parts.append(stats_table([stats_row]))
    for i in images:
        if len(images) > 1 or trace.batch_size > 1:
            parts.append(f"<h4>image {i}</h4>")
        parts.append(channel_gallery(stage, i, opts.norm, opts.cmap, opts.first, opts.thumb,
                                     opts.max_channels))
    parts.append("<p class='rp-top'><a href='#contents'>↑ contents</a></p></section>")
    return "".join(parts)
