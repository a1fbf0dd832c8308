"""Activation maximisation: the image pieces have exact adjoints, and the ascent works."""
import io

import numpy as np
import pytest
import torch
from torch import nn

from convlens import attribute
from convlens.attribute.imageparam import (
    Adam, Affine, FourierImage, blur_penalty, color_matrix, pointwise, pointwise_adjoint,
    tv_penalty,
)
from convlens.errors import ModelError
from convlens.preprocess import Preprocess


def _edges(bias=(0.0, 0.0)):
    """conv 3x3 (valid): channel 0 a vertical-edge (Sobel x) detector, channel 1 a
    horizontal one, both on R+G+B; then ReLU.  A flat image gives 0 in both."""
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    conv = nn.Conv2d(3, 2, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([sobel, sobel.T])[:, None].repeat(1, 3, 1, 1))
        conv.bias.copy_(torch.tensor(bias))
    return nn.Sequential(conv, nn.ReLU()).eval()


def _tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def test_color_matrix_is_the_square_root_of_the_cats_colour_covariance():
    from convlens import cat

    m = color_matrix()
    cov = np.cov(cat().reshape(-1, 3).astype(np.float64), rowvar=False)
    k = (m @ m.T)[0, 0] / cov[0, 0]
    np.testing.assert_allclose(m @ m.T, k * cov, rtol=1e-9)
    assert np.linalg.norm(m, axis=0).max() == pytest.approx(1.0)


def test_fourier_image_gradient_is_exact():
    rng = np.random.default_rng(0)
    f = FourierImage(2, 6, 5, rng, std=0.5)
    g = rng.normal(size=(2, 3, 6, 5))
    grad = f.backward(g) if f.image() is not None else None
    d = (rng.normal(size=f.params.shape) + 1j * rng.normal(size=f.params.shape)) * 1e-6
    base = (f.image() * g).sum()
    f.params = f.params + d
    moved = (f.image() * g).sum()
    predicted = (grad.real * d.real).sum() + (grad.imag * d.imag).sum()
    assert moved - base == pytest.approx(predicted, rel=1e-4)


@pytest.mark.parametrize("affine", [Affine(7, 9, 12.0, 1.1, (2.0, -1.0)), Affine(7, 9),
                                    Affine(7, 9, -30.0, 0.8, (0.0, 3.0))])
def test_affine_adjoint_passes_the_dot_product_test(affine):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 3, 7, 9)), rng.normal(size=(2, 3, 7, 9))
    assert (affine.apply(x) * y).sum() == pytest.approx((x * affine.adjoint(y)).sum(), rel=1e-12)


def test_affine_identity_and_shift_are_exact():
    x = np.arange(2 * 5 * 6, dtype=np.float64).reshape(2, 5, 6)
    np.testing.assert_array_equal(Affine(5, 6).apply(x), x)
    shifted = Affine(5, 6, shift=(1.0, 2.0)).apply(x)
    np.testing.assert_array_equal(shifted[:, 1:, 2:], x[:, :-1, :-2])
    np.testing.assert_array_equal(shifted[:, 0, 2:], x[:, 1, :-2])  # mirrored at the edge


@pytest.mark.parametrize("penalty", [tv_penalty, blur_penalty])
def test_penalty_gradients_match_finite_differences(penalty):
    rng = np.random.default_rng(2)
    img = rng.uniform(size=(1, 3, 5, 6))
    value, grad = penalty(img)
    for idx in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 2, 4, 5)]:
        e = np.zeros_like(img)
        e[idx] = 1e-6
        num = (penalty(img + e)[0] - penalty(img - e)[0]) / 2e-6
        assert grad[idx] == pytest.approx(num, rel=1e-4, abs=1e-9)
    assert value > penalty(np.full_like(img, 0.5))[0]


@pytest.mark.parametrize("pre", [Preprocess.imagenet(224), Preprocess(grayscale=True, invert=True),
                                 Preprocess(scale=255.0, mean=(10.0,), std=(2.0,))])
