"""The tutorial's toy networks: the spec language, seeded weights, Keras == PyTorch."""
import re

import numpy as np
import pytest

import convlens
from convlens.errors import SpecError
from convlens.nets.spec import Act, Conv, Pool, parse_spec


def test_parse_the_tutorial_spec():
    net = parse_spec("conv(3, 3x3) relu maxpool(5)")
    assert net.layers == (
        Conv(3, (3, 3), name="conv1"), Act("relu", name="relu1"),
        Pool("max", (5, 5), (5, 5), name="maxpool1"),
    )
    assert net.text() == "conv(3, 3x3) relu maxpool(5)"
    assert net.shapes((3, 300, 451)) == [("conv1", (3, 298, 449)), ("relu1", (3, 298, 449)),
                                         ("maxpool1", (3, 59, 89))]


def test_options_and_round_trip_of_the_canonical_text():
    text = ("conv(8, 5x3, stride=2, padding=same, dilation=2, groups=2, bias=false) "
            "leakyrelu(0.2) avgpool(3, stride=2, padding=1) -> flatten dense(10) softmax")
    net = parse_spec(text)
    assert net.layers[0] == Conv(8, (5, 3), (2, 2), "same", (2, 2), 2, False, name="conv1")
    assert net.layers[1] == Act("leaky_relu", 0.2, name="leaky_relu1")
    assert net.layers[2] == Pool("avg", (3, 3), (2, 2), (1, 1), name="avgpool1")
    assert parse_spec(net.text()) == net


@pytest.mark.parametrize("bad,message", [
    ("", "empty network spec"),
    ("conv(3)", "conv needs filters and kernel size"),
    ("pooll(2)", "unknown layer 'pooll'; expected one of avgpool, conv"),
    ("conv(3, 3x3, strid=2)", "unknown argument 'strid'; expected one of filters, kernel, stride"),
    ("conv(0, 3x3)", "filters must be >= 1; got 0"),
    ("conv(3, 3y3)", "kernel size must be a whole number"),
    ("relu(2)", "relu takes no arguments"),
    ("conv(3, 3x3) $", "cannot read the spec at '$'"),
])
def test_bad_specs_are_one_line_errors(bad, message):
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        parse_spec(bad)
    assert "\n" not in str(err.value)


def test_too_small_image_names_the_layer():
    with pytest.raises(SpecError, match=r"maxpool2 \(maxpool\(5\)\) gets a 4x4 input"):
        parse_spec("conv(1, 3x3) maxpool(2) conv(1, 3x3) maxpool(5)").shapes((3, 14, 14))


def test_glorot_uniform_is_seeded_and_bounded():
    net = parse_spec("conv(4, 5x5) flatten dense(6)")
    w0 = net.init_weights((3, 8, 8), seed=7)
    w1 = net.init_weights((3, 8, 8), seed=7)
    w2 = net.init_weights((3, 8, 8), seed=8)
    assert np.array_equal(w0["conv1"]["weight"], w1["conv1"]["weight"])
    assert not np.array_equal(w0["conv1"]["weight"], w2["conv1"]["weight"])
    limit = np.sqrt(6 / (3 * 25 + 4 * 25))
    w = w0["conv1"]["weight"]
    assert w.shape == (4, 3, 5, 5) and np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    assert w0["dense1"]["weight"].shape == (6, 4 * 4 * 4)
    assert np.all(w0["conv1"]["bias"] == 0)


SPECS = [
    "conv(3, 3x3) relu maxpool(5)",
    "conv(1, 15x15) relu",
    "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)",
    "conv(4, 3x3, stride=2, padding=same) elu(0.5) maxpool(3, stride=2, padding=same) "
    "conv(2, 3x3, dilation=2) tanh avgpool(2, padding=same)",
    "conv(6, 3x3, groups=3) gelu silu softplus sigmoid leakyrelu(0.1) avgpool(2)",
    "conv(2, 5x5, stride=3) relu flatten dense(7) selu dense(3) softmax",
]


@pytest.mark.parametrize("spec", SPECS)
def test_keras_and_torch_give_the_same_stages(spec):
    img = convlens.cat()[40:140, 100:250]
    tt = convlens.make_trace(img, net=spec, backend="torch", seed=3)
    tk = convlens.make_trace(img, net=spec, backend="keras", seed=3)
    assert tt.names == tk.names == [layer.name for layer in parse_spec(spec).layers]
    assert [s.kind for s in tt] == [s.kind for s in tk]
    for a, b in zip(tt, tk):
        assert a.output.shape == b.output.shape, a.name
        np.testing.assert_allclose(a.output, b.output, atol=1e-5, err_msg=a.name)
        for k in a.weights.keys() & b.weights.keys():
            np.testing.assert_array_equal(a.weights[k], b.weights[k])


def test_toy_net_stages_equal_the_numpy_reference():
    trace = convlens.make_trace(convlens.cat(), net="conv(3, 3x3) relu maxpool(5)", seed=0)
    w = parse_spec("conv(3, 3x3)").init_weights((3, 300, 451), seed=0)["conv1"]
    x = np.transpose(convlens.cat(), (2, 0, 1))
    conv = convlens.ops.conv2d(x, w["weight"], w["bias"])
    np.testing.assert_allclose(trace["conv1"].output[0], conv, atol=1e-5)
    np.testing.assert_allclose(trace["relu1"].output[0], np.maximum(conv, 0), atol=1e-5)
    np.testing.assert_allclose(trace["maxpool1"].output[0],
                               convlens.ops.pool2d(np.maximum(conv, 0), 5), atol=1e-5)
    assert trace.meta == {"spec": "conv(3, 3x3) relu maxpool(5)", "seed": 0, "backend": "torch"}


def test_numeric_padding_is_refused_for_keras_with_advice():
    with pytest.raises(SpecError, match="padding=1 has no Keras equivalent"):
        convlens.build("conv(1, 3x3, padding=1)", backend="keras", in_shape=(3, 10, 10))
    with pytest.raises(SpecError, match="unknown backend 'jax'"):
        convlens.build("relu", backend="jax")
