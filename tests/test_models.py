"""load_model: Keras files in safe mode, TorchScript only, pickles and garbage refused."""
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.errors import ModelError

keras = pytest.importorskip("keras")


def test_keras_file_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3, name="c"),
                              keras.layers.ReLU(name="r")])
    model.save(tmp_path / "m.keras")
    loaded = convlens.load_model(tmp_path / "m.keras")
    assert loaded.name == "m.keras"
    a = convlens.capture(model, convlens.cat()[:20, :20])
    b = convlens.capture(loaded.model, convlens.cat()[:20, :20])
    assert a.names == b.names == ["c", "r"]
    np.testing.assert_array_equal(a.output, b.output)


def test_keras_lambda_layer_is_refused_in_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lam.keras")
    with pytest.raises(ModelError, match="lam.keras: cannot load this Keras model") as err:
        convlens.load_model(tmp_path / "lam.keras")
    assert "\n" not in str(err.value) and "Lambda" in str(err.value)


def test_pickled_torch_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not TorchScript; convlens does not unpickle"):
        convlens.load_model(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "raw.pt").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ModelError, match="not a TorchScript archive"):
        convlens.load_model(tmp_path / "raw.pt")


def test_a_scripted_module_of_any_shape_is_captured_from_its_graph(tmp_path):
    """Was refused (only a scripted nn.Sequential could be stepped through): now the
    graph says every op, named by module path, exact against the eager capture."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.conv(x) + self.conv(x)

    torch.manual_seed(0)
    eager = Twice().eval()
    torch.jit.script(eager).save(str(tmp_path / "t.pt"))
    model = convlens.load_model(tmp_path / "t.pt").model
    trace = convlens.capture(model, convlens.cat()[:8, :8])
    ref = convlens.capture(eager, convlens.cat()[:8, :8])
    assert trace.names == ref.names == ["conv", "conv#2", "add"]
    assert trace.framework == "torchscript" and trace["add"].sources == (0, 1)
    for s in ref:
        np.testing.assert_array_equal(trace[s.name].output, s.output)


@pytest.mark.parametrize("name,content,message", [
    ("missing.keras", None, "no such model file"),
    ("weights.caffemodel", b"x", "unsupported model file type '.caffemodel'"),
    ("weights.onnx", b"x", "not an ONNX model"),
    ("broken.keras", b"garbage", "cannot load this Keras model"),
    ("broken.h5", b"garbage", "cannot load this Keras model"),
])
def test_bad_model_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as err:
        convlens.load_model(path)
    assert "\n" not in str(err.value)
