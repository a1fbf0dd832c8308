"""``journey()``: the input and every stage in order, and ``batch()``: images side by side."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from ..errors import RenderError
from ..trace import Stage, Trace
from .colormaps import CmapName
from .figure import Figure
from .layout import Block, Placed, draw, hstack, place_h, place_pad, place_v, vstack
from .panel import MIN_TILE, finish, input_panel, stage_panel
from .predictionsview import predictions_panel
from .resolve import as_stage, check_images, check_int, check_options, shared_ranges, stage_range
from .scale import NORM_LABELS, Norm
from .text import BACKGROUND, INK, LABEL, MUTED, TITLE, line_height, text_image

__all__ = ["journey", "batch", "global_range"]

_ARROW = (150, 150, 150)


def global_range(stages: Sequence[Stage]) -> tuple[float, float] | None:
    """One range over every stage (all images): what ``norm="global"`` maps."""
    ranges = [r for r in (stage_range(s) for s in stages) if r is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _arrow(height: int, y: int) -> Image.Image:
    img = Image.new("RGB", (14, max(height, y + 6)), BACKGROUND)
    d = ImageDraw.Draw(img)
    d.line([1, y, 9, y], fill=_ARROW, width=2)
    d.polygon([(8, y - 4), (13, y), (8, y + 4)], fill=_ARROW)
    return img


def _row(panels: list[Block], tile_px: int) -> Placed:
    """Panels left to right with arrows between them, level with the pictures."""
    y = line_height(TITLE) + 1 + line_height(LABEL) + 3 + tile_px // 2
    h = max(p.height for p in panels)
    parts: list[Block | Image.Image] = []
    for k, p in enumerate(panels):
        if k:
            parts.append(_arrow(h, y))
        parts.append(p)
    return place_h(parts, gap=4)


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
) -> Figure:
    """The input picture, then every stage in order (or those ``layers`` selects).

    Each panel is titled with the stage name, kind and ``HxWxC`` shape: 3 channels as
    RGB, 1 as a heatmap, more as a mini-grid of the first ``max_channels``, flat stages
    as bars; each states its colour range.  Panels wrap after ``per_row``.  A batch
    gives one band per image (``images`` picks which).  A classifier trace (see
    :mod:`convlens.predictions`) ends with a panel of its ``top`` classes (0: none).
    """
    if not isinstance(trace, Trace):
        raise RenderError(f"render.journey needs a convlens Trace; got {type(trace).__name__}")
    norm, cmap = check_options(norm, cmap)
    chosen = check_images(trace.batch_size, images, "the trace")
    tile_px = check_int(tile, "tile", MIN_TILE)
    per_row = check_int(per_row, "per_row", 1)
    max_channels = check_int(max_channels, "max_channels", 1)
    stages = trace.select(layers) if layers is not None else list(trace.stages)
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
        from ..predictions import is_classifier

        preds = trace.predictions(top) if is_classifier(trace) else None

    bands: list[Block | Image.Image | Placed] = []
    for i in chosen:
        panels = [input_panel(trace.input, i, tile_px)]
        panels += [stage_panel(s, i, norm, tile_px, max_channels, cmap, vrange) for s in stages]
        if preds is not None:
            panels.append(predictions_panel(preds[i], max(tile_px, 200), f"top {len(preds[i])}",
                                            f"from {trace.stages[-1].name}", image=i))
        rows = [_row(panels[k:k + per_row], tile_px) for k in range(0, len(panels), per_row)]
        band = place_v(rows, gap=14)
        if trace.batch_size > 1:
            label = text_image(f"image {i} of {trace.batch_size}", TITLE, INK)
            band = place_v([label, band], gap=4)
        bands.append(band)
    head = f"{trace.model_name} · {trace.framework} · {len(stages)} stages · {NORM_LABELS[norm]}"
    if norm == "global" and vrange is not None:
        head += " (one range over all stages)"
    body = place_v([text_image(head, LABEL, MUTED), *bands], gap=12)
    meta = {
        "view": "journey", "model": trace.model_name, "framework": trace.framework, "norm": norm,
        "images": chosen, "stages": [s.name for s in stages],
        "global_range": list(vrange) if vrange is not None else None,
        "predictions": [[p._asdict() for p in preds[i]] for i in chosen] if preds else None,
    }
    # = finish(vstack(...), meta), each panel pasted once into the final picture
    drawn = draw(place_pad(body, 10, 10, 10, 10))
    return Figure(drawn.image, dict(meta, panels=drawn.records))


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
