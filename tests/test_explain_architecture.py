"""Architecture diagrams and the reference specs (AlexNet, LeNet-5)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_explain_support import numpy_trace

from convlens.errors import ConvlensError
from convlens.explain.architecture import architecture_blocks, architecture_diagram, architecture_svg
from convlens.explain.layers import REFERENCE_SPECS, layer_infos
from convlens.nets.spec import parse_spec

ALEXNET_SPEC = ("conv(96, 11x11, stride=4, padding=2) relu maxpool(3, stride=2) conv(256, 5x5, "
                "padding=2) relu maxpool(3, stride=2) conv(384, 3x3, padding=1) relu conv(384, 3x3, "
                "padding=1) relu conv(256, 3x3, padding=1) relu maxpool(3, stride=2) flatten "
                "dense(4096) relu dense(4096) relu dense(1000) softmax")


def test_alexnet_reference_shapes():
    assert REFERENCE_SPECS["alexnet"] == (ALEXNET_SPEC, (3, 224, 224))
    fig = architecture_diagram("alexnet")
    assert fig.meta["shapes"] == ["224x224x3", "55x55x96", "27x27x96", "27x27x256", "13x13x256",
                                  "13x13x384", "13x13x384", "13x13x256", "6x6x256", "9216",
                                  "4096", "4096", "1000"]
    assert "conv1: H, W: floor((224 + 2*2 - 1*(11-1) - 1)/4) + 1 = 55" in fig.meta["formulas"]
    # the list of classic shapes appears in order
    classic = ["224x224x3", "55x55x96", "27x27x256", "13x13x384", "13x13x384", "13x13x256",
               "4096", "4096", "1000"]
    it = iter(fig.meta["shapes"])
    assert all(s in it for s in classic)


def test_alexnet_spec_shapes_directly():
    shapes = dict(parse_spec(ALEXNET_SPEC).shapes((3, 224, 224)))
    assert shapes["conv1"] == (96, 55, 55) and shapes["maxpool1"] == (96, 27, 27)
    assert shapes["conv3"] == (384, 13, 13) and shapes["dense3"] == (1000,)


def test_lenet5_reference_shapes():
    fig = architecture_diagram("LeNet-5")
    assert fig.meta["shapes"] == ["32x32x1", "28x28x6", "14x14x6", "10x10x16", "5x5x16", "400",
                                  "120", "84", "10"]


def test_activations_fold_into_their_box():
    blocks = architecture_blocks("alexnet")
    conv1 = next(b for b in blocks if b.name == "conv1")
    assert conv1.extras == ["relu"] and conv1.step == "conv 11x11, stride 4, pad 2"
    assert blocks[-1].extras == ["softmax"]


def test_trace_and_spec_give_the_same_diagram():
    spec = "conv(4, 3x3, padding=same) relu maxpool(2) conv(6, 3x3, stride=2) relu flatten dense(5)"
    t = numpy_trace(spec, np.random.default_rng(0).normal(size=(1, 3, 20, 24)))
    a, b = architecture_diagram(t), architecture_diagram(spec, (3, 20, 24))
    assert a.meta["shapes"] == b.meta["shapes"] == ["20x24x3", "20x24x4", "10x12x4", "4x5x6", "120", "5"]
    assert a.to_png_bytes() == b.to_png_bytes()


def test_long_networks_are_grouped_and_elided():
    spec = " ".join(["conv(8, 3x3, padding=1) relu"] * 30) + " maxpool(2) " + \
        " ".join(f"conv({8 * (i + 2)}, 3x3, padding=1) relu maxpool(2)" for i in range(3)) + " flatten dense(10)"
    blocks = architecture_blocks(spec, (3, 64, 64), max_boxes=16)
    assert len(blocks) <= 16
    assert blocks[1].repeat == 30 and blocks[1].name == "conv1 .. conv30"
    many = " ".join(f"conv({4 + i}, 3x3, padding=1)" for i in range(40))
    blocks = architecture_blocks(many, (3, 16, 16), max_boxes=12)
    assert len(blocks) == 12
    hidden = [b for b in blocks if b.elided]
    assert len(hidden) == 1 and hidden[0].elided == 41 - 11
    fig = architecture_diagram(many, (3, 16, 16), max_boxes=12)
    assert "..." in fig.meta["shapes"]


def test_svg_is_valid_and_png_deterministic():
    svg = architecture_svg("alexnet", title="AlexNet")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "55x55x96" in svg and "conv 11x11, stride 4, pad 2" in svg
    assert architecture_diagram("alexnet").to_png_bytes() == architecture_diagram("alexnet").to_png_bytes()


def test_spec_needs_an_input_shape():
    with pytest.raises(ConvlensError, match="lenet5, alexnet"):
        layer_infos("conv(3, 3x3)")
    with pytest.raises(ConvlensError, match="too small"):
        architecture_diagram("conv(3, 9x9)", (3, 4, 4))
