"""TorchScript (traced and scripted) and torch.export (.pt2) files: every op of the file's
graph is a stage, named by module path, exact.

The hand-built architectures of the graph tests (residual, dense block, inception,
squeeze-excitation, ConvNeXt block, MobileNetV3 block, in-place ops and a module called
twice) are saved in each format and loaded with ``convlens.load_model``: the Trace has the
eager capture's names, kinds, sources and values to the bit (the file runs the same
kernels on the same weights), its last stage is the file's own output, merges list all
their sources and every stage fills its kind's schema.  Bad and hostile files get one
line and exit status 2, and no code from a file runs.
"""
from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.capture import expected_input
from convlens.capture.exported import _plain_expression, capture_exported, load_exported
from convlens.cli import main
from convlens.errors import CaptureError, ModelError
from convlens.params import problems
from test_capture_graph import MODELS, _image

FORMATS = ["trace", "script", "export"]


def _save(model: nn.Module, x: torch.Tensor, fmt: str, tmp_path, **export_kw):
    if fmt == "export":
        path = tmp_path / "m.pt2"
        torch.export.save(torch.export.export(model, (x.clone(),), **export_kw), str(path))
    else:
        path = tmp_path / f"m-{fmt}.pt"
        scripted = torch.jit.trace(model, x.clone()) if fmt == "trace" else torch.jit.script(model)
        scripted.save(str(path))
    return path


def _own_output(loaded, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        run = loaded.module() if isinstance(loaded, torch.export.ExportedProgram) else loaded
        return run(x.clone())


def _named_sources(trace, stage) -> list[str]:
    return [trace.stages[i].name if i >= 0 else "input" for i in stage.sources]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("make", MODELS, ids=lambda m: m.__name__)
def test_a_saved_model_is_the_graph_it_computes(make, fmt, tmp_path):
    torch.manual_seed(1)
    model = make().eval()
    ref = convlens.capture(model, _image(16))
    x = torch.from_numpy(ref.model_input)
    loaded = convlens.load_model(_save(model, x, fmt, tmp_path))
    trace = convlens.capture(loaded.model, _image(16))
    assert trace.framework == ("export" if fmt == "export" else "torchscript")
    assert trace.model_name == make.__name__
    assert trace.names == ref.names
    for s, r in zip(trace, ref):
        assert (s.kind, _named_sources(trace, s)) == (r.kind, _named_sources(ref, r)), s.name
        np.testing.assert_array_equal(s.output, r.output, err_msg=s.name)  # same kernels
        assert problems(s.kind, s.params) == [], (s.name, s.params)
        assert s.params.get("layout") == r.params.get("layout"), s.name
    own = _own_output(loaded.model, x)
    last = trace.stages[-1].output
    if trace.stages[-1].params.get("layout") == "channels_last":
        last = np.moveaxis(last, 1, 3)
    assert torch.equal(torch.from_numpy(np.ascontiguousarray(last)), own)
    np.testing.assert_array_equal(trace.output, own.numpy())
    index = {s.name: s.index for s in trace}
    index["input"] = -1
    for name, srcs in make.merges.items():
        assert trace[name].kind == "merge" and trace[name].sources == tuple(index[s] for s in srcs)


def test_conv_params_and_weights_come_from_the_graph(tmp_path):
    torch.manual_seed(1)
    model = MODELS[0]().eval()  # ResNetish
    x = torch.from_numpy(convlens.capture(model, _image(16)).model_input)
    for fmt in FORMATS:
        loaded = convlens.load_model(_save(model, x, fmt, tmp_path)).model
        t = convlens.capture(loaded, _image(16))
        conv = t["layer1.0.conv1"]
        assert conv.params == dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
                                   dilation=(1, 1), groups=1, in_channels=4, out_channels=4,
                                   bias=False), fmt
        np.testing.assert_array_equal(conv.weights["weight"],
                                      model.layer1[0].conv1.weight.detach().numpy())
        bn = t["layer1.0.bn1"]
        assert bn.kind == "norm" and bn.params["eps"] == 1e-5
        np.testing.assert_array_equal(bn.weights["running_var"],
                                      model.layer1[0].bn1.running_var.numpy())
        assert t["fc"].params == {"operation": "linear", "in_features": 4, "out_features": 3,
                                  "bias": True}
        assert expected_input(loaded)[0] == 3


