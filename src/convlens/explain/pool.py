"""The pooling animation: a window slides over one channel; the maximum it picks (max
pooling) or the mean it takes (average pooling) is highlighted and written into the
growing output.  Every number comes from :func:`convlens.ops.pool2d_at`."""
from __future__ import annotations

import numpy as np

from convlens.errors import RenderError
from convlens.ops import IntPair, Padding, PoolMode, pair, pool2d, pool2d_at, resolve_padding
from convlens.trace import Stage, Trace
from convlens.explain.canvas import Animation, Canvas, text_width
from convlens.explain.grid import PALETTE, diverging, draw_grid, empty_colours, fmt
from convlens.explain.layers import animated_block, find_stage, stage_input
from convlens.explain.shapes import size_formula

__all__ = ["DEFAULT_POOL_INPUT", "pool_animation", "pool_animation_from_stage"]

DEFAULT_POOL_INPUT = np.array(
    [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=np.float64
)
"""The classic 4x4 example: 2x2 max pooling with stride 2 gives [[6, 8], [3, 4]]."""

MAX_FRAMES = 144


def pool_animation(
    x: np.ndarray | None = None, size: IntPair = 2, stride: IntPair | None = None,
    padding: Padding = 0, mode: PoolMode = "max", count_include_pad: bool = True,
    title: str | None = None,
) -> Animation:
    """Animate pooling of a 2-D ``x`` (default :data:`DEFAULT_POOL_INPUT`), one frame per
    output value.  ``meta["output"]`` equals :func:`convlens.ops.pool2d`; ``meta["picks"]``
    holds, for max pooling, the input (row, col) each output took its value from."""
    x = DEFAULT_POOL_INPUT if x is None else np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise RenderError(f"pool_animation needs a 2-D input (H, W); got shape {x.shape}")
    _check_mode(mode)
    k = pair(size, "pool size")
    s = pair(stride if stride is not None else size, "stride")
    pad = resolve_padding(padding, x.shape, k, s)
    out = pool2d(x[None], k, s, pad, mode, count_include_pad)[0]
    if out.size > MAX_FRAMES:
        raise RenderError(
            f"this pooling has {out.size} output values (one frame each); the limit is "
            f"{MAX_FRAMES}; use a smaller input, or pool_animation_from_stage(..., size=3)"
        )
    lines = [f"input {x.shape[0]}x{x.shape[1]}, {mode} pool {k[0]}x{k[1]}, stride {_pt(s)}, "
             f"padding {_pad_text(pad)}  ->  output {out.shape[0]}x{out.shape[1]}"]
    lines += _formula_lines(x.shape, k, s, pad)
    anim = _build(x[None], 0, (0, 0), out.shape, k, s, pad, mode, count_include_pad,
                  title or f"{'Max' if mode == 'max' else 'Average'} pooling, step by step",
                  lines, "output")
    anim.meta["output"] = out
    return anim


def pool_animation_from_stage(
    trace: Trace, stage: int | str | Stage, channel: int = 0, at: tuple[int, int] = (0, 0),
    size: int | tuple[int, int] = 3, image: int = 0,
) -> Animation:
    """Animate a real pooling stage on its real input: the ``size`` x ``size`` block of
    output positions starting at ``at`` = (row, col), in channel ``channel``.
    ``meta["stage_output"]`` holds the stage's own values there, for comparison."""
    st = find_stage(trace, stage)
    if st.kind != "pool" or not st.is_spatial:
        pools = [s.name for s in trace.stages if s.kind == "pool" and s.is_spatial]
        raise RenderError(
            f"stage {st.name!r} is a {st.kind} stage; expected a pooling stage: "
            f"{', '.join(pools) or '(none in this trace)'}"
        )
    if not 0 <= image < trace.batch_size:
        raise RenderError(f"image {image} is out of range; this trace holds {trace.batch_size} image(s)")
    x = np.asarray(stage_input(trace, st)[image], dtype=np.float64)
    p = st.params
    c, oh, ow = st.output.shape[1:]
    if "kernel_size" in p:
        k = pair(p["kernel_size"], "pool size")
    elif (oh, ow) == (1, 1):
        k = (x.shape[1], x.shape[2])
    else:
        raise RenderError(f"stage {st.name!r} ({st.op}) has no kernel_size parameter")
    s = pair(p.get("stride") or k, "stride")
    mode = str(p.get("mode", "max"))
    _check_mode(mode)
    pad = resolve_padding(p.get("padding", 0), x.shape[1:], k, s)
    if not 0 <= channel < c:
        raise RenderError(f"channel {channel} is out of range; {st.name} has channels 0..{c - 1}")
    (r0, c0), shape = animated_block(st.name, at, size, (oh, ow))
    lines = [f"input {x.shape[1]}x{x.shape[2]}x{x.shape[0]}, {mode} pool {k[0]}x{k[1]}, stride "
             f"{_pt(s)}, padding {_pad_text(pad)}  ->  output {oh}x{ow}x{c}",
             f"animated: output rows {r0}..{r0 + shape[0] - 1}, cols {c0}..{c0 + shape[1] - 1}"]
    lines += _formula_lines(x.shape[1:], k, s, pad)
    anim = _build(x, channel, (r0, c0), shape, k, s, pad, mode,
                  bool(p.get("count_include_pad", True)),
                  f"{st.name} ({st.op}): channel {channel}, image {image}", lines,
                  f"{st.name} ch {channel}")
    anim.meta.update(stage=st.name, channel=channel, at=(r0, c0), image=image,
                     stage_output=np.asarray(st.output[image, channel, r0:r0 + shape[0], c0:c0 + shape[1]]))
    return anim


def _check_mode(mode: str) -> None:
    if mode not in ("max", "avg"):
        raise RenderError(f"pool mode {mode!r} is unknown; expected 'max' or 'avg'")


def _pt(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _pad_text(pad) -> str:
    (pt, pb), (pl, pr) = pad
    return str(pt) if len({pt, pb, pl, pr}) == 1 else f"top {pt} bottom {pb} left {pl} right {pr}"


def _formula_lines(hw, k, s, pad) -> list[str]:
    (pt, pb), (pl, pr) = pad
    h = size_formula(hw[0], k[0], s[0], pt if pt == pb else (pt, pb))
    w = size_formula(hw[1], k[1], s[1], pl if pl == pr else (pl, pr))
    return ["output size = floor((n + 2p - d(k-1) - 1)/s) + 1:  " + (h if h == w else f"H: {h};  W: {w}")]


def _build(x, channel, out_origin, out_shape, k, s, pad, mode, cip, title, lines, label) -> Animation:
    (pt, pb), (pl, pr) = pad
    r0, c0 = out_origin
    rows = (out_shape[0] - 1) * s[0] + k[0]
    cols = (out_shape[1] - 1) * s[1] + k[1]
    xp = np.pad(x[channel], ((pt, pb), (pl, pr)))
    inside = np.pad(np.ones(x.shape[1:], dtype=bool), ((pt, pb), (pl, pr)))
    pr0, pc0 = r0 * s[0], c0 * s[1]
    crop, pad_mask = xp[pr0:pr0 + rows, pc0:pc0 + cols], ~inside[pr0:pr0 + rows, pc0:pc0 + cols]
    # the crop may stop short of the padded input's end when the last window does not fit
    steps = []
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            st = pool2d_at(x, k, channel, r0 + i, c0 + j, s, pad, mode, cip)
            steps.append({**st, "pos": (i, j)})
    origin = (pr0 - pt, pc0 - pl)
    picks = [(st["origin"][0] + st["pick"][0], st["origin"][1] + st["pick"][1])
             if st["pick"] is not None else None for st in steps]
    meta = {
        "explanation": "pool", "mode": mode, "kernel_size": k, "stride": s, "padding": pad,
        "input_shape": tuple(x.shape), "values": [st["value"] for st in steps],
        "positions": [(r0 + st["pos"][0], c0 + st["pos"][1]) for st in steps],
        "picks": picks, "formula": list(lines),
        "output": np.array([[steps[i * out_shape[1] + j]["value"] for j in range(out_shape[1])]
                            for i in range(out_shape[0])]),
    }
    canvases = [_frame(crop, pad_mask, origin, steps, n, k, s, mode, title, lines, label, out_origin,
                       out_shape, channel) for n in range(len(steps))]
    return Animation(canvases, meta)


def _frame(crop, pad_mask, origin, steps, n, k, s, mode, title, lines, label, out_origin,
           out_shape, channel) -> Canvas:
    step = steps[n]
    i, j = step["pos"]
    rows, cols = crop.shape
    cell = int(max(12, min(44, 360 // max(rows, cols))))
    numbers = cell >= 28
    exact = all(float(v).is_integer() for v in crop.ravel())
    digits = 0 if exact and mode == "max" else 2
    integers = exact
    ocell = 44
    m, gap = 16, 40
    out_w = out_shape[1] * ocell
    width = int(max(m + cols * cell + gap + out_w + m, max(text_width(t, 13) for t in lines) + 2 * m, 560))
    top = 62 + 18 * (len(lines) - 1)
    grid_h = max(rows * cell, out_shape[0] * ocell + 34)
    height = top + 22 + grid_h + 86 + (0 if numbers else 20)
    cv = Canvas(width, int(height))
    cv.text(m, 10, title, 17, PALETTE["ink"])
    for q, line in enumerate(lines):
        cv.text(m, 36 + 18 * q, line, 13, PALETTE["muted"])

    wr0, wc0 = i * s[0], j * s[1]
    vmax = float(np.abs(np.where(pad_mask, 0, crop)).max()) or 1.0
    fills, inks = empty_colours(crop.shape), empty_colours(crop.shape)
    shown = np.where(pad_mask & (mode == "max"), np.nan, crop)
    for a in range(rows):
        for b in range(cols):
            in_win = wr0 <= a < wr0 + k[0] and wc0 <= b < wc0 + k[1]
            if pad_mask[a, b]:
                fills[a, b], inks[a, b] = PALETTE["pad"], PALETTE["muted"]
            elif not numbers:
                fills[a, b] = diverging(crop[a, b], vmax)
            if in_win and numbers:
                fills[a, b] = PALETTE["window"]
    if step["pick"] is not None:
        pa, pb_ = wr0 + step["pick"][0], wc0 + step["pick"][1]
        fills[pa, pb_] = PALETTE["out_now"] if numbers else fills[pa, pb_]
    gy = top + 22
    cv.text(m, top + 4, f"input ch {channel}"
            + (" (padded)" if pad_mask.any() else "") + f": rows {origin[0]}..{origin[0] + rows - 1}, "
            f"cols {origin[1]}..{origin[1] + cols - 1}", 12, PALETTE["ink"])
    show = ~pad_mask | (mode == "avg")
    draw_grid(cv, m, gy, np.nan_to_num(shown), cell, fills=fills, inks=inks, numbers=numbers,
              digits=digits, show=show, integers=integers)
    if numbers and mode == "max":
        for a, b in zip(*np.nonzero(pad_mask)):
            cv.text(m + (b + 0.5) * cell, gy + (a + 0.5) * cell, "-inf", max(9, cell // 4),
                    PALETTE["muted"], "mm")
    if step["pick"] is not None:
        pa, pb_ = wr0 + step["pick"][0], wc0 + step["pick"][1]
        cv.rect(m + pb_ * cell + 2, gy + pa * cell + 2, m + (pb_ + 1) * cell - 2,
                gy + (pa + 1) * cell - 2, outline=PALETTE["ink"], width=2)
    cv.rect(m + wc0 * cell - 2, gy + wr0 * cell - 2, m + (wc0 + k[1]) * cell + 2,
            gy + (wr0 + k[0]) * cell + 2, outline=PALETTE["accent"], width=3)

    ox = width - m - out_w
    cv.text(ox, top + 4, label, 12, PALETTE["ink"])
    done = np.zeros(out_shape, dtype=bool)
    vals = np.zeros(out_shape)
    for q, st in enumerate(steps):
        vals[st["pos"]] = st["value"]
        done[st["pos"]] = q <= n
    of = empty_colours(out_shape)
    of[done] = PALETTE["out"]
    of[i, j] = PALETTE["out_now"]
    draw_grid(cv, ox, gy, vals, ocell, fills=of, show=done, digits=digits, integers=integers)
    cv.text(ox, gy + out_shape[0] * ocell + 4, f"rows {out_origin[0]}..{out_origin[0] + out_shape[0] - 1}",
            11, PALETTE["muted"])
    cv.text(ox, gy + out_shape[0] * ocell + 18, f"cols {out_origin[1]}..{out_origin[1] + out_shape[1] - 1}",
            11, PALETTE["muted"])

    win = step["window"][~step["in_padding"]] if mode == "max" else step["window"].ravel()
    terms = ", ".join(fmt(v, digits, integers) for v in win) if win.size <= 9 else f"{win.size} values"
    r, c = out_origin[0] + i, out_origin[1] + j
    if mode == "max":
        eq = f"{label} at ({r}, {c}) = max({terms}) = {fmt(step['value'], digits, integers)}"
        note = "the largest value in the window is kept (dark frame); the others are dropped"
    else:
        terms = " + ".join(_paren(fmt(v, 2, integers)) for v in win) if win.size <= 9 else f"sum of {win.size} values"
        eq = f"{label} at ({r}, {c}) = ({terms}) / {step['count']} = {fmt(step['value'], 2, integers)}"
        note = "every value in the window counts equally" + (
            " (padding counts as 0)" if pad_mask.any() else "")
    y = gy + grid_h + 12
    cv.text(m, y, eq, 15, PALETTE["ink"])
    cv.text(m, y + 24, f"step {n + 1} of {len(steps)}: window moves {_pt(s)} cell(s) per step",
            12, PALETTE["muted"])
    cv.text(m, y + 42, note, 12, PALETTE["muted"])
    if not numbers:
        cv.text(m, y + 60, f"colours: blue = negative, red = positive, |v| <= {fmt(vmax, 3)}",
                12, PALETTE["muted"])
    return cv


def _paren(s: str) -> str:
    return f"({s})" if s.startswith("-") else s
