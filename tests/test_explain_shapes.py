"""The output-size formula, with numbers, everywhere a size changes."""
from __future__ import annotations

import itertools

import numpy as np

from convlens import ops
from convlens.explain.layers import layer_infos
from convlens.explain.shapes import FORMULA, explain_shapes, size_formula, step_formulas


def test_formula_text_and_value_agree_with_ops():
    for n, k, s, p, d in itertools.product((5, 13, 224), (1, 3, 5), (1, 2, 4), (0, 1, 2), (1, 2)):
        if n + 2 * p < d * (k - 1) + 1:
            continue
        text = size_formula(n, k, s, p, d)
        assert text == f"floor(({n} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1 = {ops.output_size(n, k, s, p, d)}"
        # and it is what a real conv produces
        y = ops.conv2d(np.zeros((1, n, n)), np.zeros((1, 1, k, k)), stride=s, padding=p, dilation=d)
        assert y.shape[-1] == ops.output_size(n, k, s, p, d)


def test_asymmetric_same_padding():
    assert size_formula(6, 3, 2, (0, 1)) == "floor((6 + 0+1 - 1*(3-1) - 1)/2) + 1 = 3"


def test_pool_of_five_on_the_cat_is_one_fifth_per_side():
    text = explain_shapes("maxpool(5)", (3, 300, 451))
    assert "300x451x3 -> 60x90x3" in text
    assert "H: floor((300 + 2*0 - 1*(5-1) - 1)/5) + 1 = 60" in text
    assert "W: floor((451 + 2*0 - 1*(5-1) - 1)/5) + 1 = 90" in text
    assert "60/300 = 0.200 (height)" in text


def test_alexnet_text():
    text = explain_shapes("alexnet")
    assert FORMULA in text
    assert "H, W: floor((224 + 2*2 - 1*(11-1) - 1)/4) + 1 = 55" in text
    assert "flatten1 (flatten): 6x6x256 -> 9216 = 256*6*6" in text


def test_step_formulas_only_for_windows():
    _, infos = layer_infos("conv(2, 3x3, stride=2) relu", (1, 9, 7))
    assert step_formulas(infos[0]) == ["H: floor((9 + 2*0 - 1*(3-1) - 1)/2) + 1 = 4",
                                       "W: floor((7 + 2*0 - 1*(3-1) - 1)/2) + 1 = 3"]
    assert step_formulas(infos[1]) == []
