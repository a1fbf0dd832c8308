"""Models built by the user's own code: MODULE:CALLABLE + a state dict, and pickled full
modules only behind --trust-model-code.  No code from a weights file ever runs."""
from __future__ import annotations

import pickle
import textwrap

import numpy as np
import pytest
import torch

import convlens
from convlens.cli import main

MYNET = textwrap.dedent('''
    import torch
    from torch import nn

    class ResCat(nn.Module):
        """A residual add and a concatenation, written the usual way."""
        def __init__(self, width=4):
            super().__init__()
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.a = nn.Conv2d(width, width, 3, padding=1)
            self.b = nn.Conv2d(width, width, 1)
            self.head = nn.Linear(2 * width, 3)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            y = x + self.a(x)
            z = torch.cat([y, self.b(x)], 1)
            return self.head(z.mean((2, 3)))

    def small():
        return ResCat(width=2)
''')


@pytest.fixture
def mynet(tmp_path, monkeypatch):
    path = tmp_path / "mynet.py"
    path.write_text(MYNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    mod = importlib.import_module("mynet")
    torch.manual_seed(3)
    model = mod.ResCat().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    from PIL import Image
    Image.fromarray((_img() * 255).astype(np.uint8)).save(tmp_path / "img.png")
    yield path, model
    import sys
    sys.modules.pop("mynet", None)


def _img(h=12, w=10):
    return np.random.default_rng(0).random((h, w, 3)).astype(np.float32)


def test_factory_file_and_weights_give_the_original_model_exactly(mynet, tmp_path):
    path, model = mynet
    loaded = convlens.load_model(f"{path}:ResCat", weights=tmp_path / "w.pt")
    assert loaded.name == "ResCat" and loaded.meta["weights"] == "w.pt"
    a = convlens.capture(loaded.model, _img())
    b = convlens.capture(model, _img())
    assert a.names == b.names and "add" in a.names and "cat" in a.names
    for sa, sb in zip(a.stages, b.stages):
        np.testing.assert_array_equal(sa.output, sb.output)
    with torch.no_grad():
        ref = model(torch.from_numpy(_img().transpose(2, 0, 1)[None].copy())).numpy()
    np.testing.assert_array_equal(a.stages[-1].output, ref)


def test_factory_from_a_dotted_module_on_the_command_line(mynet, tmp_path, capsys):
    out = tmp_path / "out"
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray((_img() * 255).astype(np.uint8)).save(img)
    assert main(["run", str(img), "--model", "mynet:ResCat", "--weights",
                 str(tmp_path / "w.pt"), "-o", str(out)]) == 0
    trace = convlens.Trace.load(out / "trace.npz")
    assert trace.model_name == "ResCat" and trace.names[-1] == "head"


def test_weights_that_do_not_fit_name_the_keys(mynet, tmp_path, capsys):
    path, _ = mynet
    torch.save({"stem.weight": torch.zeros(4, 3, 3, 3), "extra.bias": torch.zeros(1)},
               tmp_path / "bad.pt")
    code = main(["run", str(tmp_path / "img.png"), "--model", f"{path}:small",
                 "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    with pytest.raises(convlens.ModelError) as e:
        convlens.load_model(f"{path}:ResCat", weights=tmp_path / "bad.pt")
    msg = str(e.value)
    assert "missing 7: stem.bias, a.weight, a.bias, b.weight, b.bias (+2 more)" in msg
    assert "unexpected 1: extra.bias" in msg and "\n" not in msg
    with pytest.raises(convlens.ModelError, match=r"wrong shape 7: stem.weight \(4, 3, 3, 3\) vs \(2, 3, 3, 3\)"):
        convlens.load_model(f"{path}:small", weights=tmp_path / "w.pt")


def test_wrapped_checkpoints_and_dataparallel_prefixes_load(mynet, tmp_path):
    path, model = mynet
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pt")
    loaded = convlens.load_model(f"{path}:ResCat", weights=tmp_path / "ckpt.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def test_bad_factories_are_one_line_errors(mynet, tmp_path):
    path, _ = mynet
    with pytest.raises(convlens.ModelError, match=r"has no 'ResCta'.*did you mean ResCat"):
        convlens.load_model(f"{path}:ResCta")
    with pytest.raises(convlens.ModelError, match=r"no such Python file"):
        convlens.load_model(f"{tmp_path}/nope.py:Net")
    with pytest.raises(convlens.ModelError, match=r"cannot import 'no_such_pkg_x.models' \(No module named 'no_such_pkg_x'\)"):
        convlens.load_model("no_such_pkg_x.models:Net")
    with pytest.raises(convlens.ModelError, match=r"--weights .* goes with --model MODULE:CALLABLE"):
        convlens.load_model("zoo:lenet", weights=tmp_path / "w.pt")


class _Marker:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_code_in_a_weights_file_never_runs(mynet, tmp_path, capsys):
    path, _ = mynet
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"stem.weight": _Marker(str(marker))}, fh)
    code = main(["run", str(tmp_path / "img.png"), "--model", f"{path}:ResCat",
                 "--weights", str(tmp_path / "evil.pt"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "weights_only=True" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_pickled_full_models_need_trust_model_code(mynet, tmp_path, capsys):
    path, model = mynet
    torch.save(model, tmp_path / "full.pt")
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray((_img() * 255).astype(np.uint8)).save(img)
    code = main(["run", str(img), "--model", str(tmp_path / "full.pt"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "pickled" in err and len(err.strip().splitlines()) == 1
    with pytest.warns(UserWarning, match="runs code from the file"):
        loaded = convlens.load_model(tmp_path / "full.pt", trust_model_code=True)
    np.testing.assert_array_equal(convlens.capture(loaded.model, _img()).stages[-1].output,
                                  convlens.capture(model, _img()).stages[-1].output)
    assert main(["run", str(img), "--model", str(tmp_path / "full.pt"), "--trust-model-code",
                 "-o", str(tmp_path / "o2")]) == 0
    assert "--trust-model-code" in capsys.readouterr().err


def test_the_atlas_loads_a_factory_with_its_weights(mynet, tmp_path):
    from convlens.atlas.engine import ModelSpec, load_spec

    path, model = mynet
    built, _ = load_spec(ModelSpec(model=f"{path}:ResCat", weights_file=str(tmp_path / "w.pt")))
    for k, v in model.state_dict().items():
        assert torch.equal(built.state_dict()[k], v)
    assert main(["atlas", str(tmp_path), "--model", f"{path}:ResCat", "--weights",
                 str(tmp_path / "w.pt"), "--stages", "add", "-k", "1", "--quiet", "--no-pages",
                 "-o", str(tmp_path / "atl")]) == 0
    import json
    data = json.loads((tmp_path / "atl" / "atlas.json").read_text())
    trace = convlens.capture(model, convlens.load_image(tmp_path / "img.png"))  # the one image
    want = trace["add"].output[0].reshape(4, -1).max(1)
    got = [ch["top"][0]["value"] for ch in data["stages"][0]["channels"]]
    np.testing.assert_allclose(got, want, rtol=1e-6)
