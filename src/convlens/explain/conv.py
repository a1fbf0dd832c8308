"""The convolution animation: a kernel slides over an input, frame by frame.

Each frame shows the current window (padding cells grey, dilated taps highlighted),
the kernel, the element-wise products, each input channel's sum, the bias and the
value written into the growing output map, with the output-size formula.  Every
number comes from :func:`convlens.ops.conv2d_at`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convlens.errors import RenderError
from convlens.ops import IntPair, Padding, conv2d, conv2d_at, pair, resolve_padding
from convlens.trace import Stage, Trace
from convlens.explain.canvas import Animation, Canvas, text_width
from convlens.explain.grid import PALETTE, diverging, draw_grid, empty_colours, fmt
from convlens.explain.layers import animated_block, find_stage, stage_input
from convlens.explain.shapes import size_formula

__all__ = ["DEFAULT_INPUT", "DEFAULT_KERNEL", "conv_animation", "conv_animation_from_stage"]

DEFAULT_INPUT = np.array(
    [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
    dtype=np.float64,
)
"""The classic 5x5 binary image of the convolution tutorials."""
DEFAULT_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float64)
"""The classic 3x3 kernel; on :data:`DEFAULT_INPUT` it gives [[4,3,4],[2,4,3],[2,3,4]]."""

MAX_FRAMES = 144


@dataclass
class _Patch:
    """Everything one animation shows; ``crop`` is a region of the zero-padded input."""

    crop: np.ndarray            # (Cg, R, Q) padded-input values shown
    pad_mask: np.ndarray        # (R, Q) True where the cell is padding
    in_origin: tuple[int, int]  # input (row, col) of crop[:, 0, 0]; negative inside padding
    channels: list[int]         # input channel index of each crop row
    kernel: np.ndarray          # (Cg, kh, kw)
    bias: float
    stride: tuple[int, int]
    dilation: tuple[int, int]
    out_origin: tuple[int, int]
    out_shape: tuple[int, int]  # rows, cols of the animated output patch
    steps: list[dict] = field(default_factory=list)
    title: str = ""
    lines: list[str] = field(default_factory=list)
    out_label: str = "output"


def conv_animation(
    x: np.ndarray | None = None, kernel: np.ndarray | None = None, bias: float = 0.0, *,
    stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, max_channels: int = 3,
    title: str | None = None,
) -> Animation:
    """Animate ``kernel`` sliding over ``x``, one frame per output value.

    ``x`` is ``(H, W)`` or ``(C, H, W)``; ``kernel`` ``(kh, kw)`` or ``(C, kh, kw)``.
    Defaults: :data:`DEFAULT_INPUT` and :data:`DEFAULT_KERNEL`.  ``meta["output"]``
    holds the full output map, equal to :func:`convlens.ops.conv2d`.
    """
    x = DEFAULT_INPUT if x is None else np.asarray(x, dtype=np.float64)
    k = DEFAULT_KERNEL if kernel is None else np.asarray(kernel, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    k = k[None] if k.ndim == 2 else k
    if x.ndim != 3 or k.ndim != 3 or x.shape[0] != k.shape[0]:
        raise RenderError(
            f"conv_animation needs an input (H, W) or (C, H, W) and a kernel (kh, kw) or "
            f"(C, kh, kw) with the same C; got input {x.shape} and kernel {k.shape}"
        )
    w, b = k[None], np.array([float(bias)])
    s, d = pair(stride, "stride"), pair(dilation, "dilation")
    pad = resolve_padding(padding, x.shape[1:], k.shape[1:], s, d)
    out = conv2d(x, w, b, stride=s, padding=pad, dilation=d)[0]
    if out.size > MAX_FRAMES:
        raise RenderError(
            f"this convolution has {out.size} output values (one frame each); the limit is "
            f"{MAX_FRAMES}; use a smaller input, or conv_animation_from_stage(..., size=3)"
        )
    patch = _make_patch(x, w, b, 0, (0, 0), out.shape, s, pad, d, 1, list(range(x.shape[0])))
    c, h, wd = x.shape
    patch.title = title or "Convolution, step by step"
    patch.lines = [
        f"input {h}x{wd}x{c}  *  kernel {k.shape[1]}x{k.shape[2]}x{c}, stride {_pt(s)}, "
        f"padding {_pad_text(pad)}, dilation {_pt(d)}  ->  output {out.shape[0]}x{out.shape[1]}x1",
    ] + _formula_lines(x.shape[1:], k.shape[1:], s, pad, d)
    meta = _meta(patch, x.shape, w.shape, s, pad, d)
    meta["output"] = out
    return _animate(patch, max_channels, meta)


def conv_animation_from_stage(
    trace: Trace, stage: int | str | Stage, channel: int = 0, at: tuple[int, int] = (0, 0),
    size: int | tuple[int, int] = 3, image: int = 0, max_channels: int = 3,
) -> Animation:
    """Animate a real kernel of a conv stage on the real input it received.

    The animated patch is the ``size`` x ``size`` block of output channel ``channel``
    whose top-left output position is ``at`` = (row, col) in the stage's output map
    (clipped at its edge).  ``meta["output"]`` holds the values computed here, equal
    (up to float32 rounding) to the stage's own output there: ``meta["stage_output"]``.
    """
    st = find_stage(trace, stage)
    if st.kind != "conv" or "weight" not in st.weights or not st.is_spatial:
        convs = [s.name for s in trace.stages if s.kind == "conv" and "weight" in s.weights]
        raise RenderError(
            f"stage {st.name!r} is a {st.kind} stage; expected a conv stage with weights: "
            f"{', '.join(convs) or '(none in this trace)'}"
        )
    if not 0 <= image < trace.batch_size:
        raise RenderError(f"image {image} is out of range; this trace holds {trace.batch_size} image(s)")
    x = np.asarray(stage_input(trace, st)[image], dtype=np.float64)
    w = np.asarray(st.weights["weight"], dtype=np.float64)
    b = st.weights.get("bias")
    p = st.params
    kh, kw = w.shape[2:]
    s, d = pair(p.get("stride", 1), "stride"), pair(p.get("dilation", 1), "dilation")
    groups = int(p.get("groups", 1))
    pad = resolve_padding(p.get("padding", 0), x.shape[1:], (kh, kw), s, d)
    oc, oh, ow = st.output.shape[1:]
    if not 0 <= channel < oc:
        raise RenderError(f"channel {channel} is out of range; {st.name} has channels 0..{oc - 1}")
    (r0, c0), shape = animated_block(st.name, at, size, (oh, ow))
    per = w.shape[1]
    g = channel // (oc // groups)
    chans = list(range(g * per, (g + 1) * per))
    patch = _make_patch(x, w, b, channel, (r0, c0), shape, s, pad, d, groups, chans)
    patch.title = f"{st.name} ({st.op}): output channel {channel}, image {image}"
    cin, h, wd = x.shape
    patch.lines = [
        f"input {h}x{wd}x{cin}  *  kernel {kh}x{kw}x{per}"
        + (f" (groups {groups})" if groups > 1 else "")
        + f", stride {_pt(s)}, padding {_pad_text(pad)}, dilation {_pt(d)}  ->  "
        f"output {oh}x{ow}x{oc}",
        f"animated: output rows {r0}..{r0 + shape[0] - 1}, cols {c0}..{c0 + shape[1] - 1}",
    ] + _formula_lines((h, wd), (kh, kw), s, pad, d)
    patch.out_label = f"{st.name} ch {channel}"
    meta = _meta(patch, x.shape, w.shape, s, pad, d)
    meta.update(stage=st.name, channel=channel, at=(r0, c0), image=image,
                output=np.array([[stp["value"] for stp in patch.steps[i * shape[1]:(i + 1) * shape[1]]]
                                 for i in range(shape[0])]),
                stage_output=np.asarray(st.output[image, channel, r0:r0 + shape[0], c0:c0 + shape[1]]))
    return _animate(patch, max_channels, meta)


# -- building the patch ------------------------------------------------------------
def _make_patch(x, w, b, channel, out_origin, out_shape, s, pad, d, groups, chans) -> _Patch:
    kh, kw = w.shape[2:]
    (pt, pb), (pl, pr) = pad
    r0, c0 = out_origin
    rows = (out_shape[0] - 1) * s[0] + d[0] * (kh - 1) + 1
    cols = (out_shape[1] - 1) * s[1] + d[1] * (kw - 1) + 1
    xp = np.pad(x[chans], ((0, 0), (pt, pb), (pl, pr)))
    inside = np.pad(np.ones(x.shape[1:], dtype=bool), ((pt, pb), (pl, pr)))
    pr0, pc0 = r0 * s[0], c0 * s[1]
    patch = _Patch(
        crop=xp[:, pr0:pr0 + rows, pc0:pc0 + cols], pad_mask=~inside[pr0:pr0 + rows, pc0:pc0 + cols],
        in_origin=(pr0 - pt, pc0 - pl), channels=chans, kernel=w[channel],
        bias=float(b[channel]) if b is not None else 0.0, stride=s, dilation=d,
        out_origin=out_origin, out_shape=out_shape,
    )
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            step = conv2d_at(x, w, b, channel, r0 + i, c0 + j, stride=s, padding=pad,
                             dilation=d, groups=groups)
            patch.steps.append({**step, "pos": (i, j)})
    return patch


def _pt(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _pad_text(pad) -> str:
    (pt, pb), (pl, pr) = pad
    return str(pt) if len({pt, pb, pl, pr}) == 1 else f"top {pt} bottom {pb} left {pl} right {pr}"


def _formula_lines(hw, k, s, pad, d) -> list[str]:
    (pt, pb), (pl, pr) = pad
    h = size_formula(hw[0], k[0], s[0], pt if pt == pb else (pt, pb), d[0])
    w = size_formula(hw[1], k[1], s[1], pl if pl == pr else (pl, pr), d[1])
    head = "output size = floor((n + 2p - d(k-1) - 1)/s) + 1:  "
    return [head + (h if h == w else f"H: {h};  W: {w}")]


def _meta(patch: _Patch, x_shape, w_shape, s, pad, d) -> dict:
    return {
        "explanation": "conv", "input_shape": tuple(x_shape), "kernel_shape": tuple(w_shape),
        "stride": s, "padding": pad, "dilation": d,
        "values": [stp["value"] for stp in patch.steps],
        "positions": [(patch.out_origin[0] + i, patch.out_origin[1] + j)
                      for i, j in (stp["pos"] for stp in patch.steps)],
        "formula": list(patch.lines),
    }


# -- drawing -----------------------------------------------------------------------
def _animate(patch: _Patch, max_channels: int, meta: dict) -> Animation:
    canvases = [_frame(patch, k, max_channels) for k in range(len(patch.steps))]
    return Animation(canvases, meta)


def _frame(p: _Patch, k: int, max_channels: int) -> Canvas:
    step = p.steps[k]
    i, j = step["pos"]
    cg, rows, cols = p.crop.shape
    kh, kw = p.kernel.shape[1:]
    shown = min(cg, max(1, max_channels))
    cell = int(max(14, min(44, 300 // max(rows, cols, 1))))
    kcell = int(max(14, min(44, 200 // max(kh, kw))))
    numbers = cell >= 28 and kcell >= 28
    exact = all(float(v).is_integer() for v in np.concatenate([p.crop.ravel(), p.kernel.ravel()]))
    digits = 0 if exact else 2
    ocell = max(kcell, 30)
    m, gap, sum_w = 16, 34, 118
    in_w, k_w = cols * cell, kw * kcell
    out_w = p.out_shape[1] * ocell
    row_h = max(rows * cell, kh * kcell) + 30
    width = m + in_w + gap + k_w + gap + k_w + sum_w + gap + out_w + m
    width = int(max(width, max(text_width(t, 13) for t in p.lines) + 2 * m, 520))
    top = 62 + 18 * (len(p.lines) - 1)
    height = top + shown * row_h + (22 if cg > shown else 0) + 74 + (0 if numbers else 24)
    cv = Canvas(width, int(height))
    cv.text(m, 10, p.title, 17, PALETTE["ink"])
    for n, line in enumerate(p.lines):
        cv.text(m, 36 + 18 * n, line, 13, PALETTE["muted"])

    vmax_in = float(np.abs(p.crop).max()) or 1.0
    vmax_k = float(np.abs(p.kernel).max()) or 1.0
    vmax_p = float(max(np.abs(s["products"]).max() for s in p.steps)) or 1.0
    wr = i * p.stride[0] + np.arange(kh) * p.dilation[0]
    wc = j * p.stride[1] + np.arange(kw) * p.dilation[1]
    in_win = np.zeros((rows, cols), dtype=bool)
    in_win[np.ix_(wr, wc)] = True

    y = top
    for c in range(shown):
        x = m
        vals = p.crop[c]
        fills, inks = empty_colours(vals.shape), empty_colours(vals.shape)
        for a in range(rows):
            for bb in range(cols):
                if not numbers:
                    fills[a, bb] = PALETTE["pad"] if p.pad_mask[a, bb] else diverging(vals[a, bb], vmax_in)
                elif p.pad_mask[a, bb]:
                    fills[a, bb], inks[a, bb] = PALETTE["pad"], PALETTE["muted"]
                if in_win[a, bb] and numbers:
                    fills[a, bb] = PALETTE["window"]
        r_lo, c_lo = p.in_origin
        cv.text(x, y + 4, f"input ch {p.channels[c]}" + (" (padded)" if p.pad_mask.any() else "") + f": rows {r_lo}..{r_lo + rows - 1}, "
                f"cols {c_lo}..{c_lo + cols - 1}", 12, PALETTE["ink"])
        gy = y + 22
        draw_grid(cv, x, gy, vals, cell, fills=fills, inks=inks, numbers=numbers, digits=digits, integers=exact)
        taps = numbers or p.dilation != (1, 1)  # in colour mode the red frame is enough
        for a in wr if taps else ():  # mark the taps of the window
            for bb in wc:
                cv.rect(x + bb * cell + 1, gy + a * cell + 1, x + (bb + 1) * cell - 1,
                        gy + (a + 1) * cell - 1, outline=PALETTE["window_edge"], width=2)
                if numbers and exact:
                    cv.text(x + (bb + 1) * cell - 3, gy + (a + 1) * cell - 2,
                            "x" + _paren(fmt(p.kernel[c, (a - wr[0]) // p.dilation[0], (bb - wc[0]) // p.dilation[1]])),
                            max(8, cell // 4), PALETTE["kernel_ink"], "rs")
        cv.rect(x + wc[0] * cell - 2, gy + wr[0] * cell - 2, x + (wc[-1] + 1) * cell + 2,
                gy + (wr[-1] + 1) * cell + 2, outline=PALETTE["accent"], width=3)
        x += in_w + gap
        mid = gy + kh * kcell / 2
        cv.text(x - gap / 2, mid, "x", 20, PALETTE["ink"], "mm")
        cv.text(x, y + 4, "kernel", 12, PALETTE["ink"])
        kf = np.full((kh, kw), PALETTE["kernel"], dtype=object) if numbers else \
            np.vectorize(lambda v: diverging(v, vmax_k), otypes=[object])(p.kernel[c])
        draw_grid(cv, x, gy, p.kernel[c], kcell, fills=kf, numbers=numbers, digits=digits, integers=exact,
                  inks=np.full((kh, kw), PALETTE["kernel_ink"], dtype=object))
        x += k_w + gap
        cv.text(x - gap / 2, mid, "=", 20, PALETTE["ink"], "mm")
        cv.text(x, y + 4, "products", 12, PALETTE["ink"])
        prod = step["products"][c]
        pf = np.full((kh, kw), PALETTE["product"], dtype=object) if numbers else \
            np.vectorize(lambda v: diverging(v, vmax_p), otypes=[object])(prod)
        draw_grid(cv, x, gy, prod, kcell, fills=pf, numbers=numbers, digits=digits, integers=exact)
        x += k_w + 8
        cv.text(x, mid, f"sum = {fmt(step['channel_sums'][c], digits, exact)}", 14, PALETTE["green"], "lm")
        y += row_h
    if cg > shown:
        rest = float(step["channel_sums"][shown:].sum())
        cv.text(m, y, f"+ {cg - shown} more input channels (not drawn), their sums add up to "
                f"{fmt(rest, digits, exact)}", 13, PALETTE["muted"])
        y += 22

    # the growing output map
    ox = width - m - out_w
    cv.text(ox, top + 4, p.out_label, 12, PALETTE["ink"])
    done = np.zeros(p.out_shape, dtype=bool)
    for s in p.steps[:k + 1]:
        done[s["pos"]] = True
    vals = np.zeros(p.out_shape)
    for s in p.steps:
        vals[s["pos"]] = s["value"]
    of = empty_colours(p.out_shape)
    of[done] = PALETTE["out"]
    of[i, j] = PALETTE["out_now"]
    draw_grid(cv, ox, top + 22, vals, ocell, fills=of, show=done, digits=digits, integers=exact)
    cv.text(ox, top + 26 + p.out_shape[0] * ocell, f"rows {p.out_origin[0]}..{p.out_origin[0] + p.out_shape[0] - 1}",
            11, PALETTE["muted"])
    cv.text(ox, top + 40 + p.out_shape[0] * ocell, f"cols {p.out_origin[1]}..{p.out_origin[1] + p.out_shape[1] - 1}",
            11, PALETTE["muted"])

    # the sum written out
    sums = " + ".join(_paren(fmt(v, digits, exact)) for v in step["channel_sums"][:shown])
    if cg > shown:
        sums += f" + {_paren(fmt(float(step['channel_sums'][shown:].sum()), digits, exact))}"
    r, c = p.out_origin[0] + i, p.out_origin[1] + j
    eq = (f"{p.out_label} at ({r}, {c}) = {sums} + {_paren(fmt(p.bias, digits, exact))} (bias) = "
          f"{fmt(step['value'], digits, exact)}")
    y += 10
    cv.text(m, y, eq, 15, PALETTE["ink"])
    cv.text(m, y + 24, f"step {k + 1} of {len(p.steps)}: window moves {_pt(p.stride)} cell(s) per step"
            + (f"; taps {_pt(p.dilation)} apart (dilation)" if p.dilation != (1, 1) else "")
            + ("; grey cells are zero padding" if p.pad_mask.any() else ""), 12, PALETTE["muted"])
    if not numbers:
        cv.text(m, y + 44, f"colours: blue = negative, red = positive; input |v| <= {fmt(vmax_in)}, "
                f"kernel |v| <= {fmt(vmax_k, 3)}, products |v| <= {fmt(vmax_p, 3)}", 12, PALETTE["muted"])
    return cv


def _paren(s: str) -> str:
    return f"({s})" if s.startswith("-") else s