class Branchy(nn.Module):
    """Data-dependent control flow: TorchScript keeps it as a prim::If."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        if bool(y.sum() > 0):
            y = torch.relu(y) * 2.0
        else:
            y = torch.sigmoid(y)
        return y.argmax(1, keepdim=True).float() + y


def test_control_flow_and_what_is_not_a_stage_are_named_in_a_notice(tmp_path):
    torch.manual_seed(0)
    model = Branchy().eval()
    path = tmp_path / "b.pt"
    torch.jit.script(model).save(str(path))
    loaded = convlens.load_model(path).model
    t = convlens.capture(loaded, _image(16))
    x = torch.from_numpy(t.model_input)
    assert t.names[0] == "conv" and t["conv"].kind == "conv"
    np.testing.assert_array_equal(t.output, model(x).detach().numpy())
    notices = " ".join(t.meta["notices"])
    assert "op(s) inside control flow" in notices and "prim::If" in notices
    assert "argmax" in notices  # (an integer tensor: not a stage, said so)
    assert t.stages[-1].kind == "merge" and len(t.stages[-1].sources) == 2


def test_the_model_comes_back_as_it_was(tmp_path):
    torch.manual_seed(1)
    model = MODELS[0]()  # in training mode, with batch norms
    x = torch.from_numpy(convlens.capture(model.eval(), _image(16)).model_input)
    path = tmp_path / "m.pt"
    torch.jit.script(model).save(str(path))
    loaded = convlens.load_model(path).model.train()
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    t = convlens.capture(loaded, _image(16))
    assert loaded.training and all(m.training for m in loaded.modules())
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())  # eval ran
    with torch.no_grad():
        np.testing.assert_array_equal(t.output, loaded.eval()(x).numpy())


def test_an_exported_program_runs_a_batch_as_it_was_exported(tmp_path):
    """Batch 1 static: two images run one at a time; a dynamic batch in one go."""
    torch.manual_seed(1)
    model = MODELS[3]().eval()  # SE
    images = [_image(16), _image(16)[::-1].copy()]
    ref = convlens.capture(model, images)
    x = torch.from_numpy(ref.model_input)
    static = load_exported(_save(model, x[:1], "export", tmp_path))
    assert expected_input(static) == (3, (16, 16))
    batch = torch.export.Dim("batch", min=1, max=8)
    (tmp_path / "d").mkdir()
    dynamic = load_exported(_save(model, x, "export", tmp_path / "d",
                                  dynamic_shapes=({0: batch},)))
    # (a batch of one image at a time is what eager gives one image at a time: a conv's
    # kernel may sum in another order for another batch size)
    ones = [convlens.capture(model, [im]) for im in images]
    for ep, want in ((static, [np.concatenate([o[s.name].output for o in ones]) for s in ref]),
                     (dynamic, [s.output for s in ref])):
        t = convlens.capture(ep, images)
        assert t.names == ref.names
        for s, w in zip(t, want):
            np.testing.assert_array_equal(s.output, w, err_msg=s.name)
    # the size it declares is the size it gets; given another, one line says which
    assert convlens.capture(static, _image(20)).model_input.shape == (1, 3, 16, 16)
    with pytest.raises(CaptureError, match=r"exported for \(1, 3, 16, 16\)") as err:
        capture_exported(static, np.zeros((1, 3, 20, 20), np.float32), None)
    assert "\n" not in str(err.value)


# -- bad and hostile files ---------------------------------------------------------------
class _Evil:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil(marker) -> _Evil:
    e = _Evil()
    e.marker = str(marker)
    return e


def _bad_files(tmp_path, good_pt, good_pt2, marker):
    files = {}
    for good in (good_pt, good_pt2):
        data = good.read_bytes()
        files[f"truncated{good.suffix}"] = data[: len(data) // 2]
        files[f"random{good.suffix}"] = np.random.default_rng(0).bytes(3000)
        buf = tmp_path / f"pickle{good.suffix}.tmp"
        torch.save({"model": _evil(marker)}, buf)  # a zip with data.pkl: unpickling opens marker
        files[f"pickled{good.suffix}"] = buf.read_bytes()
        files[f"raw{good.suffix}"] = pickle.dumps({"model": _evil(marker)})
    out = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out.append(tmp_path / name)
    return out


def _replaced(src, dst, member_suffix, data: bytes) -> None:
    """A copy of the zip ``src`` with the member ending in ``member_suffix`` replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = data if info.filename.endswith(member_suffix) else zin.read(info)
            zout.writestr(info.filename, body)


