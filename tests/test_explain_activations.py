"""The activation table (function and derivative values) and the before/after histogram."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_explain_support import numpy_trace

from convlens import ops
from convlens.errors import ConvlensError, RenderError
from convlens.explain.activations import TABLE, activation_histogram, activation_table

TUTORIAL = ["identity", "binary_step", "sigmoid", "tanh", "arctan", "relu", "leaky_relu", "elu",
            "softplus", "gelu", "silu"]


def test_table_has_the_tutorial_functions_in_order():
    assert [r.function for r in TABLE] == TUTORIAL
    fig = activation_table()
    assert fig.meta["functions"] == TUTORIAL
    assert fig.size[0] > 800 and fig.size[1] > 11 * 90


def test_plotted_values_match_independent_formulas():
    special = pytest.importorskip("scipy.special")
    samples = activation_table().meta["samples"]
    x = samples["relu"][0]
    sig = special.expit(x)
    phi = 0.5 * (1 + special.erf(x / math.sqrt(2)))
    expected = {
        "identity": (x, np.ones_like(x)),
        "sigmoid": (sig, sig * (1 - sig)),
        "tanh": (np.tanh(x), 1 / np.cosh(x) ** 2),
        "arctan": (np.arctan(x), 1 / (1 + x ** 2)),
        "relu": (np.maximum(x, 0), (x > 0).astype(float)),
        "leaky_relu": (np.where(x < 0, 0.1 * x, x), np.where(x > 0, 1.0, 0.1)),
        "elu": (np.where(x <= 0, np.exp(x) - 1, x), np.where(x <= 0, np.exp(x), 1.0)),
        "softplus": (np.log1p(np.exp(x)), sig),
        "gelu": (x * phi, phi + x * np.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)),
        "silu": (x * sig, sig * (1 + x * (1 - sig))),
    }
    for name, (f, df) in expected.items():
        np.testing.assert_allclose(samples[name][1], f, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(samples[name][2], df, atol=1e-12, err_msg=name)
    step = samples["binary_step"]
    assert np.array_equal(step[1], (x >= 0).astype(float)) and not step[2].any()


@pytest.mark.parametrize("name", sorted(ops.ACTIVATION_DERIVATIVES))
def test_derivatives_match_finite_differences(name):
    x = np.linspace(-3, 3, 61) + 0.013  # off the kinks
    h = 1e-6
    numeric = (ops.activation(x + h, name) - ops.activation(x - h, name)) / (2 * h)
    np.testing.assert_allclose(ops.activation_derivative(x, name), numeric, atol=1e-6)


def test_unknown_names():
    with pytest.raises(ConvlensError, match="relu"):
        ops.activation_derivative(np.zeros(2), "softmax")
    with pytest.raises(RenderError, match="expected one of identity"):
        activation_table(["swish2"])


def test_table_subset_and_determinism():
    a, b = activation_table(["relu", "gelu"]), activation_table(["relu", "gelu"])
    assert a.meta["functions"] == ["relu", "gelu"]
    assert a.to_png_bytes() == b.to_png_bytes()


@pytest.fixture(scope="module")
def trace():
    x = np.random.default_rng(2).normal(size=(2, 3, 12, 12))
    return numpy_trace("conv(4, 3x3) relu conv(2, 3x3) leakyrelu(0.2)", x)


def test_histogram_counts(trace):
    fig = activation_histogram(trace, "relu1", bins=40)
    before = trace["conv1"].output.astype(np.float64).ravel()
    after = trace["relu1"].output.astype(np.float64).ravel()
    assert fig.meta["before"].sum() == before.size == fig.meta["after"].sum()
    assert fig.meta["negative_fraction"] == pytest.approx((before < 0).mean())
    assert fig.meta["zero_fraction"] == pytest.approx((after == 0).mean())
    assert fig.meta["zero_fraction"] >= fig.meta["negative_fraction"]
    edges = fig.meta["edges"]
    assert np.array_equal(fig.meta["before"], np.histogram(before, edges)[0])
    # after a ReLU no value lies in a bin that ends below zero
    assert fig.meta["before"][edges[1:] < 0].any()
    assert not fig.meta["after"][edges[1:] < 0].any()


def test_histogram_one_image_and_errors(trace):
    fig = activation_histogram(trace, "leaky_relu1", image=1)
    assert fig.meta["before"].sum() == trace["conv2"].output[1].size
    assert fig.meta["function"] == "leaky_relu"
    with pytest.raises(RenderError, match="relu1, leaky_relu1"):
        activation_histogram(trace, "conv1")
    with pytest.raises(RenderError, match="out of range"):
        activation_histogram(trace, "relu1", image=5)
