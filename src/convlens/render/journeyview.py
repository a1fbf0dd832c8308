"""``journey()``: the input and every stage as the graph runs, and ``batch()``: images side by side.

The journey lays out the Trace's graph (``Stage.sources``), not the list order: the
main path left to right, side branches in lanes above and below it, an arrow from
every source into every merge (see :mod:`convlens.render.graphlayout`).  Long networks
collapse repeated blocks (``layer1.0.*``) into one panel each (the block's output),
which ``expand=`` opens; the caption says what is shown and what is collapsed.
"""
from __future__ import annotations

from typing import Literal, Sequence

from PIL import Image, ImageDraw

from convlens.errors import RenderError
from convlens.preprocess import describe_steps
from convlens.trace import Stage, Trace
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.graphlayout import GraphLayout, Geometry, block_ranges, layout_graph, place, restrict, stage_graph
from convlens.render.layout import Block, Placed, draw, hstack, place_pad, place_v, vstack
from convlens.render.panel import MIN_TILE, finish, input_panel, network_input_panel, short_titles, stage_panel
from convlens.render.panel import nonfinite_totals
from convlens.render.predictionsview import predictions_panel
from convlens.render.resolve import as_stage, check_images, check_int, check_options, shared_ranges, stage_range
from convlens.render.scale import NORM_LABELS, Norm
from convlens.render.text import INK, LABEL, MUTED, TITLE, line_height, text_image, wrap_text

__all__ = ["journey", "journey_layout", "batch", "global_range"]

_ARROW = (150, 150, 150)
_BLOCK = (37, 99, 235)
_GAP_X = 30


