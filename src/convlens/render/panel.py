"""Compact panels: one stage of one image in a ``tile``-pixel square, titled, with its
colour scale under it.  ``journey()`` and ``batch()`` are made of these.

A panel's meta record: ``stage``, ``title`` (the name as drawn, cut to the panel with
its tail kept: :func:`short_title`), ``kind``, ``shape`` (HxWxC), ``image``, ``norm``,
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
from convlens.render.resolve import channel_scales, drawn_nonfinite, rgb_range, vector_scale
from convlens.render.scale import NORM_LABELS, Norm, Scale, nonfinite_note
from convlens.render.scaleset import ScaleSet
from convlens.render.text import INK, LABEL, MUTED, TITLE, fit, fmt, text_image, text_width, wrap_text
from convlens.render.tiles import heat_tile, photo_pixels, rgb_pixels, tile

__all__ = [
    "stage_panel", "input_panel", "header", "wrap", "stage_record", "rgb_legend", "per_map_note",
    "MIN_TILE", "finish", "SCALE_KEYS", "nonfinite_totals", "short_title", "short_titles", "network_input",
    "network_input_panel",
]

MIN_TILE = 64
SCALE_KEYS = ("vmin", "vmax", "cmap", "signed", "constant", "mean", "std", "empty")
"""The Scale fields a panel record repeats at its top level when one scale is shared."""


def header(title: str, subtitle: str | None, width: int) -> Block:
    """The title (cut to ``width``) over a muted subtitle (wrapped to ``width``)."""
    lines = [text_image(title, TITLE, INK, width=width)]
    if subtitle:
        lines += [text_image(t, LABEL, MUTED, width=width) for t in wrap_text(subtitle, width, LABEL)]
    return vstack(lines, gap=1)


def _title_candidates(name: str, width: int, size: int) -> list[str]:
    """Ways to write ``name`` in ``width`` pixels, most informative first: whole; else
    with dotted parts left out in the middle or at the start (``blocks.14.expand.bn`` ->
    ``...14.expand.bn``, ``blocks...expand.bn``), always keeping the last part, the one
    that tells a block's conv, norm and activation apart; else its right end."""
    if text_width(name, size) <= width:
        return [name]
    parts = name.split(".")
    n = len(parts)
    found: list[tuple[int, int, str]] = []
    for i in range(n):  # keep parts[:i] and parts[n - j:]
        for j in range(1, n - i):
            text = (".".join(parts[:i]) if i else "") + "..." + ".".join(parts[n - j:])
            if text_width(text, size) <= width:
                found.append((len(text) - 3, j, text))
    found.sort(key=lambda f: (-f[0], -f[1]))
    out = [t for _, _, t in found]
    tail = name
    while tail and text_width("..." + tail, size) > width:
        tail = tail[1:]
    out += ["..." + tail, fit(name, width, size)]
    return list(dict.fromkeys(out))


def short_title(name: str, width: int, size: int = TITLE) -> str:
    """``name`` written to fit ``width`` pixels, keeping its distinguishing tail
    (``blocks.14.expand.bn`` -> ``...14.expand.bn``) instead of cutting the end."""
    return _title_candidates(name, width, size)[0]


def short_titles(names: Sequence[str], width: int, size: int = TITLE) -> dict[str, str]:
    """:func:`short_title` for panels drawn together, made distinct: where two names
    would be written the same, each takes its next way of being written until they differ
    (``...depthwise.conv`` twice -> ``blocks.13...conv``, ``blocks.14...conv``)."""
    cands = {n: _title_candidates(n, width, size) for n in dict.fromkeys(names)}
    pick = {n: 0 for n in cands}
    for _ in range(64):
        seen: dict[str, list[str]] = {}
        for n in cands:
            seen.setdefault(cands[n][pick[n]], []).append(n)
        moved = False
        for group in seen.values():
            if len(group) > 1:
                for n in group:
                    if pick[n] + 1 < len(cands[n]):
                        pick[n] += 1
                        moved = True
        if not moved:
            break
    return {n: cands[n][pick[n]] for n in cands}


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


