"""The pooling animation: picks and means agree with the reference and a direct loop."""
from __future__ import annotations

import numpy as np
import pytest
from test_explain_support import numpy_trace

from convlens import ops
from convlens.errors import RenderError
from convlens.explain.pool import DEFAULT_POOL_INPUT, pool_animation, pool_animation_from_stage


def direct_pool(x, k, s, pad, mode, include_pad=True):
    """(value, pick) per output position by plain loops; pick = first maximum (row-major)."""
    h, w = x.shape
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    vals, picks = np.zeros((oh, ow)), []
    for i in range(oh):
        for j in range(ow):
            cells = [(i * s + a - pad, j * s + b - pad) for a in range(k) for b in range(k)]
            inside = [(r, c) for r, c in cells if 0 <= r < h and 0 <= c < w]
            if mode == "max":
                best = inside[0]
                for rc in inside:
                    if x[rc] > x[best]:
                        best = rc
                vals[i, j] = x[best]
                picks.append(best)
            else:
                total = sum(x[rc] for rc in inside)
                vals[i, j] = total / (k * k if include_pad else len(inside))
                picks.append(None)
    return vals, picks


def test_default_max_example():
    anim = pool_animation()
    assert DEFAULT_POOL_INPUT.shape == (4, 4)
    assert anim.meta["output"].tolist() == [[6, 8], [3, 4]]
    assert anim.meta["picks"] == [(1, 1), (1, 3), (2, 0), (3, 3)]
    assert len(anim) == 4


def test_default_avg_example():
    anim = pool_animation(mode="avg")
    assert anim.meta["output"].tolist() == [[3.25, 5.25], [2.0, 2.0]]
    assert anim.meta["picks"] == [None] * 4


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k,s,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (5, 5, 0)])
def test_against_direct_loop_and_reference(mode, k, s, pad):
    x = np.random.default_rng(k * 7 + s + pad).normal(size=(10, 11)).round(2)
    anim = pool_animation(x, k, s, pad, mode)
    vals, picks = direct_pool(x, k, s, pad, mode)
    np.testing.assert_allclose(anim.meta["output"], vals, rtol=0, atol=1e-12)
    np.testing.assert_allclose(anim.meta["output"], ops.pool2d(x[None], k, s, pad, mode)[0], atol=1e-12)
    assert anim.meta["picks"] == picks


def test_avg_without_padding_count():
    x = np.arange(16.0).reshape(4, 4)
    anim = pool_animation(x, 3, 2, 1, "avg", count_include_pad=False)
    vals, _ = direct_pool(x, 3, 2, 1, "avg", include_pad=False)
    np.testing.assert_allclose(anim.meta["output"], vals)


def test_pool2d_at_reports_padding_and_origin():
    x = np.arange(25.0).reshape(1, 5, 5)
    st = ops.pool2d_at(x, 3, 0, 0, 0, stride=2, padding=1, mode="max")
    assert st["origin"] == (-1, -1)
    assert st["in_padding"][0].all() and st["in_padding"][:, 0].all() and not st["in_padding"][1, 1]
    assert st["pick"] == (2, 2) and st["value"] == 6.0 and st["count"] == 4


def test_formula_states_the_real_factor():
    anim = pool_animation(np.zeros((10, 15)), 5)
    assert "floor((10 + 2*0 - 1*(5-1) - 1)/5) + 1 = 2" in anim.meta["formula"][-1]
    assert "floor((15 + 2*0 - 1*(5-1) - 1)/5) + 1 = 3" in anim.meta["formula"][-1]


def test_deterministic():
    assert pool_animation(mode="avg").to_gif_bytes() == pool_animation(mode="avg").to_gif_bytes()


def test_errors():
    with pytest.raises(RenderError, match="'max' or 'avg'"):
        pool_animation(mode="min")
    with pytest.raises(RenderError, match="2-D"):
        pool_animation(np.zeros((2, 4, 4)))


@pytest.fixture(scope="module")
def trace():
    x = np.random.default_rng(5).normal(size=(1, 2, 16, 17))
    return numpy_trace("conv(3, 3x3) relu maxpool(3, stride=2, padding=1) avgpool(2)", x)


@pytest.mark.parametrize("stage,channel,at", [("maxpool1", 0, (0, 0)), ("maxpool1", 2, (5, 5)),
                                               ("avgpool1", 1, (1, 2))])
def test_real_stage(trace, stage, channel, at):
    anim = pool_animation_from_stage(trace, stage, channel=channel, at=at)
    np.testing.assert_allclose(anim.meta["output"], anim.meta["stage_output"], atol=1e-6)
    st = trace[stage]
    x = trace.stages[st.source].output[0, channel]
    if st.params["mode"] == "max":
        for (r, c), v in zip(anim.meta["picks"], anim.meta["values"]):
            assert x[r, c] == np.float32(v)  # the picked input pixel holds the value


def test_real_stage_errors(trace):
    with pytest.raises(RenderError, match="maxpool1, avgpool1"):
        pool_animation_from_stage(trace, "conv1")
    with pytest.raises(RenderError, match="7x8 output; expected row 0..6"):
        pool_animation_from_stage(trace, "maxpool1", at=(8, 0))
