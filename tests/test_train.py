"""LeNet training on scikit-learn's digits: the fixed split, the shipped weights, retraining."""
from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pytest
import torch

from convlens import ImageError, ModelError
from convlens.digits import digits, split_indices
from convlens.nets import lenet, train


def test_split_is_fixed_stratified_and_disjoint():
    test, train_idx = split_indices("test"), split_indices("train")
    assert len(test) == 359 and len(train_idx) == 1438
    assert not set(test) & set(train_idx)
    assert sorted(set(test) | set(train_idx)) == list(range(1797))
    _, labels = digits(split="test")
    assert np.bincount(labels, minlength=10).min() >= 35  # every class held out, ~20% each
    assert np.array_equal(split_indices("test"), test)


def test_shipped_weights_are_a_plain_float32_npz():
    data = (resources.files("convlens") / "data" / lenet.WEIGHTS_FILE).read_bytes()
    assert len(data) < 400_000
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == {f"{n}.{p}" for n in ("conv1", "conv2", "fc1", "fc2", "fc3")
                           for p in ("weight", "bias")}
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays.values())


def test_shipped_weights_reach_97_percent_on_the_held_out_split():
    # recomputed from scratch: the held-out digits, LeNet's own preprocessing, argmax
    model = lenet.lenet_torch("trained")
    images, labels = digits(split="test")
    x, steps = lenet.PREPROCESS.apply(images)
    assert [s["op"] for s in steps] == ["resize", "grayscale", "layout"]
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    accuracy = float((pred == labels).mean())
    assert accuracy >= 0.97
    assert train.evaluate() == pytest.approx(accuracy)


def test_retraining_one_short_epoch_runs_and_beats_chance(tmp_path, capsys):
    out = tmp_path / "sub" / "lenet.npz"
    assert train.main(["--out", str(out), "--epochs", "1", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "epoch   1/1" in captured.err and "100.0%" in captured.err  # the progress bar
    assert "held-out accuracy" in captured.out
    weights = lenet.load_weights(out)
    assert train.evaluate(weights) >= 0.30


def test_training_is_reproducible_and_leaves_torch_settings_alone():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.random.get_rng_state()
    a = train.train_lenet(epochs=1, seed=5, limit=256)
    b = train.train_lenet(epochs=1, seed=5, limit=256)
    c = train.train_lenet(epochs=1, seed=6, limit=256)
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert not np.array_equal(a.weights["conv1.weight"], c.weights["conv1.weight"])
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.random.get_rng_state(), state)


def test_bad_training_arguments_are_one_line_errors():
    with pytest.raises(ModelError, match="epochs=0 is not valid"):
        train.train_lenet(epochs=0)
    with pytest.raises(ImageError, match="unknown digits split 'validation'"):
        digits(split="validation")  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="positive integer"):
        digits(n=0)


def test_digits_are_rgb_images_light_on_black():
    images, labels = digits(5, split="train")
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.float32
    assert labels.shape == (5,) and labels.dtype == np.int64
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.9
    assert np.array_equal(images[..., 0], images[..., 2])
    all_images, _ = digits(split="all")
    assert all_images.shape[0] == 1797
    assert not lenet.light_background(all_images.mean(0))  # black background
