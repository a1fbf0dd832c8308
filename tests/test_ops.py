"""convlens.ops, the reference every number is checked against, vs direct loops and the frameworks."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convlens import ops
from convlens.errors import ConvlensError


def loop_conv(x, w, b, stride, pad, dil, groups):
    """A direct, obviously-correct loop (C, H, W) -> (O, OH, OW) with symmetric padding."""
    c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad))
    xp[:, pad:pad + h, pad:pad + wd] = x
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((o, oh, ow))
    opg = o // groups
    for oc, i, j in itertools.product(range(o), range(oh), range(ow)):
        g = oc // opg
        s = 0.0
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            s += xp[g * cg + ci, i * stride + u * dil, j * stride + v * dil] * w[oc, ci, u, v]
        out[oc, i, j] = s + (b[oc] if b is not None else 0.0)
    return out


def test_classic_5x5_example():
    x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]], float)[None]
    k = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], float)[None, None]
    assert ops.conv2d(x, k).tolist() == [[[4, 3, 4], [2, 4, 3], [2, 3, 4]]]


@pytest.mark.parametrize("stride,pad,dil,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1),
                                                   (3, 1, 2, 2), (1, 0, 1, 4)])
def test_conv2d_matches_loop_and_torch(stride, pad, dil, groups):
    rng = np.random.default_rng(stride * 10 + pad + dil + groups)
    x = rng.normal(size=(4, 9, 11))
    w = rng.normal(size=(4, 4 // groups, 3, 2))
    b = rng.normal(size=4)
    got = ops.conv2d(x, w, b, stride, pad, dil, groups)
    np.testing.assert_allclose(got, loop_conv(x, w, b, stride, pad, dil, groups), atol=1e-12)
    ref = F.conv2d(torch.tensor(x[None]), torch.tensor(w), torch.tensor(b), stride, pad, dil, groups)
    np.testing.assert_allclose(got, ref[0].numpy(), atol=1e-10)


@pytest.mark.parametrize("n,k,s,d", [(7, 3, 2, 1), (8, 3, 2, 1), (10, 4, 3, 1), (9, 3, 1, 2)])
def test_same_padding_follows_tensorflow(n, k, s, d):
    (top, bottom), _ = ops.resolve_padding("same", (n, n), k, s, d)
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    assert (top, bottom) == (total // 2, total - total // 2)
    assert ops.output_size(n, k, s, (top, bottom), d) == out


def test_output_size_formula():
    assert ops.output_size(224, 11, 4, 2) == 55          # AlexNet conv1
    assert ops.output_size(451, 5, 5) == 90               # a 5x5 pool: one fifth per side
    assert ops.output_size(10, 3, 1, 0, 2) == 6           # dilation 2: effective kernel 5


def test_pooling_matches_loop_and_torch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 10, 13))
    got = ops.pool2d(x, 3, 2, mode="max")
    for b, c, i, j in itertools.product(range(2), range(3), range(got.shape[2]), range(got.shape[3])):
        assert got[b, c, i, j] == x[b, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max()
    np.testing.assert_allclose(got, F.max_pool2d(torch.tensor(x), 3, 2).numpy())
    avg = ops.pool2d(x, 2, mode="avg", padding=1)
    np.testing.assert_allclose(avg, F.avg_pool2d(torch.tensor(x), 2, 2, 1).numpy(), atol=1e-12)
    np.testing.assert_allclose(ops.pool2d(x, 3, 1, padding=1, mode="max"),
                               F.max_pool2d(torch.tensor(x), 3, 1, 1).numpy())


def test_conv2d_at_breaks_down_one_value():
    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(3, 6, 6)), rng.normal(size=(2, 3, 3, 3)), np.array([0.5, -1.0])
    full = ops.conv2d(x, w, b, stride=2, padding=1)
    at = ops.conv2d_at(x, w, b, 1, 2, 1, stride=2, padding=1)
    assert at["value"] == pytest.approx(full[1, 2, 1], abs=1e-12)
    assert at["channel_sums"].sum() + at["bias"] == pytest.approx(at["value"])
    np.testing.assert_array_equal(at["window"], np.pad(x, ((0, 0), (1, 1), (1, 1)))[:, 4:7, 2:5])


@pytest.mark.parametrize("name,fn", [
    ("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("gelu", F.gelu),
    ("silu", F.silu), ("softplus", F.softplus), ("elu", F.elu), ("selu", F.selu),
    ("relu6", F.relu6), ("leaky_relu", F.leaky_relu),
])
def test_activations_match_torch(name, fn):
    x = np.linspace(-6, 6, 97)
    np.testing.assert_allclose(ops.activation(x, name), fn(torch.tensor(x)).numpy(), atol=1e-12)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ConvlensError, match="expects 4 input channels; got 3"):
        ops.conv2d(np.zeros((3, 5, 5)), np.zeros((2, 4, 3, 3)))
    with pytest.raises(ConvlensError, match="larger than the padded input"):
        ops.pool2d(np.zeros((1, 2, 2)), 3)
    with pytest.raises(ConvlensError, match="expected one of"):
        ops.activation(np.zeros(2), "relux")
