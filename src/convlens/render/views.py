"""Detailed views of one stage of one image: ``rgb``, ``heatmap``, ``bars`` and ``stage``
(which picks one of them, or ``grid``, from the stage's shape)."""
from __future__ import annotations

from convlens.errors import RenderError
from convlens.trace import Stage, Trace
from convlens.render.bars import bar_chart
from convlens.render.colorbar import colorbar, legend
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.gridview import grid
from convlens.render.layout import vstack, zoom_factor
from convlens.render.panel import SCALE_KEYS, finish, header, rgb_legend, stage_record, wrap
from convlens.render.resolve import (
    as_stage, channel_scales, check_channel, check_image, check_int, check_options,
    drawn_nonfinite, rgb_range, require_spatial, vector_scale,
)
from convlens.render.scale import NORM_LABELS, Norm, nonfinite_note
from convlens.render.text import fmt
from convlens.render.tiles import heat_pixels, rgb_pixels, tile

__all__ = ["rgb", "heatmap", "bars", "stage"]


def _nonfinite(rec: dict, counts: dict) -> list[str]:
    """Count NaN and inf in ``rec``; the caption line naming them (or none)."""
    rec.update(nan=counts["nan"], inf=counts["inf"])
    bad = nonfinite_note(counts)
    if bad:
        rec["nonfinite"] = bad
    return [bad] if bad else []



def rgb(
    stage: Stage | Trace, image: int = 0, norm: Norm = "stage",
    vrange: tuple[float, float] | None = None, size: int = 256, *, layer: str | int | None = None,
) -> Figure:
    """A 3-channel stage as an RGB composite (channel 0 red, 1 green, 2 blue).

    The three channels share one linear range mapped to 0..255: the range of the
    data (``map``: this image, ``stage``: the batch, ``global``: ``vrange``) widened
    to include 0, or mean ± 3 sd (``standard``).  The legend states it.
    """
    st = as_stage(stage, layer)
    require_spatial(st, "rgb")
    if st.channels != 3:
        raise RenderError(
            f"render.rgb needs a 3-channel stage; stage {st.name!r} has {st.channels} channels "
            f"(shape {st.shape_str}); use render.grid or render.stage"
        )
    i = check_image(st, image)
    norm, _ = check_options(norm, None)
    size = check_int(size, "size", 8)
    rng = rgb_range(st, i, norm, vrange)
    _, _, h, w = st.output.shape
    zoom = zoom_factor(h, w, size)
    body = tile(rgb_pixels(st.output[i], rng["vmin"], rng["vmax"]),
                {"channel": [0, 1, 2], **rng}, zoom=zoom)
    width = max(body.width, 300)
    notes = rgb_legend(rng) + [f"RGB composite of channels 0, 1, 2 · {NORM_LABELS[norm]}"]
    title = header(st.name, f"{st.kind} · {st.op} · {st.shape_str} · image {i}", width)
    rec = stage_record(st, i, norm, "rgb")
    notes += _nonfinite(rec, drawn_nonfinite(st, i))
    rec.update(vmin=rng["vmin"], vmax=rng["vmax"], labels=[], notes=notes, zoom=zoom)
    panel = wrap(vstack([title, body, legend(notes, width)], gap=5), rec)
    return finish(panel, {"view": "rgb"})


