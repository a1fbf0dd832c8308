"""``filters()``: the kernels a conv stage learned (or was given), with one stated scale.

Three layouts, picked from the kernel ``(out, in / groups, kh, kw)``:

* ``rgb``      a first layer over RGB (3 inputs, ``groups=1``): each kernel is one colour
               patch, its input channels 0, 1, 2 drawn as red, green, blue.  All kernels
               share one symmetric range ``[-m, m]`` (``m`` = largest ``|weight|`` of the
               layer) mapped to 0..255, so 0 is mid grey (128) and a red patch means
               "this filter likes red here".
* ``matrix``   a deeper layer: a grid with one row per output channel (the first
               ``max_out``) and one column per input channel (the first ``max_in``), each
               cell a ``kh x kw`` heatmap.
* ``kernels``  one input per kernel (a 1-channel first layer, a depthwise conv): one
               ``kh x kw`` heatmap per output channel, wrapped into rows.

``matrix`` and ``kernels`` use a diverging colour map over the same ``[-m, m]`` with a
colour bar; ``m`` is always taken over *every* weight of the layer, not only the ones
drawn, so the picture does not change meaning when fewer are shown.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np

from convlens.errors import RenderError
from convlens.trace import Stage, Trace
from convlens.render.colorbar import colorbar, legend
from convlens.render.colormaps import DEFAULT_DIVERGING, CmapName
from convlens.render.figure import Figure
from convlens.render.layout import Block, grid_layout, hstack, vstack
from convlens.render.panel import finish, header
from convlens.render.resolve import check_int, check_options
from convlens.render.scale import Scale
from convlens.render.text import INK, MUTED, SMALL, fmt, text_image, text_width
from convlens.render.tiles import heat_pixels, rgb_pixels, tile

__all__ = ["filters", "FilterLayout", "FILTER_LAYOUTS", "kernel_of"]

FilterLayout = Literal["auto", "rgb", "matrix", "kernels"]
FILTER_LAYOUTS: tuple[str, ...] = get_args(FilterLayout)


def _conv_stages(trace: Trace) -> list[Stage]:
    return [s for s in trace.stages if np.ndim(s.weights.get("weight")) == 4]


def _resolve(obj: Stage | Trace, stage: str | int | None) -> Stage:
    if isinstance(obj, Stage):
        if stage is not None:
            raise RenderError("stage= only applies to a Trace; got a Stage and stage=" + repr(stage))
        return obj
    if not isinstance(obj, Trace):
        raise RenderError(f"render.filters needs a convlens Trace or Stage; got "
                          f"{type(obj).__name__}")
    if stage is not None:
        return obj[stage]
    convs = _conv_stages(obj)
    if not convs:
        raise RenderError("render.filters found no conv stage with a kernel in this trace; "
                          "expected a stage with a 4-D 'weight' (out, in, kh, kw)")
    return convs[0]


def kernel_of(st: Stage, trace: Trace | None = None) -> np.ndarray:
    """The stage's conv kernel ``(out, in / groups, kh, kw)`` as float64."""
    w = st.weights.get("weight")
    if w is None or np.ndim(w) != 4:
        have = ", ".join(f"{k} {tuple(v.shape)}" for k, v in st.weights.items()) or "none"
        convs = ", ".join(s.name for s in _conv_stages(trace)) if trace is not None else ""
        hint = f"; conv stages of this trace: {convs}" if convs else ""
        raise RenderError(
            f"render.filters needs a conv stage with a 4-D kernel (out, in, kh, kw); stage "
            f"{st.name!r} ({st.kind}) has weights: {have}{hint}")
    return np.asarray(w, dtype=np.float64)


def _layout(w: np.ndarray, groups: int, layout: str) -> str:
    if layout not in FILTER_LAYOUTS:
        raise RenderError(f"unknown filter layout {layout!r}; expected one of "
                          f"{', '.join(FILTER_LAYOUTS)}")
    per_group = w.shape[1]
    if layout == "rgb" and (per_group != 3 or groups != 1):
        raise RenderError(f"layout='rgb' needs kernels over 3 input channels (groups=1); this "
                          f"kernel is {tuple(w.shape)} with groups={groups}; use 'matrix' or "
                          "'kernels'")
    if layout != "auto":
        return layout
    if per_group == 3 and groups == 1:
        return "rgb"
    return "kernels" if per_group == 1 else "matrix"


def _label(text: str, width: int, color=MUTED) -> Block:
    return Block(text_image(text, SMALL, color, width=max(width, 1), align="center"))


