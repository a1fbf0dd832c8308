"""capture() on Keras 3 models: Sequential, functional, nested, subclassed; fused activations."""
import numpy as np
import pytest

import convlens
from convlens.errors import CaptureError

keras = pytest.importorskip("keras")  # a dev dependency: always installed by the test setup
L = keras.layers


def _hand_conv(name="conv", activation=None):
    """Keras twin of tests/models.box_sum_net's conv (kernel in Keras layout)."""
    layer = L.Conv2D(2, 2, name=name, activation=activation)
    layer.build((None, None, None, 3))
    k = np.zeros((2, 2, 3, 2), np.float32)
    k[:, :, 0, 0] = 1.0
    k[0, 0, 2, 1] = -1.0
    layer.set_weights([k, np.array([-1.0, 0.0], np.float32)])
    return layer


def test_sequential_exact_maps_and_weights_in_torch_layout():
    from models import ramp_image

    model = keras.Sequential([keras.Input((None, None, 3)), _hand_conv(), L.ReLU(name="relu"),
                              L.MaxPooling2D(2, strides=1, name="pool")])
    trace = convlens.capture(model, ramp_image())
    assert trace.framework == "keras" and trace.names == ["conv", "relu", "pool"]
    np.testing.assert_array_equal(trace["conv"].output[0, 0], [[-0.375, -0.125, 0.125],
                                                               [0.625, 0.875, 1.125],
                                                               [1.625, 1.875, 2.125]])
    np.testing.assert_array_equal(trace["pool"].output[0, 0], [[0.875, 1.125], [1.875, 2.125]])
    w = trace["conv"].weights["weight"]
    assert w.shape == (2, 3, 2, 2) and w[0, 0].tolist() == [[1, 1], [1, 1]] and w[1, 2, 0, 0] == -1
    assert trace["pool"].params == {"mode": "max", "kernel_size": (2, 2), "stride": (1, 1),
                                    "padding": "valid"}


def test_fused_activation_becomes_two_stages():
    from models import ramp_image

    model = keras.Sequential([keras.Input((None, None, 3)), _hand_conv("c", activation="relu")])
    trace = convlens.capture(model, ramp_image())
    assert trace.names == ["c", "c.relu"]
    assert [s.kind for s in trace] == ["conv", "activation"]
    assert trace["c"].output.min() == -1.0            # pre-activation
    np.testing.assert_array_equal(trace["c.relu"].output, np.maximum(trace["c"].output, 0))
    out = model(np.transpose(trace.model_input, (0, 2, 3, 1)))
    np.testing.assert_array_equal(np.moveaxis(keras.ops.convert_to_numpy(out), -1, 1), trace.output)
    assert "call" not in model.layers[0].__dict__  # the wrapper is gone
    assert model.layers[0].activation is keras.activations.relu


def test_functional_with_nested_model_and_merge():
    inner = keras.Sequential([L.Conv2D(4, 3, activation="relu", name="ic"),
                              L.MaxPooling2D(2, name="ip")], name="inner")
    inp = keras.Input((None, None, 3))
    x = L.Activation("relu", name="a1")(L.Conv2D(3, 3, name="c1")(inp))
    x = inner(x)
    x = L.Add(name="add")([x, L.Conv2D(4, 1, name="c2")(x)])
    out = L.Dense(3, activation="softmax", name="d")(L.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inp, out)
    weights = [w.copy() for w in model.get_weights()]
    trace = convlens.capture(model, convlens.cat()[:40, :50])
    assert trace.names == ["c1", "a1", "ic", "ic.relu", "ip", "c2", "add", "gap", "d", "d.softmax"]
    assert [s.source for s in trace] == [-1, 0, 1, 2, 3, 4, 4, 6, 7, 8]
    assert trace["ip"].shape == (4, 18, 23)  # channels-first
    ref = keras.ops.convert_to_numpy(model(np.transpose(trace.model_input, (0, 2, 3, 1))))
    np.testing.assert_array_equal(trace.output, ref)
    np.testing.assert_allclose(trace.output.sum(axis=1), 1.0, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert convlens.capture(model, convlens.cat()[:40, :50], layers="i*").names == [
        "ic", "ic.relu", "ip"]


def test_subclassed_model_records_real_calls_only():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(2, 3, name="conv")
            self.pool = L.MaxPooling2D(2, name="pool")

        def call(self, x):
            return self.pool(self.conv(x))

    model = Net()  # not built: capture must not record the symbolic build pass
    trace = convlens.capture(model, convlens.cat()[:30, :30])
    assert trace.names == ["conv", "pool"] and trace.output.shape == (1, 2, 14, 14)


def test_fixed_input_size_is_a_visible_resize_step():
    model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(1, 3, name="c")])
    trace = convlens.capture(model, convlens.cat())
    assert [p["op"] for p in trace.preprocessing] == ["resize", "grayscale", "layout"]
    assert trace.preprocessing[0]["to"] == (16, 16)
    assert trace.model_input.shape == (1, 1, 16, 16)


def test_wrong_input_shape_is_a_one_line_error():
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(1, 3), L.Flatten(), L.Dense(2)])
    with pytest.raises(CaptureError) as err:  # no resize asked for: 10x10 cannot go through
        convlens.capture(model, convlens.cat()[:10, :10], preprocess=convlens.Preprocess())
    assert "\n" not in str(err.value)
