"""Tests for convlens.preprocess: steps applied, exact values, validation, round trips."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convlens.errors import ImageError
from convlens.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from convlens.trace import Trace

F32 = np.float32
LAYOUT = {"op": "layout", "to": "NCHW"}


def small_batch() -> np.ndarray:
    """Two 1x2 RGB images with hand-picked values, (B, H, W, 3) float32."""
    return np.array([
        [[[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]]],
        [[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]],
    ], np.float32)


def test_default_is_just_layout():
    batch = small_batch()
    out, steps = Preprocess().apply(batch)
    assert steps == [LAYOUT]
    assert out.shape == (2, 3, 1, 2) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, batch.transpose(0, 3, 1, 2))
    assert out[0, :, 0, 0].tolist() == [F32(0.2), F32(0.4), F32(0.6)]


def test_grayscale_exact_luma():
    batch = small_batch()
    out, steps = Preprocess(grayscale=True).apply(batch)
    assert steps == [{"op": "grayscale", "weights": [0.299, 0.587, 0.114]}, LAYOUT]
    assert out.shape == (2, 1, 1, 2)
    x = batch.astype(np.float64)
    expect = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).astype(F32)
    np.testing.assert_array_equal(out[:, 0], expect)
    np.testing.assert_allclose(out[0, 0, 0], [0.363, 0.356], rtol=0, atol=1e-7)
    assert out[1, 0, 0].tolist() == [0.0, 1.0]


def test_normalize_imagenet_exact():
    batch = small_batch()
    out, steps = Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD).apply(batch)
    assert steps == [{"op": "normalize", "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225]}, LAYOUT]
    expect = ((batch.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD).astype(F32)
    np.testing.assert_array_equal(out, expect.transpose(0, 3, 1, 2))
    # black pixel -> -mean/std, hand computed
    np.testing.assert_allclose(out[1, :, 0, 0], [-2.117904, -2.035714, -1.804444], atol=1e-6)


def test_all_steps_in_order_with_exact_values():
    batch = np.full((1, 4, 4, 3), 0.25, np.float32)
    pre = Preprocess(size=(2, 2), grayscale=True, invert=True, scale=255.0,
                     mean=(127.5,), std=(63.75,))
    out, steps = pre.apply(batch)
    assert [s["op"] for s in steps] == [
        "resize", "grayscale", "invert", "scale", "normalize", "layout"]
    assert steps[0] == {"op": "resize", "from": [4, 4], "to": [2, 2]}
    assert steps[3] == {"op": "scale", "factor": 255.0}
    assert steps[4] == {"op": "normalize", "mean": [127.5], "std": [63.75]}
    assert out.shape == (1, 1, 2, 2)
    # luma of grey 0.25 is 0.25; inverted 0.75; * 255 = 191.25; (191.25 - 127.5) / 63.75 = 1
    np.testing.assert_allclose(out, 1.0, rtol=0, atol=1e-6)
    json.dumps(steps)  # JSON-able


def test_invert_and_scale_values():
    batch = small_batch()
    out, steps = Preprocess(invert=True, scale=255.0).apply(batch)
    assert steps == [{"op": "invert"}, {"op": "scale", "factor": 255.0}, LAYOUT]
    expect = ((1.0 - batch.astype(np.float64)) * 255.0).astype(F32).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, expect)
    assert out[1, :, 0, 0].tolist() == [255.0, 255.0, 255.0]
    assert out[0, :, 0, 1].tolist() == [0.0, 255.0, 127.5]


def test_steps_that_do_nothing_are_not_listed():
    batch = small_batch()
    pre = Preprocess(size=(1, 2), scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0,))
    out, steps = pre.apply(batch)
    assert steps == [LAYOUT]
    np.testing.assert_array_equal(out, batch.transpose(0, 3, 1, 2))


def test_mean_only_and_std_only():
    batch = small_batch()
    _, steps = Preprocess(mean=(0.5,)).apply(batch)
    assert steps[0] == {"op": "normalize", "mean": [0.5], "std": [1.0]}
    out, steps = Preprocess(std=(0.5,)).apply(batch)
    assert steps[0] == {"op": "normalize", "mean": [0.0], "std": [0.5]}
    assert out[0, :, 0, 1].tolist() == [2.0, 0.0, 1.0]


def test_resize_step_and_input_untouched():
    batch = np.random.default_rng(0).random((2, 6, 8, 3)).astype(np.float32)
    keep = batch.copy()
    out, steps = Preprocess.imagenet(size=4).apply(batch)
    assert steps[0] == {"op": "resize", "from": [6, 8], "to": [4, 4]}
    assert [s["op"] for s in steps] == ["resize", "normalize", "layout"]
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(batch, keep)


def test_imagenet_classmethod():
    pre = Preprocess.imagenet()
    assert pre == Preprocess(size=(224, 224), mean=(0.485, 0.456, 0.406),
                             std=(0.229, 0.224, 0.225))
    assert Preprocess.imagenet((240, 320)).size == (240, 320)


def test_dict_round_trip():
    for pre in (Preprocess(), Preprocess.imagenet(),
                Preprocess(size=(8, 9), grayscale=True, invert=True, scale=255.0,
                           mean=(0.5,), std=(0.25,))):
        d = pre.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert Preprocess.from_dict(json.loads(json.dumps(d))) == pre
    assert Preprocess.imagenet().to_dict() == {
        "size": [224, 224], "grayscale": False, "invert": False, "scale": 1.0,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "bgr": False}
    assert Preprocess.from_dict({"grayscale": True}) == Preprocess(grayscale=True)


def test_frozen_and_normalised_fields():
    pre = Preprocess(size=[3, 4], mean=[1, 2, 3], std=2, scale=255)
    assert pre.size == (3, 4) and pre.mean == (1.0, 2.0, 3.0) and pre.std == (2.0,)
    assert isinstance(pre.scale, float) and pre.channels == 3
    assert Preprocess(size=5).size == (5, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pre.scale = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, words", [
    ({"mean": (0.1, 0.2)}, ["mean has 2 values", "1 or 3"]),
    ({"std": (0.1, 0.2, 0.3), "grayscale": True}, ["std has 3 values", "1 or 1"]),
    ({"std": (0.5, 0.0, 0.5)}, ["std=", "> 0"]),
    ({"std": (-1.0,)}, ["> 0"]),
    ({"mean": (float("nan"),)}, ["finite"]),
    ({"mean": "abc"}, ["mean="]),
    ({"size": (0, 224)}, ["size=(0, 224)", "positive integers"]),
    ({"size": (224,)}, ["positive integers"]),
    ({"size": (22.5, 10)}, ["positive integers"]),
    ({"scale": 0.0}, ["scale=0.0", "positive"]),
    ({"scale": float("inf")}, ["scale="]),
    ({"grayscale": "no"}, ["grayscale='no'", "True or False"]),
])
def test_validation(kwargs, words):
    with pytest.raises(ImageError) as info:
        Preprocess(**kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ImageError, match="unknown Preprocess field.*siz.*expected some of size"):
        Preprocess.from_dict({"siz": [2, 2]})
    with pytest.raises(ImageError, match="expected a dict"):
        Preprocess.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad, words", [
    (np.zeros((4, 4, 3), np.float32), ["(4, 4, 3)", "as_batch"]),
    (np.zeros((1, 4, 4, 1), np.float32), ["(1, 4, 4, 1)"]),
    (np.zeros((1, 4, 4, 3), np.uint8), ["uint8", "[0, 1]"]),
])
def test_apply_rejects_bad_batches(bad, words):
    with pytest.raises(ImageError) as info:
        Preprocess().apply(bad)
    for w in words:
        assert w in str(info.value)


def test_steps_fit_a_trace(tmp_path):
    batch = small_batch()
    model_input, steps = Preprocess(grayscale=True, scale=255.0).apply(batch)
    trace = Trace(stages=[], input=batch, framework="numpy", model_name="none",
                  model_input=model_input, preprocessing=steps)
    again = Trace.load(trace.save(tmp_path / "t.npz"))
    assert again.equals(trace)
    assert [s["op"] for s in again.preprocessing] == ["grayscale", "scale", "layout"]