def heatmap(
    stage: Stage | Trace, channel: int = 0, image: int = 0, norm: Norm = "stage",
    cmap: CmapName | None = None, vrange: tuple[float, float] | None = None, size: int = 256,
    *, layer: str | int | None = None,
) -> Figure:
    """One channel of one image as a heatmap with a colour bar of the real values.

    The map is enlarged by an integer factor (nearest neighbour) to about ``size``
    pixels (a 5x5 map becomes 255x255); maps larger than ``size`` keep their pixels.
    """
    st = as_stage(stage, layer)
    require_spatial(st, "heatmap")
    c = check_channel(st, channel)
    i = check_image(st, image)
    norm, cmap = check_options(norm, cmap)
    size = check_int(size, "size", 8)
    scale = channel_scales(st, i, norm, [c], cmap, vrange)[0]
    _, _, h, w = st.output.shape
    zoom = zoom_factor(h, w, size)
    body = tile(heat_pixels(st.output[i, c], scale), {"channel": c, **scale.as_meta()}, zoom=zoom)
    width = max(body.width, 300)
    caption = f"{NORM_LABELS[norm]} · {scale.cmap}"
    if scale.mean is not None:
        caption = f"standardised: mean {fmt(scale.mean)}, sd {fmt(scale.std or 0.0)} · {scale.cmap}"
    bar, labels = colorbar(scale, min(max(body.width, 200), 480), caption=caption)
    sub = f"{st.kind} · {st.op} · {st.shape_str} · channel {c} of {st.channels} · image {i}"
    rec = stage_record(st, i, norm, "heatmap")
    rec.update({k: v for k, v in scale.as_meta().items() if k in SCALE_KEYS})
    rec.update(channel=c, labels=labels, zoom=zoom)
    bad = _nonfinite(rec, drawn_nonfinite(st, i, [c]))
    panel = wrap(vstack([header(st.name, sub, width), body, bar]
                        + [legend(bad, width)] * bool(bad), gap=5), rec)
    return finish(panel, {"view": "heatmap"})


def bars(
    stage: Stage | Trace, image: int = 0, norm: Norm = "stage", cmap: CmapName | None = None,
    vrange: tuple[float, float] | None = None, width: int = 560, height: int = 160,
    *, layer: str | int | None = None,
) -> Figure:
    """A flat ``(B, N)`` stage of one image as a bar chart over a colour strip, values stated."""
    st = as_stage(stage, layer)
    if st.is_spatial:
        raise RenderError(
            f"render.bars needs a flat (B, N) stage; stage {st.name!r} is spatial "
            f"(shape {st.shape_str}); use render.heatmap, render.grid or render.stage"
        )
    i = check_image(st, image)
    norm, cmap = check_options(norm, cmap)
    width = check_int(width, "width", 16)
    height = check_int(height, "height", 16)
    scale = vector_scale(st, i, norm, cmap, vrange)
    body = bar_chart(st.output[i], scale, width=width, height=height,
                     record={"channel": None, **scale.as_meta()})
    bar, labels = colorbar(scale, min(max(body.width // 2, 200), 400),
                           caption=f"{NORM_LABELS[norm]} · {scale.cmap}")
    sub = f"{st.kind} · {st.op} · {st.shape_str} values · image {i}"
    rec = stage_record(st, i, norm, "bars")
    rec.update({k: v for k, v in scale.as_meta().items() if k in SCALE_KEYS})
    rec.update(labels=labels)
    bad = _nonfinite(rec, drawn_nonfinite(st, i))
    panel = wrap(vstack([header(st.name, sub, max(body.width, 300)), body, bar]
                        + [legend(bad, max(body.width, 300))] * bool(bad), gap=5), rec)
    return finish(panel, {"view": "bars"})


def stage(
    stage: Stage | Trace, image: int = 0, norm: Norm = "stage", cmap: CmapName | None = None,
    vrange: tuple[float, float] | None = None, max_channels: int | None = None,
    *, layer: str | int | None = None,
) -> Figure:
    """The natural view of a stage: ``rgb`` for 3 channels, ``heatmap`` for 1, ``grid``
    for any other channel count, ``bars`` for a flat stage."""
    st = as_stage(stage, layer)
    if not st.is_spatial:
        return bars(st, image, norm, cmap, vrange)
    if st.channels == 3 and max_channels is None:
        check_options(norm, cmap)
        return rgb(st, image, norm, vrange)
    if st.channels == 1:
        return heatmap(st, 0, image, norm, cmap, vrange)
    return grid(st, image, norm, max_channels=max_channels, cmap=cmap, vrange=vrange)
