"""Activation functions: the table (plot, formula, derivative) and what one activation
did to a real stage (histograms of its values before and after)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convlens.errors import RenderError
from convlens.ops import activation, activation_derivative
from convlens.render.figure import Figure
from convlens.trace import Stage, Trace
from convlens.explain.canvas import Canvas
from convlens.explain.grid import PALETTE, fmt
from convlens.explain.layers import find_stage, stage_input

__all__ = ["ActivationRow", "TABLE", "activation_table", "activation_histogram"]


@dataclass(frozen=True)
class ActivationRow:
    """One row of the table: the ``ops`` function (and parameters) it plots."""

    title: str
    function: str
    formula: tuple[str, ...]
    derivative: tuple[str, ...]
    range: str
    params: tuple[tuple[str, float], ...] = ()


TABLE: tuple[ActivationRow, ...] = (
    ActivationRow("identity", "identity", ("f(x) = x",), ("f'(x) = 1",), "(-inf, inf)"),
    ActivationRow("binary step", "binary_step", ("f(x) = 0 for x < 0", "f(x) = 1 for x >= 0"),
                  ("f'(x) = 0 for x < 0 or x > 0", "(undefined at 0)"), "{0, 1}"),
    ActivationRow("logistic (sigmoid)", "sigmoid", ("f(x) = 1 / (1 + e^-x)",),
                  ("f'(x) = f(x) (1 - f(x))",), "(0, 1)"),
    ActivationRow("tanh", "tanh", ("f(x) = (e^x - e^-x) / (e^x + e^-x)",),
                  ("f'(x) = 1 - f(x)^2",), "(-1, 1)"),
    ActivationRow("arctan", "arctan", ("f(x) = arctan(x)",), ("f'(x) = 1 / (x^2 + 1)",),
                  "(-pi/2, pi/2)"),
    ActivationRow("ReLU", "relu", ("f(x) = max(0, x)",),
                  ("f'(x) = 0 for x < 0", "f'(x) = 1 for x > 0"), "[0, inf)"),
    ActivationRow("leaky ReLU / PReLU", "leaky_relu",
                  ("f(x) = a x for x < 0", "f(x) = x for x >= 0",
                   "drawn: a = 0.1 (leaky: fixed a,", "PReLU: a is learned)"),
                  ("f'(x) = a for x < 0", "f'(x) = 1 for x > 0"), "(-inf, inf)",
                  (("alpha", 0.1),)),
    ActivationRow("ELU", "elu", ("f(x) = a (e^x - 1) for x <= 0", "f(x) = x for x > 0", "drawn: a = 1"),
                  ("f'(x) = f(x) + a for x <= 0", "f'(x) = 1 for x > 0"), "(-a, inf)",
                  (("alpha", 1.0),)),
    ActivationRow("SoftPlus", "softplus", ("f(x) = ln(1 + e^x)",),
                  ("f'(x) = 1 / (1 + e^-x)",), "(0, inf)"),
    ActivationRow("GELU", "gelu", ("f(x) = x Phi(x)", "Phi: standard normal CDF"),
                  ("f'(x) = Phi(x) + x phi(x)", "phi: standard normal density"), "(-0.17, inf)"),
    ActivationRow("SiLU (swish)", "silu", ("f(x) = x / (1 + e^-x)", "      = x sigmoid(x)"),
                  ("f'(x) = s(x) (1 + x (1 - s(x)))", "s = sigmoid"), "(-0.28, inf)"),
)
"""The functions of the table, in order (the tutorial's list)."""

_XS = np.linspace(-3.0, 3.0, 241)


def _plot(cv: Canvas, x0: float, y0: float, w: float, h: float, xs: np.ndarray,
          series: list[tuple[np.ndarray, str, bool]]) -> tuple[float, float]:
    """Axes and curves in a box; returns the y range drawn."""
    ys = np.concatenate([s for s, _, _ in series])
    dlo, dhi = float(ys.min()), float(ys.max())
    lo, hi = min(dlo, 0.0), max(dhi, 1.0)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def px(x: float) -> float:
        return x0 + (x - xs[0]) / (xs[-1] - xs[0]) * w

    def py(y: float) -> float:
        return y0 + h - (y - lo) / (hi - lo) * h

    cv.rect(x0, y0, x0 + w, y0 + h, fill="#fbfbfc", outline=PALETTE["pad"])
    cv.line([(x0, py(0)), (x0 + w, py(0))], PALETTE["line"])
    cv.line([(px(0), y0), (px(0), y0 + h)], PALETTE["line"])
    for ys_, colour, dash in series:
        pts = [(px(a), py(b)) for a, b in zip(xs, ys_)]
        cv.line(pts, colour, 2, dash=dash)
    for v in sorted({dhi, dlo}):  # label the data's own extremes, where they are
        cv.line([(x0 - 3, py(v)), (x0, py(v))], PALETTE["muted"])
        cv.text(x0 - 5, py(v), fmt(v, 1), 10, PALETTE["muted"], "rm")
    cv.text(x0 + w - 2, py(0) + 2, fmt(xs[-1], 0), 10, PALETTE["muted"], "ra")
    cv.text(x0 + 2, py(0) + 2, fmt(xs[0], 0), 10, PALETTE["muted"], "la")
    return lo, hi


def activation_table(functions: list[str] | None = None) -> Figure:
    """The table of activation functions: for each, its plot (function solid, derivative
    dashed, on x in [-3, 3]), formula, derivative and range.  ``functions`` picks rows by
    ``ops`` name (``"relu"``, ``"gelu"``...); default: all of :data:`TABLE`.
    ``meta["samples"]`` holds the plotted values: ``{name: (x, f(x), f'(x))}``."""
    rows = list(TABLE)
    if functions is not None:
        known = {r.function: r for r in TABLE}
        bad = [f for f in functions if f not in known]
        if bad:
            raise RenderError(
                f"unknown activation {bad[0]!r} for the table; expected one of {', '.join(known)}"
            )
        rows = [known[f] for f in functions]
    m, row_h, plot_w, plot_h = 16, 104, 170, 88
    cols = [m, m + 180, m + 180 + plot_w + 20, m + 180 + plot_w + 20 + 250,
            m + 180 + plot_w + 20 + 250 + 240]
    width, top = cols[-1] + 110, 74
    cv = Canvas(width, top + row_h * len(rows) + 16)
    cv.text(m, 10, "Activation functions", 18, PALETTE["ink"])
    cv.text(m, 34, "solid: f(x)   dashed: f'(x)   plotted from convlens.ops for x in [-3, 3]",
            12, PALETTE["muted"])
    for c, head in zip(cols, ("name", "plot", "function", "derivative", "range")):
        cv.text(c, top - 18, head, 13, PALETTE["muted"])
    cv.line([(m, top - 2), (width - m, top - 2)], PALETTE["line"])
    samples = {}
    for n, row in enumerate(rows):
        y = top + n * row_h
        params = dict(row.params)
        f = activation(_XS, row.function, **params)
        df = activation_derivative(_XS, row.function, **params)
        samples[row.function] = (_XS.copy(), f, df)
        if n % 2:
            cv.rect(m - 6, y, width - m + 6, y + row_h, fill="#f6f8fa")
        cv.text(cols[0], y + 10, row.title, 14, PALETTE["ink"])
        _plot(cv, cols[1], y + 8, plot_w, plot_h, _XS,
              [(df, PALETTE["orange"], True), (f, PALETTE["blue"], False)])
        for k, line in enumerate(row.formula):
            cv.text(cols[2], y + 12 + 18 * k, line, 13, PALETTE["blue"] if k < 2 else PALETTE["muted"])
        for k, line in enumerate(row.derivative):
            cv.text(cols[3], y + 12 + 18 * k, line, 13, PALETTE["orange"] if k < 2 else PALETTE["muted"])
        cv.text(cols[4], y + 12, row.range, 13, PALETTE["ink"])
    return cv.to_figure({"explanation": "activation_table",
                         "functions": [r.function for r in rows], "samples": samples})


def activation_histogram(
    trace: Trace, stage: int | str | Stage, image: int | None = None, bins: int = 60,
    log: bool = True,
) -> Figure:
    """What an activation stage did: histograms of its input and output values on the
    same bins (``image``: one image of the batch, default all).  ``meta`` holds the bin
    ``edges``, the ``before`` / ``after`` counts and the share of negative inputs and of
    zero outputs."""
    st = find_stage(trace, stage)
    if st.kind != "activation":
        acts = [s.name for s in trace.stages if s.kind == "activation"]
        raise RenderError(
            f"stage {st.name!r} is a {st.kind} stage; expected an activation stage: "
            f"{', '.join(acts) or '(none in this trace)'}"
        )
    before = np.asarray(stage_input(trace, st), dtype=np.float64)
    after = np.asarray(st.output, dtype=np.float64)
    if image is not None:
        if not 0 <= image < trace.batch_size:
            raise RenderError(f"image {image} is out of range; this trace holds {trace.batch_size} image(s)")
        before, after = before[image:image + 1], after[image:image + 1]
    before, after = before.ravel(), after.ravel()
    lo = float(min(before.min(), after.min()))
    hi = float(max(before.max(), after.max()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    cb, _ = np.histogram(before, edges)
    ca, _ = np.histogram(after, edges)
    fn = str(st.params.get("function", st.op))
    neg, zero = float((before < 0).mean()), float((after == 0).mean())

    m, pw, ph = 60, 620, 150
    cv = Canvas(m + pw + 30, 70 + 2 * (ph + 60) + 40)
    cv.text(16, 10, f"What {st.name} ({fn}) did to its {before.size:,} values", 17, PALETTE["ink"])
    cv.text(16, 34, f"input {_shape_text(stage_input(trace, st))} -> output {st.shape_str}; "
            f"same bins, count on a {'log' if log else 'linear'} scale", 12, PALETTE["muted"])
    top = max(cb.max(), ca.max(), 1)
    scale = (lambda c: math.log10(1 + c) / math.log10(1 + top)) if log else (lambda c: c / top)
    for k, (counts, vals, label, colour) in enumerate((
        (cb, before, "before (input)", PALETTE["blue"]),
        (ca, after, "after (output)", PALETTE["orange"]),
    )):
        y0 = 70 + k * (ph + 60)
        cv.rect(m, y0, m + pw, y0 + ph, fill="#fbfbfc", outline=PALETTE["pad"])
        bw = pw / bins
        for b, c in enumerate(counts):
            if c:
                hgt = scale(c) * ph
                cv.rect(m + b * bw, y0 + ph - hgt, m + (b + 1) * bw, y0 + ph, fill=colour)
        if lo < 0 < hi:
            zx = m + (0 - lo) / (hi - lo) * pw
            cv.line([(zx, y0), (zx, y0 + ph)], PALETTE["ink"], 1, dash=True)
            cv.text(zx, y0 + ph + 3, "0", 11, PALETTE["ink"], "ma")
        cv.text(m, y0 + ph + 3, fmt(lo, 2), 11, PALETTE["muted"], "la")
        cv.text(m + pw, y0 + ph + 3, fmt(hi, 2), 11, PALETTE["muted"], "ra")
        cv.text(m - 6, y0, f"{int(top):,}", 10, PALETTE["muted"], "ra")
        cv.text(m - 6, y0 + ph, "0", 10, PALETTE["muted"], "rs")
        cv.text(m + 4, y0 - 16, f"{label}: min {fmt(vals.min(), 3)}, max {fmt(vals.max(), 3)}, "
                f"mean {fmt(vals.mean(), 3)}", 12, colour)
    cv.text(16, 70 + 2 * (ph + 60) - 8,
            f"{neg:.1%} of the inputs were negative; {zero:.1%} of the outputs are exactly 0",
            13, PALETTE["ink"])
    return cv.to_figure({
        "explanation": "activation_histogram", "stage": st.name, "function": fn,
        "edges": edges, "before": cb, "after": ca, "negative_fraction": neg,
        "zero_fraction": zero,
    })


def _shape_text(a: np.ndarray) -> str:
    return f"{a.shape[2]}x{a.shape[3]}x{a.shape[1]}" if a.ndim == 4 else "x".join(map(str, a.shape[1:]))