def per_map_note(scales: Sequence[Scale]) -> list[str]:
    """The legend of maps each on its own scale: two lines, ``own range per map`` and
    where the maps' tops lie (``tops 0.0185 ... 1.52``), so no line break lands inside
    a phrase."""
    tops = [s.vmax for s in scales]
    lo, hi = min(tops), max(tops)
    signed = any(s.signed for s in scales)
    pm = "±" if signed else ""
    span = f"{pm}{fmt(lo)}" if lo == hi else f"{pm}{fmt(lo)} ... {pm}{fmt(hi)}"
    return ["own range per map", f"{'top' if lo == hi else 'tops'} {span}"]


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
    range_label: str | None = None, title: str | None = None,
) -> Block:
    """One stage of one image as a compact panel (arguments already checked).
    ``range_label`` replaces the norm's name under the colour scale (e.g. "row range"
    when ``vrange`` is shared by a row of panels drawn with ``norm="global"``);
    ``title`` replaces the stage name written over it (default: :func:`short_title`)."""
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
            notes += per_map_note(scales)
    shown = title if title is not None else short_title(stage.name, width)
    parts = [header(shown, f"{stage.kind} · {stage.shape_str}", width), body, *footer]
    counts = drawn_nonfinite(stage, image, None if view == "bars" else range(
        3 if view == "rgb" else min(stage.channels, max_channels)))
    bad = nonfinite_note(counts)  # NaN and inf named in the legend, counted in the record
    notes += [bad] if bad else []
    if notes:
        parts.append(legend(notes, width))
    rec = stage_record(stage, image, norm, view)
    rec.update(nan=counts["nan"], inf=counts["inf"], **({"nonfinite": bad} if bad else {}))
    if shared is not None:
        rec.update({k: v for k, v in shared.as_meta().items() if k in SCALE_KEYS})
    elif view == "rgb":
        rec.update(vmin=rng["vmin"], vmax=rng["vmax"])
    rec.update(title=shown, labels=labels, notes=notes, channels_shown=len(body.records) if view == "grid" else None,
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


def _step_words(step: dict[str, Any]) -> str | None:
    op = step.get("op")
    if op == "resize":
        (h0, w0), (h1, w1) = step["from"], step["to"]
        return f"resized {h0}x{w0} -> {h1}x{w1}"
    return {"grayscale": "greyscale", "invert": "inverted", "bgr": "BGR (drawn as RGB)",
            "scale": f"x{step.get('factor', 1):g} (undone here)",
            "normalize": "mean/std normalised (undone here)"}.get(str(op), None if op == "layout"
                                                                  else str(op))


def network_input(trace: Any, image: int) -> tuple[np.ndarray, list[str]] | None:
    """What the network saw of image ``image``, as an ``(h, w, 3)`` picture in [0, 1],
    and the preprocessing steps in words; None when preprocessing changed nothing a
    picture shows (only the layout) or the model input is not kept.

    The picture is ``trace.model_input`` with ``normalize`` and ``scale`` undone, so it
    is the resized, greyscale, inverted... image in the model's own size and colours."""
    steps = [st for st in (trace.preprocessing or []) if st.get("op") != "layout"]
    x = trace.model_input
    if not steps or x is None or np.asarray(x).ndim != 4 or x.shape[1] not in (1, 3):
        return None
    pic = np.asarray(x[image], dtype=np.float64)
    for st in reversed(steps):
        if st.get("op") == "normalize":
            c = pic.shape[0]
            mean = np.resize(np.asarray(st["mean"], np.float64), c)[:, None, None]
            std = np.resize(np.asarray(st["std"], np.float64), c)[:, None, None]
            pic = pic * std + mean
        elif st.get("op") == "scale" and st.get("factor"):
            pic = pic / float(st["factor"])
        elif st.get("op") == "bgr":
            pic = pic[::-1]
    pic = np.clip(np.nan_to_num(np.moveaxis(pic, 0, -1), nan=0.0), 0.0, 1.0)
    if pic.shape[-1] == 1:
        pic = np.repeat(pic, 3, axis=-1)
    words = [w for w in (_step_words(st) for st in steps) if w]
    return pic.astype(np.float32), words


def network_input_panel(trace: Any, image: int, tile_px: int = 128) -> Block:
    """The input as the network saw it (see :func:`network_input`), titled "network
    input" with the preprocessing under it; the plain :func:`input_panel` when
    preprocessing changed nothing."""
    seen = network_input(trace, image)
    if seen is None:
        return input_panel(trace.input, image, tile_px)
    pic, words = seen
    h, w = pic.shape[:2]
    c = int(trace.model_input.shape[1])
    width = max(tile_px, 120)
    body = tile(photo_pixels(pic), {"channel": [0, 1, 2] if c == 3 else [0], "vmin": 0.0,
                                    "vmax": 1.0}, box=tile_px)
    notes = ["preprocessed: " + ", ".join(words), ("grey" if c == 1 else "RGB") + ": 0 ... 1 -> 0 ... 255"]
    parts = [header("network input", f"image · {h}x{w}x{c}", width), body, legend(notes, width)]
    rec = {
        "stage": "input", "kind": "input", "shape": f"{h}x{w}x{c}", "image": image,
        "norm": None, "view": "photo", "vmin": 0.0, "vmax": 1.0, "labels": [], "notes": notes,
        "preprocessed": True, "steps": words,
    }
    return wrap(vstack(parts, gap=3, align="center"), rec)


def finish(block: Block, meta: dict[str, Any], margin: int = 10) -> Figure:
    """The final Figure: ``block`` with a white margin; ``meta["panels"]`` its records."""
    block = pad(block, margin, margin, margin, margin)
    return Figure(block.image, dict(meta, panels=block.records, **nonfinite_totals(block.records)))


def nonfinite_totals(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """``{"nan": n, "inf": n}`` over the panel records that count them (none: ``{}``)."""
    if not any("nan" in r for r in records):
        return {}
    return {"nan": sum(r.get("nan", 0) for r in records),
            "inf": sum(r.get("inf", 0) for r in records)}
