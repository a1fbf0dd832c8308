"""Receptive fields through residual branches: merge stages list every input (Stage.sources), and the
field is the union over all paths (checked by perturbing single input pixels)."""
import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.explain import receptive_field


class Add(nn.Module):
    convlens_kind = "merge"

    def forward(self, a, b):
        return a + b


class Residual(nn.Module):
    """stem 3x3 -> (branch: 5x5 conv, dilation 2) + shortcut -> 2x2 average pool."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 2, 3)
        self.branch = nn.Conv2d(2, 2, 5, padding=4, dilation=2)
        self.add = Add()
        self.pool = nn.AvgPool2d(2)  # (max pooling hides perturbations of non-max pixels)

    def forward(self, x):
        y = self.stem(x)
        return self.pool(self.add(y, self.branch(y)))


def _influence(model, x, row, col):
    """Input pixels whose change changes output (row, col): brute force."""
    with torch.no_grad():
        base = model(x)[0, :, row, col]
        mask = np.zeros(x.shape[2:], bool)
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                y = x.clone()
                y[0, 0, i, j] += 10.0
                mask[i, j] = not torch.allclose(model(y)[0, :, row, col], base)
    return mask


def test_torch_merge_lists_both_inputs_and_field_covers_the_branch():
    model = Residual().eval()
    img = np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)
    trace = convlens.capture(model, img)  # one input channel: greyscale preprocessing
    assert trace.names == ["stem", "branch", "add", "pool"]
    assert trace["add"].sources == (0, 1)
    x = torch.from_numpy(trace.model_input)
    for r, c in [(4, 4), (0, 0), (8, 3)]:
        rf = receptive_field(trace, "pool", (r, c))
        np.testing.assert_array_equal(rf.mask, _influence(model, x, r, c))


def test_keras_add_lists_both_inputs():
    keras = pytest.importorskip("keras")
    inp = keras.Input((None, None, 3))
    a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(2, 1, name="b")(a)
    out = keras.layers.Add(name="add")([a, b])
    trace = convlens.capture(keras.Model(inp, out), convlens.cat()[:16, :16])
    assert trace["add"].sources == (0, 1)
    rf = receptive_field(trace, "add", (5, 5))
    assert (rf.rows, rf.cols) == ((4, 6), (4, 6))


class Concat(nn.Module):
    """stem 3x3 -> cat([1x1 conv, 3x3 conv -> 3x3 conv]) -> 2x2 average pool."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 2, 3)
        self.short = nn.Conv2d(2, 2, 1)
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        y = self.stem(x)
        return self.pool(torch.cat([self.short(y), self.b(self.a(y))], dim=1))


def _influence_channel(model, x, row, col, channel):
    with torch.no_grad():
        base = model(x)[0, channel, row, col]
        mask = np.zeros(x.shape[2:], bool)
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                y = x.clone()
                y[0, 0, i, j] += 10.0
                mask[i, j] = not torch.allclose(model(y)[0, channel, row, col], base)
    return mask


def test_torch_concat_channel_follows_only_its_branch():
    model = Concat().eval()
    img = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    trace = convlens.capture(model, img)
    cat = next(s for s in trace.stages if s.kind == "merge")
    assert len(cat.sources) == 2 and cat.shape[0] == 5
    x = torch.from_numpy(trace.model_input)
    for ch in range(5):
        rf = receptive_field(trace, "pool", (3, 3), channel=ch)
        np.testing.assert_array_equal(rf.mask, _influence_channel(model, x, 3, 3, ch))
        assert ("b" in rf.through) == (ch >= 2) and ("short" in rf.through) == (ch < 2)
    whole = receptive_field(trace, "pool", (3, 3))
    assert whole.size == receptive_field(trace, "pool", (3, 3), channel=4).size == (8, 8)
    assert receptive_field(trace, "pool", (3, 3), channel=0).size == (4, 4)