def test_pointwise_preprocess_matches_apply_and_its_adjoint(pre):
    rng = np.random.default_rng(3)
    img = rng.uniform(size=(2, 3, 4, 5))
    want, _ = Preprocess(grayscale=pre.grayscale, invert=pre.invert, scale=pre.scale,
                         mean=pre.mean, std=pre.std).apply(img.transpose(0, 2, 3, 1))
    x = pointwise(pre, img)
    np.testing.assert_allclose(x, want, rtol=1e-6)
    g = rng.normal(size=x.shape)
    lin = pointwise(pre, img) - pointwise(pre, np.zeros_like(img))  # the linear part
    assert (lin * g).sum() == pytest.approx((img * pointwise_adjoint(pre, g)).sum(), rel=1e-9)


def test_adam_climbs_a_concave_function():
    p = np.array([3.0 + 1j, -2.0 - 2j])
    opt = Adam(lr=0.1)
    for _ in range(300):
        opt.step(p, -(p - (1 + 1j)))  # gradient of -|p - (1+i)|^2 / 2
    np.testing.assert_allclose(p, [1 + 1j, 1 + 1j], atol=1e-2)


def test_maximisation_raises_the_channel_by_a_large_factor():
    net = _edges()
    r = attribute.maximize(net, "1", [0, 1], size=24, steps=40, seed=1, progress=None)
    assert r.images.shape == (2, 24, 24, 3) and 0 < r.images.min() and r.images.max() < 1
    # measured on the untransformed images, not the jittered ones the steps saw
    from convlens.attribute.base import channel_seed, subject

    sub = subject(net)
    p = sub.backend.run(r.images.transpose(0, 3, 1, 2).copy(), objective=("1", channel_seed([0, 1])))
    np.testing.assert_allclose(r.final, p.objective, rtol=1e-5)
    assert np.all(r.start < 0.02)          # the nearly flat start image has almost no edges
    assert np.all(r.final > 0.5)           # ... the result is full of them
    assert np.all(r.final > 50 * r.start)
    assert r.history.shape == (40, 2) and r.history[-5:].mean() > 5 * r.history[:5].mean()
    # the vertical-edge channel drew vertical bands (brightness changes along x, not y);
    # the horizontal-edge channel the other way round
    v, h = r.images[0].mean(-1), r.images[1].mean(-1)
    assert v.mean(0).var() > 4 * v.mean(1).var()
    assert h.mean(1).var() > 4 * h.mean(0).var()


def test_maximisation_is_seeded_and_reports_progress():
    net = _tiny()
    out = io.StringIO()
    a = attribute.maximize(net, None, [1], size=16, steps=5, seed=3, progress=out)
    b = attribute.maximize(net, None, [1], size=16, steps=5, seed=3, progress=None)
    c = attribute.maximize(net, None, [1], size=16, steps=5, seed=4, progress=None)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.stage == "class" and a.final[0] > a.start[0]
    text = out.getvalue()
    assert "5/5" in text and text.endswith("\n") and "maximising class 1" in text
    fig = attribute.maximize_figure(a)
    assert fig.meta["channels"] == [1] and fig.meta["final"] == [float(a.final[0])]


def test_a_dead_relu_channel_is_climbed_through_its_input():
    net = _edges(bias=(-1.0, 0.0))  # channel 0 is zero on any image without strong edges
    r = attribute.maximize(net, "1", [0], size=16, steps=30, progress=None)
    assert r.start[0] == 0.0 and r.final[0] > 0.3
    still = attribute.maximize(net, "1", [0], size=16, steps=5, progress=None, pre_activation=False)
    assert still.final[0] == 0.0  # a zero gradient goes nowhere


def test_maximisation_errors_are_one_line():
    net = _tiny()
    with pytest.raises(ModelError, match=r"channel 9 is out of range; the stage has 8 channels"):
        attribute.maximize(net, "3", [9], size=16, steps=1, progress=None)
    with pytest.raises(ModelError, match="no stage named 'nine'"):
        attribute.maximize(net, "nine", [0], size=16, steps=1, progress=None)
    with pytest.raises(ModelError, match="unknown penalty 'l1'; expected one of tv, blur, none"):
        attribute.maximize(net, "3", [0], penalty="l1", progress=None)
    with pytest.raises(ModelError, match=r"size=\(4, 4\) is not valid; expected a side of at least 8"):
        attribute.maximize(net, "3", [0], size=4, progress=None)