def filters(
    obj: Stage | Trace,
    stage: str | int | None = None,
    *,
    layout: FilterLayout = "auto",
    max_out: int | None = None,
    max_in: int = 16,
    cell: int = 30,
    cols: int | None = None,
    cmap: CmapName | None = None,
) -> Figure:
    """The kernels of a conv stage (a Stage, or ``stage`` of a Trace: a name or index;
    default the trace's first conv) on one symmetric scale ``[-m, m]``.

    ``layout``: ``rgb``, ``matrix`` or ``kernels`` (module docs); ``auto`` picks rgb for 3
    inputs, kernels for 1 input per kernel, matrix otherwise.  ``max_out``/``max_in``
    limit the output/input channels drawn (the first ones; ``max_out`` defaults to 16
    for ``matrix``, 32 otherwise); ``cell`` is about the pixel
    size of one kernel; ``cols`` the kernels per row (rgb and kernels layouts).
    """
    st = _resolve(obj, stage)
    w = kernel_of(st, obj if isinstance(obj, Trace) else None)
    groups = int(st.params.get("groups", 1) or 1)
    mode = _layout(w, groups, layout)
    _, cmap = check_options("global", cmap)
    max_out = (16 if mode == "matrix" else 32) if max_out is None \
        else check_int(max_out, "max_out", 1)
    max_in = check_int(max_in, "max_in", 1)
    cell = check_int(cell, "cell", 4)
    n_out, per_group, kh, kw = w.shape
    finite = w[np.isfinite(w)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    scale = Scale(-m, m, cmap or DEFAULT_DIVERGING, True, "global", constant=m == 0.0)
    zoom = max(1, cell // max(kh, kw, 2))
    outs = list(range(min(n_out, max_out)))

    if mode in ("rgb", "kernels"):
        ncols = check_int(cols, "cols", 1) if cols is not None \
            else (len(outs) if len(outs) <= 8 else math.ceil(math.sqrt(len(outs) * 2)))
        cells = []
        for o in outs:
            if mode == "rgb":
                px = rgb_pixels(w[o], -m, m).copy()
                rec = {"out": o, "in": [0, 1, 2]}
            else:
                px = heat_pixels(w[o, 0], scale)
                rec = {"out": o, "in": o if groups == n_out and groups > 1 else 0}
            t = tile(px, rec, zoom=zoom)
            cells.append(vstack([_label(f"#{o}", t.width, INK), t], gap=1, align="center"))
        body = grid_layout(cells, ncols, gap=6)
        ins = [0, 1, 2] if mode == "rgb" else [0]
    else:
        ins = list(range(min(per_group, max_in)))
        tiles = {(o, i): tile(heat_pixels(w[o, i], scale), {"out": o, "in": i}, zoom=zoom)
                 for o in outs for i in ins}
        cw = tiles[outs[0], ins[0]].width
        lw = max(text_width(f"out {o}", SMALL) for o in outs) + 4
        blank = Block(text_image("", SMALL, width=lw))
        heads = [blank] + [_label(str(i), cw) for i in ins]
        rows = [hstack(heads, gap=3)]
        for o in outs:
            rows.append(hstack([Block(text_image(f"out {o}", SMALL, INK, width=lw, align="right"))]
                               + [tiles[o, i] for i in ins], gap=3, align="center"))
        grid = vstack(rows, gap=3)
        top = text_image("input channel ->", SMALL, MUTED)
        body = vstack([hstack([blank, Block(top)], gap=3), grid], gap=1)

    shape = f"{n_out} filters of {per_group}x{kh}x{kw}"
    if groups > 1:
        shape += f", groups={groups}" + (" (depthwise)" if per_group == 1 and groups == n_out else "")
    width = max(body.width, 320)
    parts: list[Block] = [header(st.name, f"{st.kind} · {st.op} · {shape} · weights", width), body]
    notes = []
    if len(outs) < n_out:
        notes.append(f"first {len(outs)} of {n_out} output channels")
    if mode == "matrix" and len(ins) < per_group:
        notes.append(f"first {len(ins)} of {per_group} input channels")
    if mode == "rgb":
        notes += ["R, G, B = the weights on input channels 0, 1, 2",
                  f"weight {fmt(-m)} ... {fmt(m)} -> 0 ... 255 (grey 128 = 0)",
                  f"one symmetric range for all {n_out} kernels"]
    else:
        bar, _ = colorbar(scale, min(max(body.width, 160), 420),
                          caption=f"weight · one symmetric range for all {n_out} kernels · "
                                  f"{scale.cmap}")
        parts.append(bar)
        if mode == "matrix":
            notes.append("rows: output channels, columns: input channels")
    if notes:
        parts.append(legend(notes, width))
    meta = {
        "view": "filters", "stage": st.name, "layout": mode, "kernel": list(w.shape),
        "groups": groups, "outputs_shown": outs, "inputs_shown": ins, "zoom": zoom,
        "vmin": -m, "vmax": m, "cmap": None if mode == "rgb" else scale.cmap,
    }
    return finish(vstack(parts, gap=6), meta)