@pytest.fixture
def good_files(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    x = torch.rand(1, 3, 16, 16)
    # (traced: a traced plain Sequential used to crash the CLI with a traceback)
    return _save(model, x, "trace", tmp_path), _save(model, x, "export", tmp_path)


def test_bad_and_hostile_files_get_one_line_and_exit_2(tmp_path, good_files, capsys):
    from PIL import Image
    img = tmp_path / "img.png"
    Image.fromarray((_image(16) * 255).astype(np.uint8)).save(img)
    marker = tmp_path / "pwned"
    for path in _bad_files(tmp_path, *good_files, marker):
        capsys.readouterr()
        code = main(["run", str(img), "--model", str(path), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2, path.name
        assert len(err.splitlines()) == 1 and path.name in err, (path.name, err)
        assert "Traceback" not in err
        if "pickled" in path.name:
            assert "unpickl" in err, err
        assert not marker.exists(), path.name
    # and the good ones run
    for path in good_files:
        assert main(["run", str(img), "--model", str(path), "-o", str(tmp_path / "ok")]) == 0


def test_a_torchscript_archive_with_pickled_code_is_refused(tmp_path, good_files):
    """TorchScript's own unpickler resolves TorchScript types only: a Python callable in
    ``data.pkl`` or ``constants.pkl`` fails to load, and nothing runs."""
    marker = tmp_path / "pwned"
    for member in ("data.pkl", "constants.pkl"):
        hostile = tmp_path / f"hostile-{member}.pt"
        _replaced(good_files[0], hostile, member, pickle.dumps(_evil(marker), protocol=2))
        with pytest.raises(ModelError, match="cannot load this TorchScript file") as err:
            convlens.load_model(hostile)
        assert "\n" not in str(err.value) and not marker.exists()


def test_a_pt2_with_pickled_code_is_refused_where_torch_export_load_would_run_it(
        tmp_path, good_files):
    """``torch.export.load`` falls back to ``weights_only=False`` for sample inputs,
    weights and constants; convlens reads them weights-only and refuses."""
    good = good_files[1]
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pt"
    torch.save(((_evil(marker),), {}), payload)
    hostile = tmp_path / "hostile.pt2"
    _replaced(good, hostile, "data/sample_inputs/model.pt", payload.read_bytes())
    with pytest.raises(ModelError, match="sample inputs hold pickled Python objects") as err:
        convlens.load_model(hostile)
    assert "\n" not in str(err.value) and not marker.exists()
    try:  # the file really is hostile: PyTorch's own loader runs its code
        torch.export.load(str(hostile))
    except Exception:  # noqa: BLE001 - (it may fail after running the code)
        pass
    assert marker.exists()


def test_a_pt2_shape_expression_with_code_is_refused_unevaluated(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    batch = torch.export.Dim("batch", min=1, max=8)
    good = _save(model, torch.rand(2, 3, 16, 16), "export", tmp_path,
                 dynamic_shapes=({0: batch},))
    with zipfile.ZipFile(good) as z:
        name = next(n for n in z.namelist() if n.endswith("models/model.json"))
        program = json.loads(z.read(name))
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or s77"
    text = json.dumps(program)
    assert '"expr_str": "Symbol(' in text  # (a dynamic batch: symbolic sizes in the file)
    start = text.index('"expr_str": "') + len('"expr_str": "')
    end = text.index('"', start)
    hostile = tmp_path / "hostile.pt2"
    _replaced(good, hostile, "models/model.json",
              (text[:start] + code.replace('"', '\\"') + text[end:]).encode())
    with pytest.raises(ModelError, match="shape expression .* not plain arithmetic") as err:
        convlens.load_model(hostile)
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize("expr,ok", [
    ("s0", True), ("2*s0 + 1", True), ("FloorDiv(s77, 2)", True), ("Max(1, s0) - u3", True),
    ("s0.__class__", False), ("__import__('os')", False), ("s0[0]", False),
    ("lambda: 1", False), ("open", False), ("1.5*s0", True),
    ("Symbol('s77', positive=True, integer=True)", True), ("Symbol('os')", False),
    ("'s0'.join", False), ("x := 1", False),
])
def test_only_plain_shape_arithmetic_reaches_sympy(expr, ok):
    assert _plain_expression(expr, {"FloorDiv", "Max"}) is ok


def test_attribution_on_a_file_says_one_line(tmp_path, good_files):
    from convlens.capture.adapters import adapter_for
    for path in good_files:
        model = convlens.load_model(path).model
        with pytest.raises(ModelError, match="no backend") as err:
            adapter_for(model).function("backend")
        assert "\n" not in str(err.value)


def test_layer_selection_and_storage_options_apply(tmp_path):
    torch.manual_seed(1)
    model = MODELS[0]().eval()  # ResNetish
    x = torch.from_numpy(convlens.capture(model, _image(16)).model_input)
    opts = dict(layers=["conv", "*.add"], dtype="float16", weights="none")
    ref = convlens.capture(model, _image(16), **opts)
    for fmt in FORMATS:
        loaded = convlens.load_model(_save(model, x, fmt, tmp_path)).model
        t = convlens.capture(loaded, _image(16), **opts)
        assert t.names == ref.names, fmt
        for s, r in zip(t, ref):
            assert s.output.dtype == np.float16 and s.weights == {}, (fmt, s.name)
            np.testing.assert_array_equal(s.output, r.output, err_msg=s.name)
            assert [t.stages[i].name for i in s.sources if i >= 0] == \
                [ref.stages[i].name for i in r.sources if i >= 0], s.name
