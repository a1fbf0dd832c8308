"""Compact panels: one stage of one image in a ``tile``-pixel square, titled, with its
colour scale under it.  ``journey()`` and ``batch()`` are made of these.

A panel's meta record: ``stage``, ``kind``, ``shape`` (HxWxC), ``image``, ``norm``,
``view`` (photo / rgb / heatmap / grid / bars), the shared scale's ``vmin``/``vmax``/
``cmap``... (None when each map has its own, see ``tiles``), ``tiles`` (one record per
drawn map with its ``box``, ``zoom`` and scale), ``labels`` (colour-bar labels),
``notes`` (legend lines) and the panel's ``box``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from convlens.trace import Stage
from convlens.render.bars import bar_chart
from convlens.render.colorbar import colorbar, legend
from convlens.render.colormaps import CmapName
from convlens.render.figure import Figure
from convlens.render.layout import Block, pad, vstack
from convlens.render.mosaic import heat_grid
from convlens.render.resolve import channel_scales, rgb_range, vector_scale
from convlens.render.scale import NORM_LABELS, Norm, Scale
from convlens.render.scaleset import ScaleSet
from convlens.render.text import INK, LABEL, MUTED, TITLE, fmt, text_image, wrap_text
from convlens.render.tiles import heat_tile, photo_pixels, rgb_pixels, tile

__all__ = [
    "stage_panel", "input_panel", "header", "wrap", "stage_record", "rgb_legend", "per_map_note",
    "MIN_TILE", "finish", "SCALE_KEYS",
]

MIN_TILE = 64
SCALE_KEYS = ("vmin", "vmax", "cmap", "signed", "constant", "mean", "std")
"""The Scale fields a panel record repeats at its top level when one scale is shared."""


def header(title: str, subtitle: str | None, width: int) -> Block:
    """The title (cut to ``width``) over a muted subtitle (wrapped to ``width``)."""
    lines = [text_image(title, TITLE, INK, width=width)]
    if subtitle:
        lines += [text_image(t, LABEL, MUTED, width=width) for t in wrap_text(subtitle, width, LABEL)]
    return vstack(lines, gap=1)


def wrap(block: Block, record: dict[str, Any]) -> Block:
    """``block`` as one record: ``record`` + its drawn ``tiles`` + its whole ``box``."""
    rec = dict(record, tiles=block.records, box=(0, 0, block.width, block.height))
    return Block(block.image, [rec])


def stage_record(stage: Stage, image: int, norm: Norm | None, view: str) -> dict[str, Any]:
    return {
        "stage": stage.name, "kind": stage.kind, "shape": stage.shape_str, "image": image,
        "norm": norm, "view": view, "vmin": None, "vmax": None,
    }


def rgb_legend(rng: dict[str, Any], compact: bool = False) -> list[str]:
    """``R,G,B: -0.42 ... 1.37 -> 0 ... 255`` (two lines when ``compact``)."""
    lines = []
    if "mean" in rng:
        lines.append(f"standardised: mean {fmt(rng['mean'])}, sd {fmt(rng['std'])}")
    span = f"R,G,B: {fmt(rng['vmin'])} ... {fmt(rng['vmax'])}"
    lines += [span, "-> 0 ... 255"] if compact else [f"{span} -> 0 ... 255"]
    return lines


def per_map_note(scales: Sequence[Scale]) -> str:
    tops = [s.vmax for s in scales]
    lo, hi = min(tops), max(tops)
    signed = any(s.signed for s in scales)
    pm = "±" if signed else ""
    span = f"{pm}{fmt(lo)}" if lo == hi else f"{pm}{fmt(lo)} ... {pm}{fmt(hi)}"
    return f"own range per map, top {span}"


def _bar_body(stage: Stage, image: int, norm: Norm, width: int, cmap, vrange) -> tuple[Block, Scale]:
    scale = vector_scale(stage, image, norm, cmap, vrange)
    body = bar_chart(
        stage.output[image], scale, width=width - 40, height=max(40, width // 2),
        record={"channel": None, **scale.as_meta()},
    )
    return body, scale


def _mini_grid(
    x: np.ndarray, channels: Sequence[int], scales: Sequence[Scale], box: int, gap: int = 2,
) -> Block:
    n = len(channels)
    cols = math.ceil(math.sqrt(n))
    sub = max(4, (box - gap * (cols - 1)) // cols - 2)  # -2: each tile's frame
    # = grid_layout([heat_tile(x[c], s, {"channel": c, **s.as_meta()}, box=sub) ...]), at once
    return heat_grid(x, channels, ScaleSet.from_scales(scales), sub, cols, gap)


def stage_panel(
    stage: Stage, image: int, norm: Norm, tile_px: int = 128, max_channels: int = 16,
    cmap: CmapName | None = None, vrange: tuple[float, float] | None = None,
    range_label: str | None = None,
) -> Block:
    """One stage of one image as a compact panel (arguments already checked).
    ``range_label`` replaces the norm's name under the colour scale (e.g. "row range"
    when ``vrange`` is shared by a row of panels drawn with ``norm="global"``)."""
    width = max(tile_px, 120)
    notes: list[str] = []
    labels: list[str] = []
    shared: Scale | None = None
    footer: list[Block] = []
    if not stage.is_spatial:
        view = "bars"
        body, shared = _bar_body(stage, image, norm, width, cmap, vrange)
        notes.append(range_label or NORM_LABELS[norm])
    elif stage.channels == 3:
        view = "rgb"
        rng = rgb_range(stage, image, norm, vrange)
        body = tile(rgb_pixels(stage.output[image, :3], rng["vmin"], rng["vmax"]),
                    {"channel": [0, 1, 2], **rng}, box=tile_px)
        notes += rgb_legend(rng, compact=True)
    else:
        x = stage.output[image]
        chs = list(range(min(stage.channels, max_channels)))
        scales = channel_scales(stage, image, norm, chs, cmap, vrange)
        if stage.channels == 1:
            view = "heatmap"
            body = heat_tile(x[0], scales[0], {"channel": 0, **scales[0].as_meta()}, box=tile_px)
        else:
            view = "grid"
            body = _mini_grid(x, chs, scales, tile_px)
            notes.append(
                f"{len(chs)} of {stage.channels} channels" if len(chs) < stage.channels
                else f"all {stage.channels} channels"
            )
        if norm in ("stage", "global") or stage.channels == 1:
            shared = scales[0]
            bar, labels = colorbar(shared, tile_px, caption=range_label or NORM_LABELS[norm])
            footer.append(bar)
        elif norm == "standard":
            bar, labels = colorbar(scales[0], tile_px, sigma_units=True, caption="standardised per map")
            footer.append(bar)
        else:
            notes.append(per_map_note(scales))
    title = header(stage.name, f"{stage.kind} · {stage.shape_str}", width)
    parts = [title, body, *footer]
    if notes:
        parts.append(legend(notes, width))
    rec = stage_record(stage, image, norm, view)
    if shared is not None:
        rec.update({k: v for k, v in shared.as_meta().items() if k in SCALE_KEYS})
    elif view == "rgb":
        rec.update(vmin=rng["vmin"], vmax=rng["vmax"])
    rec.update(labels=labels, notes=notes, channels_shown=len(body.records) if view == "grid" else None,
               channels_total=stage.channels)
    return wrap(vstack(parts, gap=3, align="center"), rec)


def input_panel(images: np.ndarray, image: int, tile_px: int = 128, name: str = "input") -> Block:
    """The input picture ``images[image]`` (``(H, W, 3)`` in [0, 1]) as a panel."""
    img = np.asarray(images[image])
    h, w = img.shape[:2]
    width = max(tile_px, 120)
    body = tile(photo_pixels(img), {"channel": [0, 1, 2], "vmin": 0.0, "vmax": 1.0}, box=tile_px)
    notes = ["RGB: 0 ... 1", "-> 0 ... 255"]
    parts = [header(name, f"image · {h}x{w}x{img.shape[2]}", width), body, legend(notes, width)]
    rec = {
        "stage": name, "kind": "input", "shape": f"{h}x{w}x{img.shape[2]}", "image": image,
        "norm": None, "view": "photo", "vmin": 0.0, "vmax": 1.0, "labels": [], "notes": notes,
    }
    return wrap(vstack(parts, gap=3, align="center"), rec)


def finish(block: Block, meta: dict[str, Any], margin: int = 10) -> Figure:
    """The final Figure: ``block`` with a white margin; ``meta["panels"]`` its records."""
    block = pad(block, margin, margin, margin, margin)
    return Figure(block.image, dict(meta, panels=block.records))
