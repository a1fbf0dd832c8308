"""Grad-CAM, Grad-CAM++, Layer-CAM and the gradient maps on networks whose answer is known."""
import numpy as np
import pytest

import convlens
from convlens import attribute
from convlens.attribute.base import mass_fraction
from convlens.errors import ModelError

from attribute_models import (
    PW, V, dot_image, pointwise_net, pointwise_reference, quadrant_net,
)


def _quadrant_image(h=16, w=20, seed=1):
    return np.random.default_rng(seed).uniform(0.2, 1.0, (h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_cam_mass_lies_in_the_only_quadrant_that_matters(method):
    img = _quadrant_image()
    a = attribute.cam(quadrant_net(), img, target=0, method=method)  # default: stage "2"
    assert a.stage == "2" and a.maps.shape == (1, 16, 20) and a.maps.sum() > 0
    assert mass_fraction(a.maps[0], (0, 7), (0, 9)) == 1.0  # all of it, exactly
    assert a.targets == [0] and a.meta["score_stage"] == "5"


def test_before_the_mask_only_layercam_keeps_the_quadrant():
    """At the ReLU before the mask the activations cover the whole image: Grad-CAM's
    per-channel weights cannot localise, Layer-CAM's per-position weights can."""
    img = _quadrant_image()
    lc = attribute.layercam(quadrant_net(), img, stage="1", target=0)
    assert mass_fraction(lc.maps[0], (0, 7), (0, 9)) == 1.0
    gc = attribute.gradcam(quadrant_net(), img, stage="1", target=0)
    assert mass_fraction(gc.maps[0], (0, 7), (0, 9)) < 0.5


@pytest.mark.parametrize("fn", [attribute.saliency, attribute.smoothgrad])
def test_saliency_mass_lies_in_the_quadrant_and_its_one_pixel_border(fn):
    img = _quadrant_image()
    s = fn(quadrant_net(), img, target=1)
    assert s.maps.shape == (1, 16, 20) and s.maps[0, :8, :10].sum() > 0
    # the 3x3 conv reads one pixel past the quadrant, no further
    assert mass_fraction(s.maps[0], (0, 8), (0, 10)) == 1.0
    assert mass_fraction(s.maps[0], (0, 7), (0, 9)) < 1.0


def test_gradcam_matches_numpy_reference():
    x = np.random.default_rng(0).uniform(0, 1, (2, 5, 6, 3)).astype(np.float32)
    for cls in (0, 1):
        a = attribute.gradcam(pointwise_net(), x, stage="1", target=cls)
        for b in range(2):
            A, g = pointwise_reference(x[b].transpose(2, 0, 1).astype(np.float64), cls)
            want = np.maximum(np.einsum("c,chw->hw", g.mean(axis=(1, 2)), A), 0)
            np.testing.assert_allclose(a.maps[b], want, rtol=1e-5, atol=1e-7)


def test_gradcam_pp_and_layercam_match_numpy_reference():
    x = np.random.default_rng(3).uniform(0, 1, (1, 4, 4, 3)).astype(np.float32)
    A, g = pointwise_reference(x[0].transpose(2, 0, 1).astype(np.float64), 0)
    # Layer-CAM: relu(sum_k relu(g) A)
    want_lc = np.maximum((np.maximum(g, 0) * A).sum(0), 0)
    lc = attribute.layercam(pointwise_net(), x, stage="1", target=0)
    np.testing.assert_allclose(lc.maps[0], want_lc, rtol=1e-5, atol=1e-7)
    # Grad-CAM++: alpha = g^2 / (2 g^2 + sum(A) g^3)
    den = 2 * g ** 2 + A.sum(axis=(1, 2), keepdims=True) * g ** 3
    alpha = np.where(den != 0, g ** 2 / np.where(den != 0, den, 1), 0)
    w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    want_pp = np.maximum(np.einsum("c,chw->hw", w, A), 0)
    pp = attribute.gradcam_plus_plus(pointwise_net(), x, stage="1", target=0)
    np.testing.assert_allclose(pp.maps[0], want_pp, rtol=1e-5, atol=1e-9)


def test_gradients_of_a_linear_net_are_exact():
    """No ReLU: score = V[c] . mean(PW x + PB) + VB[c], so dS/dx = (V[c] @ PW) / (H W)."""
    x = np.random.default_rng(5).uniform(0, 1, (1, 3, 4, 3)).astype(np.float32)
    net = pointwise_net(relu=False)
    per_channel = (V[1].astype(np.float64) @ PW) / 12.0
    s = attribute.saliency(net, x, target=1)
    np.testing.assert_allclose(s.maps[0], np.full((3, 4), np.abs(per_channel).max()), rtol=1e-6)
    gxi = attribute.gradient_x_input(net, x, target=1)
    want = np.einsum("c,hwc->hw", per_channel, x[0].astype(np.float64))
    np.testing.assert_allclose(gxi.maps[0], want, rtol=1e-5)
    assert gxi.signed and not s.signed
    logits = x[0].reshape(-1, 3).mean(0) @ PW.T.astype(np.float64)
    assert s.scores[0] == pytest.approx(V[1] @ (logits + [0.1, -0.2, 0.05]) - 0.1, rel=1e-5)


def test_smoothgrad_is_seeded_and_averages_noisy_gradients():
    img = _quadrant_image(8, 8)
    a = attribute.smoothgrad(quadrant_net(), img, target=0, samples=6, noise=0.2, seed=4)
    b = attribute.smoothgrad(quadrant_net(), img, target=0, samples=6, noise=0.2, seed=4, chunk=4)
    np.testing.assert_array_equal(a.maps, b.maps)  # chunking does not change the noise
    c = attribute.smoothgrad(quadrant_net(), img, target=0, samples=6, noise=0.2, seed=5)
    assert not np.array_equal(a.maps, c.maps)
    zero = attribute.smoothgrad(quadrant_net(), img, target=0, samples=3, noise=0.0)
    np.testing.assert_allclose(zero.maps, attribute.saliency(quadrant_net(), img, target=0).maps,
                               rtol=1e-6)


def test_default_stage_and_class_and_batches():
    img = _quadrant_image()
    net = quadrant_net()
    a = attribute.gradcam(net, np.stack([img, img[::-1]]))
    assert a.stage == "2"  # the last spatial stage larger than 1x1 (the mask's output)
    logits = net(__import__("torch").from_numpy(a.images.transpose(0, 3, 1, 2))).detach().numpy()
    assert a.targets == list(np.argmax(logits, 1))
    np.testing.assert_allclose(a.scores, logits.max(1), rtol=1e-6)
    one = attribute.gradcam(net, img[::-1])
    np.testing.assert_allclose(a.maps[1], one.maps[0], rtol=1e-6, atol=1e-9)
    per = attribute.gradcam(net, np.stack([img, img]), target=[0, 1])
    assert per.targets == [0, 1]


def test_unusable_stage_lists_the_stages_that_can_work():
    with pytest.raises(ModelError, match=r"stage '3' .*1x1x4.*stages that can: 0, 1, 2$"):
        attribute.gradcam(quadrant_net(), _quadrant_image(), stage="3")
    with pytest.raises(ModelError, match=r"'nope' \(no such stage\).*can: 0, 1, 2$"):
        attribute.gradcam(quadrant_net(), _quadrant_image(), stage="nope")
    with pytest.raises(ModelError, match=r"class 7 is out of range; this model has 2 classes"):
        attribute.gradcam(quadrant_net(), _quadrant_image(), target=7)
    with pytest.raises(ModelError, match=r"unknown attribution method 'gradcam\+'; expected one of gradcam, gradcam\+\+, layercam; did you mean gradcam\+\+"):
        attribute.cam(quadrant_net(), _quadrant_image(), method="gradcam+")


def test_class_by_name_and_close_matches():
    from convlens.nets import zoo

    zm = zoo.load("lenet")
    d, _ = convlens.digits(1)
    a = attribute.gradcam(zm, d, target="7")
    assert a.targets == [7] and a.target_names == ["7"]
    with pytest.raises(ModelError, match="unknown class 'seven'"):
        attribute.gradcam(zm, d, target="seven")


def test_upsampled_maps_have_the_image_size():
    a = attribute.gradcam(quadrant_net(), dot_image(12, 16))
    up = a.upsampled()
    assert up.shape == (1, 12, 16)
    assert np.isclose(up.max(), a.maps.max(), rtol=1e-5)  # same-size: a copy
