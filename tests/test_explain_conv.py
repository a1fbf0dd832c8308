"""The convolution animation: exact numbers, stride/padding/dilation, real stages."""
from __future__ import annotations

import numpy as np
import pytest
from test_explain_support import numpy_trace

from convlens import ops
from convlens.errors import ConvlensError, RenderError
from convlens.explain.conv import DEFAULT_INPUT, DEFAULT_KERNEL, conv_animation, conv_animation_from_stage


def direct_conv(x, k, bias=0.0, stride=1, pad=0, dil=1):
    """A plain loop, independent of convlens.ops: x (C, H, W), k (C, kh, kw)."""
    c, h, w = x.shape
    _, kh, kw = k.shape
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    xp[:, pad:pad + h, pad:pad + w] = x
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            total = bias
            for ch in range(c):
                for a in range(kh):
                    for b in range(kw):
                        total += xp[ch, i * stride + a * dil, j * stride + b * dil] * k[ch, a, b]
            out[i, j] = total
    return out


def test_default_example_is_the_classic_one():
    anim = conv_animation()
    assert anim.meta["output"].tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
    assert anim.meta["values"] == [4, 3, 4, 2, 4, 3, 2, 3, 4]
    assert len(anim) == 9
    assert anim.meta["positions"][0] == (0, 0) and anim.meta["positions"][-1] == (2, 2)
    assert DEFAULT_INPUT.shape == (5, 5) and DEFAULT_KERNEL.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


def test_default_example_against_scipy():
    signal = pytest.importorskip("scipy.signal")
    ref = signal.correlate2d(DEFAULT_INPUT, DEFAULT_KERNEL, mode="valid")
    assert np.array_equal(conv_animation().meta["output"], ref)


@pytest.mark.parametrize("stride,pad,dil", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (2, 1, 2), (3, 0, 1)])
def test_stride_padding_dilation_multichannel(stride, pad, dil):
    rng = np.random.default_rng(stride * 10 + pad + dil)
    x = rng.integers(-3, 4, size=(3, 7, 8)).astype(float)
    k = rng.integers(-2, 3, size=(3, 3, 3)).astype(float)
    anim = conv_animation(x, k, bias=1.5, stride=stride, padding=pad, dilation=dil)
    ref = direct_conv(x, k, 1.5, stride, pad, dil)
    assert np.array_equal(anim.meta["output"], ref)
    assert anim.meta["values"] == ref.ravel().tolist()
    assert len(anim) == ref.size
    assert anim.meta["padding"] == ((pad, pad), (pad, pad))


def test_channel_sums_add_up_to_each_value():
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(4, 6, 6)), rng.normal(size=(2, 4, 3, 3)), rng.normal(size=2)
    for r in range(4):
        for c in range(4):
            step = ops.conv2d_at(x, w, b, 1, r, c)
            assert step["channel_sums"].shape == (4,)
            assert step["value"] == pytest.approx(step["channel_sums"].sum() + b[1], abs=1e-12)
            assert step["value"] == pytest.approx(ops.conv2d(x, w, b)[1, r, c], abs=1e-12)


def test_formula_and_shapes_are_stated():
    anim = conv_animation(stride=2, padding=1)
    text = " ".join(anim.meta["formula"])
    assert "floor((5 + 2*1 - 1*(3-1) - 1)/2) + 1 = 3" in text
    assert "input 5x5x1" in text and "output 3x3x1" in text


def test_frames_are_deterministic_and_same_size():
    a, b = conv_animation(padding=1, dilation=2), conv_animation(padding=1, dilation=2)
    assert a.to_gif_bytes() == b.to_gif_bytes()
    assert a.frame(3).to_png_bytes() == b.frame(3).to_png_bytes()
    assert len({im.size for im in a.frames}) == 1


def test_gif_frames_and_svg_files(tmp_path):
    from PIL import Image

    anim = conv_animation()
    gif = anim.save_gif(tmp_path / "c.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 9
    assert len(anim.save_frames(tmp_path / "frames")) == 9
    svg = anim.save_svg(tmp_path / "c.svg").read_text()
    assert svg.startswith("<svg") and "output at (2, 2) = 4 + 0 (bias) = 4" in svg
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)


def test_bad_shapes_and_too_many_frames():
    with pytest.raises(RenderError, match="same C"):
        conv_animation(np.zeros((2, 5, 5)), np.zeros((3, 3, 3)))
    with pytest.raises(ConvlensError, match="limit"):
        conv_animation(np.zeros((40, 40)))


@pytest.fixture(scope="module")
def trace():
    x = np.random.default_rng(0).normal(size=(2, 3, 14, 15))
    return numpy_trace("conv(4, 3x3, padding=same) relu conv(5, 3x3, stride=2, dilation=2, padding=1) "
                       "relu maxpool(2) flatten dense(3)", x)


@pytest.mark.parametrize("stage,channel,at", [("conv1", 2, (0, 0)), ("conv1", 0, (12, 13)),
                                               ("conv2", 4, (1, 2)), ("conv2", 1, (0, 0))])
def test_real_stage_values_match_its_output(trace, stage, channel, at):
    anim = conv_animation_from_stage(trace, stage, channel=channel, at=at, size=3, image=1)
    assert anim.meta["output"].shape == anim.meta["stage_output"].shape
    np.testing.assert_allclose(anim.meta["output"], anim.meta["stage_output"], atol=1e-5)
    # and the reference op on the stage's input, to float64 rounding
    st = trace[stage]
    src = trace.model_input if st.source == -1 else trace.stages[st.source].output
    p = st.params
    ref = ops.conv2d(src[1], st.weights["weight"], st.weights["bias"], p["stride"], p["padding"],
                     p["dilation"])[channel]
    r, c = at
    n_r, n_c = anim.meta["output"].shape
    np.testing.assert_allclose(anim.meta["output"], ref[r:r + n_r, c:c + n_c], rtol=0, atol=1e-12)


def test_real_stage_errors_list_choices(trace):
    with pytest.raises(RenderError, match="conv1, conv2"):
        conv_animation_from_stage(trace, "relu1")
    with pytest.raises(RenderError, match="channels 0..3"):
        conv_animation_from_stage(trace, "conv1", channel=9)
    with pytest.raises(RenderError, match="row 0..13"):
        conv_animation_from_stage(trace, "conv1", at=(20, 0))
    with pytest.raises(ConvlensError, match="no stage named"):
        conv_animation_from_stage(trace, "conv9")


def test_many_input_channels_are_summarised():
    x = np.random.default_rng(1).normal(size=(1, 8, 6, 6))
    t = numpy_trace("conv(2, 3x3)", x)
    anim = conv_animation_from_stage(t, "conv1", channel=1, size=2, max_channels=3)
    svg = anim.to_svg(0)
    assert "+ 5 more input channels" in svg
