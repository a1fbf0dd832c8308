"""render.filters: kernels drawn on the one stated symmetric scale, checked pixel by pixel."""
from __future__ import annotations

import numpy as np
import pytest

import convlens
from convlens import render
from convlens.errors import RenderError
from convlens.render.colormaps import unit_to_index
from convlens.trace import Stage, Trace


def conv_stage(weight, name="conv1", groups=1) -> Stage:
    w = np.asarray(weight, dtype=np.float32)
    out = np.zeros((1, w.shape[0], 2, 2), np.float32)
    return Stage(0, name, "conv", "Conv2d", out, params={"groups": groups},
                 weights={"weight": w, "bias": np.zeros(w.shape[0], np.float32)})


def cells(fig) -> dict:
    return {(r["out"], tuple(r["in"]) if isinstance(r["in"], list) else r["in"]): r
            for r in fig.meta["panels"]}


def px(fig, rec, row, col) -> tuple[int, ...]:
    z = int(rec["zoom"])
    x0, y0, _, _ = rec["box"]
    return tuple(int(v) for v in fig.to_array()[y0 + row * z + z // 2, x0 + col * z + z // 2])


def heat(u: float, cmap: str = "RdBu_r") -> tuple[int, ...]:
    """The colour a unit value picks: row floor(u * 256) of the 256-colour table."""
    return tuple(int(v) for v in render.lut(cmap)[unit_to_index(np.array([u]))[0]])


def rgb_expected(v: float, m: float) -> int:
    return int(np.floor((v + m) / (2 * m) * 255 + 0.5))


def test_first_layer_rgb_kernels_use_one_symmetric_scale():
    w = np.zeros((2, 3, 2, 2), np.float32)
    w[0, 0] = [[2.0, -2.0], [0.0, 1.0]]   # red
    w[0, 1] = [[0.5, 0.0], [0.0, -1.0]]   # green
    w[1, 2] = [[-0.5, 0.0], [0.0, 0.25]]  # blue, kernel 1
    fig = render.filters(conv_stage(w))
    assert fig.meta["layout"] == "rgb" and (fig.meta["vmin"], fig.meta["vmax"]) == (-2.0, 2.0)
    c = cells(fig)
    for o in (0, 1):
        for r in (0, 1):
            for col in (0, 1):
                want = tuple(rgb_expected(float(w[o, ch, r, col]), 2.0) for ch in range(3))
                assert px(fig, c[o, (0, 1, 2)], r, col) == want
    assert px(fig, c[0, (0, 1, 2)], 0, 0) == (255, 159, 128)   # +2 -> 255, +0.5 -> floor(159.875), 0 -> 128
    assert px(fig, c[1, (0, 1, 2)], 0, 1) == (128, 128, 128)   # 0 is mid grey


def test_deeper_kernels_form_an_out_by_in_matrix_on_a_diverging_scale():
    w = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) - 30.0  # -30 ... 41
    fig = render.filters(conv_stage(w, "conv2"), cmap="coolwarm")
    assert fig.meta["layout"] == "matrix" and (fig.meta["vmin"], fig.meta["vmax"]) == (-41.0, 41.0)
    assert fig.meta["outputs_shown"] == [0, 1] and fig.meta["inputs_shown"] == [0, 1, 2, 3]
    c = cells(fig)
    assert len(c) == 8
    for (o, i), rec in c.items():
        for r in range(3):
            for col in range(3):
                u = (w[o, i, r, col] + 41.0) / 82.0
                assert px(fig, rec, r, col) == heat(u, "coolwarm")
    # rows are output channels: kernel (1, 0) sits below (0, 0), (0, 1) right of it
    assert c[1, 0]["box"][1] > c[0, 0]["box"][1] and c[1, 0]["box"][0] == c[0, 0]["box"][0]
    assert c[0, 1]["box"][0] > c[0, 0]["box"][0] and c[0, 1]["box"][1] == c[0, 0]["box"][1]


def test_scale_covers_every_kernel_even_those_not_drawn():
    w = np.zeros((5, 2, 1, 1), np.float32)
    w[0, 0, 0, 0] = 1.0
    w[4, 1, 0, 0] = -8.0  # beyond max_out: still sets the scale
    fig = render.filters(conv_stage(w), max_out=2, max_in=1)
    assert (fig.meta["vmin"], fig.meta["vmax"]) == (-8.0, 8.0)
    assert sorted(cells(fig)) == [(0, 0), (1, 0)]
    assert px(fig, cells(fig)[0, 0], 0, 0) == heat((1.0 + 8.0) / 16.0)


def test_single_input_and_depthwise_kernels_are_one_tile_per_output():
    w = np.stack([np.full((1, 3, 3), v, np.float32) for v in (-1.0, 0.0, 0.5, 1.0)])
    fig = render.filters(conv_stage(w, "dw", groups=4))
    assert fig.meta["layout"] == "kernels" and fig.meta["groups"] == 4
    for (o, i), rec in cells(fig).items():
        assert i == o  # depthwise: output o reads input o
        u = (w[o, 0, 0, 0] + 1.0) / 2.0
        assert px(fig, rec, 1, 1) == heat(u)


def test_trace_resolution_errors_and_determinism():
    stem = conv_stage(np.ones((1, 3, 1, 1)), "stem")
    relu = Stage(1, "relu", "activation", "ReLU", np.zeros((1, 1, 2, 2), np.float32))
    trace = Trace([stem, relu], np.zeros((1, 2, 2, 3), np.float32), "numpy", "t")
    assert render.filters(trace).meta["stage"] == "stem"  # the first conv by default
    assert render.filters(trace, 0).to_png_bytes() == render.filters(trace, "stem").to_png_bytes()
    with pytest.raises(RenderError, match=r"stage 'relu' \(activation\) has weights: none; "
                                          r"conv stages of this trace: stem"):
        render.filters(trace, "relu")
    with pytest.raises(RenderError, match="unknown filter layout 'rbg'; expected one of auto"):
        render.filters(trace, layout="rbg")
    with pytest.raises(RenderError, match="layout='rgb' needs kernels over 3 input channels"):
        render.filters(conv_stage(np.ones((2, 2, 1, 1))), layout="rgb")
    with pytest.raises(RenderError, match="max_out must be an integer"):
        render.filters(stem, max_out="4")


def test_lenet_filters_are_the_shipped_weights():
    from convlens.nets import lenet

    digit = convlens.digits(1)[0]
    trace = convlens.make_trace(digit, model="zoo:lenet")
    w = lenet.load_weights()["conv1.weight"]
    fig = render.filters(trace, "conv1")
    m = float(np.abs(w).max())
    assert fig.meta["kernel"] == [6, 1, 5, 5] and fig.meta["vmax"] == pytest.approx(m)
    rec = cells(fig)[3, 0]
    u = (w[3, 0, 2, 4] + m) / (2 * m)
    assert px(fig, rec, 2, 4) == heat(u)