def global_range(stages: Sequence[Stage]) -> tuple[float, float] | None:
    """One range over every stage (all images): what ``norm="global"`` maps."""
    ranges = [r for r in (stage_range(s) for s in stages) if r is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def journey_layout(
    trace: Trace, layers: str | Sequence[str] | None = None,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
    max_panels: int = 48,
) -> tuple[GraphLayout, list[Stage]]:
    """The journey's graph: ``(layout, stages)``: ``layout.nodes[k].shows`` indexes
    ``stages`` (the selected ones); ``layout.edges`` are the arrows drawn, as names."""
    every = list(trace.stages)
    preds = stage_graph(every)
    if layers is not None:
        chosen = {id(s) for s in trace.select(layers)}
        keep = [p for p, s in enumerate(every) if id(s) in chosen]
        preds, stages = restrict(preds, keep), [every[p] for p in keep]
    else:
        stages = every
    max_panels = check_int(max_panels, "max_panels", 2)
    lay = layout_graph([s.name for s in stages], preds, depth=depth, expand=expand,
                       max_nodes=max_panels)
    return lay, stages


def _caption(lay: GraphLayout, stages: list[Stage], total: int, layers) -> str:
    """What the journey shows when it is not every stage: the selection, the blocks."""
    shown = len(lay.nodes) - 1
    blocks = lay.blocks
    if not blocks and len(stages) == total:
        return ""
    parts = [f"showing {shown} of {total} stages"]
    if len(stages) != total:
        sel = layers if isinstance(layers, str) else ",".join(layers)
        parts[0] += f" (layers={sel!r} selects {len(stages)})"
    if blocks:
        inside = sum(len(b.members) for b in blocks)
        parts[0] += f", {len(blocks)} of them collapsed blocks drawn as their output"
        parts.append(f"collapsed ({inside} stages): "
                     + ", ".join(block_ranges([b.name for b in blocks]))
                     + f"; open one with expand=['{blocks[0].name}'], all with depth='full'")
    return "; ".join(parts)


def _arrows(img: Image.Image, geo: Geometry, dx: int, dy: int) -> None:
    d = ImageDraw.Draw(img)
    for _, _, pts in geo.routes:
        q = [(x + dx, y + dy) for x, y in pts]
        q[-1] = (q[-1][0] - 5, q[-1][1])
        d.line(q, fill=_ARROW, width=2, joint="curve")
        x, y = q[-1]
        d.polygon([(x - 2, y - 4), (x + 4, y), (x - 2, y + 4)], fill=_ARROW)
    for pts in geo.stubs:
        d.line([(x + dx, y + dy) for x, y in pts], fill=_ARROW, width=2)


def _offset(placed: Placed, target: object) -> tuple[int, int] | None:
    """Where ``target`` (a part somewhere inside ``placed``) is drawn."""
    stack: list[tuple[object, int, int]] = [(placed, 0, 0)]
    while stack:
        item, x, y = stack.pop()
        if item is target:
            return x, y
        if isinstance(item, Placed):
            stack.extend((b, x + bx, y + by) for b, bx, by in item.parts)
    return None


@shared_ranges()  # each stage's range once, not once per image
def journey(
    trace: Trace,
    norm: Norm = "stage",
    images: int | Sequence[int] | None = None,
    tile: int = 128,
    per_row: int = 6,
    max_channels: int = 16,
    layers: str | Sequence[str] | None = None,
    cmap: CmapName | None = None,
    top: int = 5,
    *,
    depth: int | Literal["auto", "full"] = "auto",
    expand: Sequence[str] = (),
    max_panels: int = 48,
) -> Figure:
    """The input picture, then every stage (or those ``layers`` selects) laid out as the
    network's graph: the main path left to right, branches beside it, one arrow from
    every source into every merge.

    Each panel is titled with the stage name, kind and ``HxWxC`` shape: 3 channels as
    RGB, 1 as a heatmap, more as a mini-grid of the first ``max_channels``, flat stages
    as bars; each states its colour range.  Rows wrap after ``per_row`` columns, only
    where no branch is open.  More than ``max_panels`` stages: blocks of stages sharing
    a name prefix (``layer1.0.*``) collapse into one panel, the block's output, at the
    deepest name ``depth`` that fits (``depth=2``: ``layer1.0``; ``"full"``: every
    stage); ``expand=["layer1.0"]`` opens a block.  A caption says what is shown.  A
    batch gives one band per image (``images`` picks which).  A classifier trace (see
    :mod:`convlens.analysis.predictions`) ends with a panel of its ``top`` classes (0: none).
    ``meta["edges"]`` lists the arrows as ``[from, to]`` names.
    """
    if not isinstance(trace, Trace):
        raise RenderError(f"render.journey needs a convlens Trace; got {type(trace).__name__}")
    norm, cmap = check_options(norm, cmap)
    chosen = check_images(trace.batch_size, images, "the trace")
    tile_px = check_int(tile, "tile", MIN_TILE)
    per_row = check_int(per_row, "per_row", 1)
    max_channels = check_int(max_channels, "max_channels", 1)
    lay, selected = journey_layout(trace, layers, depth, expand, max_panels)
    stages = [selected[node.shows] for node in lay.nodes[1:]]
    for s in stages:
        if s.output.shape[0] != trace.batch_size:
            raise RenderError(
                f"stage {s.name!r} holds {s.output.shape[0]} images but the trace input holds "
                f"{trace.batch_size}; expected one output per input image"
            )
    vrange = global_range(stages) if norm == "global" else None
    top = check_int(top, "top", 0)
    preds = None
    if top:
        from convlens.analysis.predictions import is_classifier

        preds = trace.predictions(top) if is_classifier(trace) else None
    # the predictions panel, when there is one, follows the last stage as one more node
    draw_lay = lay
    if preds is not None:
        end = lay.spine[-1]
        draw_lay = GraphLayout(lay.nodes + [lay.nodes[end]], lay.preds + [(end,)],
                               lay.column + [lay.column[end] + 1], lay.lane + [0],
                               lay.spine + [len(lay.nodes)], lay.stages)
    anchor = line_height(TITLE) + 1 + line_height(LABEL) + 3 + tile_px // 2

    bands: list[Block | Image.Image | Placed] = []
    drawn_bands: list[tuple[Placed, Geometry]] = []
    # titles cut to the panel keep their distinguishing tail and differ from each other
    titles = short_titles([s.name for s in stages], max(tile_px, 120))
    for i in chosen:
        # the input as the network saw it (resized, greyscale, inverted...): LeNet's 32x32
        panels: list[Block] = [network_input_panel(trace, i, tile_px)]
        for node, s in zip(lay.nodes[1:], stages):
            p = stage_panel(s, i, norm, tile_px, max_channels, cmap, vrange, title=titles[s.name])
            if node.block:
                label = [text_image(f"block {node.name}", TITLE, _BLOCK, width=p.width),
                         text_image(f"{len(node.members)} stages, output shown", LABEL, _BLOCK,
                                    width=p.width)]
                p = vstack([p, *label], gap=2)
                p.records[0]["block"] = node.name
                p.records[0]["block_stages"] = len(node.members)
            panels.append(p)
        if preds is not None:
            panels.append(predictions_panel(preds[i], max(tile_px, 200), f"top {len(preds[i])}",
                                            f"from {trace.stages[-1].name}", image=i))
        geo = place(draw_lay, [(p.width, p.height) for p in panels], [anchor] * len(panels),
                    gap_x=_GAP_X, gap_y=14, per_row=per_row)
        band = Placed(geo.width, geo.height, [(p, b[0], b[1]) for p, b in zip(panels, geo.boxes)])
        drawn_bands.append((band, geo))
        if trace.batch_size > 1:
            label = text_image(f"image {i} of {trace.batch_size}", TITLE, INK)
            bands.append(place_v([label, band], gap=4))
        else:
            bands.append(band)
    head = f"{trace.model_name} · {trace.framework} · {len(selected)} stages · {NORM_LABELS[norm]}"
    if norm == "global" and vrange is not None:
        head += " (one range over all stages)"
    caption = _caption(lay, selected, len(trace.stages), layers)
    pre = describe_steps(trace.preprocessing)
    if pre != "none":  # what the network was fed is part of the story
        caption = f"{caption}; input preprocessing: {pre}" if caption else f"input preprocessing: {pre}"
    width = max(max(b.width for b, _ in drawn_bands), 600)
    lines = [text_image(head, LABEL, MUTED)]
    lines += [text_image(t, LABEL, MUTED) for t in (wrap_text(caption, width, LABEL) if caption else [])]
    body = place_v([place_v(lines, gap=2), *bands], gap=12)
    meta = {
        "view": "journey", "model": trace.model_name, "framework": trace.framework, "norm": norm,
        "images": chosen, "stages": [s.name for s in stages],
        "nodes": [n.name for n in lay.nodes[1:]],
        "edges": [list(e) for e in lay.edges],
        "collapsed": [{"block": n.name, "stages": len(n.members), "shows": selected[n.shows].name}
                      for n in lay.blocks],
        "caption": caption,
        "global_range": list(vrange) if vrange is not None else None,
        "predictions": [[p._asdict() for p in preds[i]] for i in chosen] if preds else None,
    }
    # = finish(vstack(...), meta), each panel pasted once into the final picture
    outer = place_pad(body, 10, 10, 10, 10)
    drawn = draw(outer)
    for band, geo in drawn_bands:
        at = _offset(outer, band)
        assert at is not None
        _arrows(drawn.image, geo, *at)
    return Figure(drawn.image, dict(meta, panels=drawn.records, **nonfinite_totals(drawn.records)))


@shared_ranges()
def batch(
    stage: Stage | Trace,
    images: int | Sequence[int] | None = None,
    norm: Norm = "stage",
    tile: int = 192,
    max_channels: int = 16,
    cmap: CmapName | None = None,
    vrange: tuple[float, float] | None = None,
    *,
    layer: str | int | None = None,
) -> Figure:
    """Several images of a batch side by side, all through the same stage (a Trace with
    no ``layer`` shows its input pictures).  With ``norm="stage"`` they share one range."""
    norm, cmap = check_options(norm, cmap)
    tile_px = check_int(tile, "tile", MIN_TILE)
    max_channels = check_int(max_channels, "max_channels", 1)
    if isinstance(stage, Trace) and layer is None:
        chosen = check_images(stage.batch_size, images, "the trace")
        panels = [input_panel(stage.input, i, tile_px) for i in chosen]
        head = f"input · {len(chosen)} of {stage.batch_size} images"
        view_stage = "input"
    else:
        st = as_stage(stage, layer)
        chosen = check_images(int(st.output.shape[0]), images, f"stage {st.name!r}")
        panels = [stage_panel(st, i, norm, tile_px, max_channels, cmap, vrange) for i in chosen]
        head = f"{st.name} · {len(chosen)} of {st.output.shape[0]} images · {NORM_LABELS[norm]}"
        view_stage = st.name
    labelled = [
        vstack([text_image(f"image {i}", LABEL, INK), p], gap=2) for i, p in zip(chosen, panels)
    ]
    body = vstack([text_image(head, LABEL, MUTED), hstack(labelled, gap=18)], gap=10)
    return finish(body, {"view": "batch", "stage": view_stage, "norm": norm, "images": chosen})
