"""Receptive fields against brute force: perturb one input pixel, see which outputs change."""
from __future__ import annotations

import numpy as np
import pytest
from test_explain_support import forward, make_weights, numpy_trace

from convlens.errors import RenderError
from convlens.explain.receptive import (
    receptive_field, receptive_field_figure, receptive_field_growth, receptive_field_growth_figure,
)
from convlens.nets.spec import parse_spec

NETS = [
    "conv(2, 3x3, stride=2, padding=1) leakyrelu(0.1) conv(2, 3x3, dilation=2) maxpool(2)",
    "conv(2, 5x5, padding=same) avgpool(3, stride=2, padding=1) conv(2, 3x3, stride=2, dilation=2, padding=2)",
    "conv(2, 1x1, stride=3) conv(2, 3x3, padding=1)",
    "conv(2, 3x3, dilation=3, padding=same) maxpool(2, stride=1) conv(1, 2x2, stride=2)",
    "conv(2, 4x4, stride=2, padding=same) leakyrelu(0.2) conv(2, 3x1, dilation=2) "
    "maxpool(3, stride=2, padding=1) tanh",
]
SHAPE = (2, 17, 19)


def brute_force(text: str, shape=SHAPE, seed: int = 0) -> list[np.ndarray]:
    """For every layer, a (H_out, W_out, H_in, W_in) array: does input pixel (y, x) change
    output position (r, c)?  Each pixel is pushed by 1000 in directions spread around the
    circle of channel space (through a max pool and a leaky ReLU one direction may not show:
    a max only changes when some value in its window goes up)."""
    spec = parse_spec(text, in_channels=shape[0])
    weights = make_weights(spec, shape, seed)
    x = np.random.default_rng(seed).normal(size=(1,) + shape)
    base = forward(spec, x, weights)
    h, w = shape[1:]
    if shape[0] == 1:
        deltas = [np.array([1e3]), np.array([-1e3])]
    else:
        assert shape[0] == 2
        deltas = [1e3 * np.array([np.cos(a), np.sin(a)]) for a in np.arange(12) * np.pi / 6 + 0.1]
    changed = [np.zeros(b.shape[2:] + (h, w), dtype=bool) if b.ndim == 4 else np.zeros((h, w), bool)
               for b in base]
    deltas = np.array(deltas)
    for yy in range(h):
        for xx in range(w):
            xp = np.repeat(x, len(deltas), axis=0)  # one batch row per push
            xp[:, :, yy, xx] += deltas
            for k, (b, o) in enumerate(zip(base, forward(spec, xp, weights))):
                diff = np.abs(o - b) > 1e-9 * (1 + np.abs(b))
                if b.ndim == 4:
                    changed[k][:, :, yy, xx] |= diff.any(axis=(0, 1))
                else:
                    changed[k][yy, xx] |= diff.any()
    return changed


@pytest.mark.parametrize("text", NETS)
def test_masks_and_boxes_match_brute_force(text):
    spec = parse_spec(text, in_channels=SHAPE[0])
    truth = brute_force(text)
    for k, (name, shape) in enumerate(spec.shapes(SHAPE)):
        if len(shape) != 3:
            continue
        for r in range(shape[1]):
            for c in range(shape[2]):
                rf = receptive_field(text, name, (r, c), SHAPE)
                want = truth[k][r, c]
                assert np.array_equal(rf.mask, want), (name, r, c)
                rows, cols = np.nonzero(want)
                assert rf.clipped == ((rows.min(), rows.max()), (cols.min(), cols.max())), (name, r, c)


def test_dilation_leaves_holes_and_stride_jumps():
    rf = receptive_field("conv(1, 3x3, dilation=3)", "conv1", (2, 2), (1, 12, 12))
    assert rf.rows == (2, 8) and rf.cols == (2, 8) and rf.size == (7, 7)
    assert rf.mask.sum() == 9  # only the 3x3 taps
    rf = receptive_field("conv(1, 1x1, stride=3) conv(1, 3x3)", "conv2", (0, 0), (1, 12, 12))
    assert rf.size == (7, 7) and rf.jump == (3, 3) and rf.mask.sum() == 9


def test_padding_makes_the_box_reach_outside():
    rf = receptive_field("conv(1, 5x5, padding=2)", "conv1", (0, 0), (1, 8, 8))
    assert rf.rows == (-2, 2) and rf.clipped == ((0, 2), (0, 2))


def test_flat_stage_sees_everything_reachable():
    text = "conv(2, 3x3, stride=2) flatten dense(3)"
    rf = receptive_field(text, "dense1", None, (1, 8, 8))
    truth = brute_force(text, (1, 8, 8))
    assert np.array_equal(rf.mask, truth[-1])
    assert not rf.mask[:, -1].any()  # a stride-2 valid conv never reads the last column


def test_classic_alexnet_growth():
    sizes = [g["size"][0] for g in receptive_field_growth("alexnet") if g["windowed"]]
    assert sizes == [11, 19, 51, 67, 99, 131, 163, 195]
    jumps = [g["jump"][0] for g in receptive_field_growth("alexnet") if g["windowed"]]
    assert jumps == [4, 8, 8, 16, 16, 16, 16, 32]


def test_trace_gives_the_same_field_as_its_spec():
    text = NETS[1]
    t = numpy_trace(text, np.random.default_rng(0).normal(size=(1,) + SHAPE))
    a, b = receptive_field(t, "conv2", (1, 2)), receptive_field(text, "conv2", (1, 2), SHAPE)
    assert (a.rows, a.cols, a.jump) == (b.rows, b.cols, b.jump) and np.array_equal(a.mask, b.mask)


def test_default_position_is_the_centre_and_errors():
    rf = receptive_field("conv(1, 3x3)", "conv1", None, (1, 9, 9))
    assert rf.position == (3, 3)
    with pytest.raises(RenderError, match="row 0..6"):
        receptive_field("conv(1, 3x3)", "conv1", (7, 0), (1, 9, 9))
    with pytest.raises(RenderError, match=r"no stage named 'conv5'; did you mean 'conv1'\?"):
        receptive_field("conv(1, 3x3)", "conv5", None, (1, 9, 9))


def test_figures(tmp_path):
    t = numpy_trace(NETS[0], np.random.default_rng(0).normal(size=(1,) + SHAPE))
    fig = receptive_field_figure(t, "maxpool1", (1, 1))
    assert fig.meta["rows"] == receptive_field(t, "maxpool1", (1, 1)).rows
    assert fig.to_png_bytes() == receptive_field_figure(t, "maxpool1", (1, 1)).to_png_bytes()
    growth = receptive_field_growth_figure(t)
    assert [g["name"] for g in growth.meta["growth"]] == ["conv1", "conv2", "maxpool1"]
    growth.save(tmp_path / "g.png")
    with pytest.raises(RenderError, match="no spatial"):
        receptive_field_growth_figure("flatten dense(3)", (1, 4, 4))
