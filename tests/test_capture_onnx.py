"""ONNX models (``capture/onnx.py``): the hand-built architectures of the graph issue,
exported from PyTorch with ``torch.onnx.export``, captured from the ``.onnx`` file.

Every stage whose op corresponds to a PyTorch stage holds the same values as capturing
the PyTorch model, to 1e-5 (onnxruntime's kernels are not PyTorch's: the differences seen
are a few float32 ulps, at most 5e-7); the last stage equals a plain onnxruntime
session's output exactly; merges list every operand; params fill their kind's schema.
Malformed and hostile files are one line each (exit 2 from the CLI).
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import convlens
from convlens import params as P
from convlens.capture import expected_input
from convlens.capture.adapters import adapter_for
from convlens.cli import main
from test_capture_graph import (SE, ConvNeXtish, DenseBlock, Inception, InplaceTwice, MobileV3,
                                ResNetish, _image)

TOL = dict(rtol=1e-5, atol=1e-5)
"""onnxruntime's kernels against PyTorch's (measured: at most 5.4e-7 on these models)."""

# an ONNX stage named after the op the exporter emitted, and the PyTorch op it is
RENAMED = {"max_pool": "max_pool2d", "concat": "cat", "global_average_pool": "adaptive_avg_pool2d",
           "reduce_mean": "mean", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid",
           "transpose": "permute", "shared_1": "shared#2"}


def _torch_name(name: str) -> str:
    head, _, last = name.rpartition(".")
    stem, sep, num = last.rpartition("_")
    if last in RENAMED:
        last = RENAMED[last]
    elif sep and num.isdigit() and stem in RENAMED:
        last = f"{RENAMED[stem]}_{num}"
    return f"{head}.{last}" if head else last


def _export(model, x, path, **kw) -> None:
    with warnings.catch_warnings():  # (the TorchScript-based exporter's deprecation notice)
        warnings.simplefilter("ignore")
        # no constant folding: batch norms stay their own nodes, as PyTorch's stages are
        torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=False,
                          **kw)


def _plain(path, x: np.ndarray) -> np.ndarray:
    """The model's output from a plain onnxruntime session (default options)."""
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# stages only ONNX has (a Linear on channels-last maps is MatMul, then the bias Add)
ONNX_ONLY = {"block.pwconv1.mat_mul", "block.pwconv2.mat_mul"}


@pytest.mark.parametrize("make", [ResNetish, DenseBlock, Inception, SE, ConvNeXtish, MobileV3,
                                  InplaceTwice], ids=lambda m: m.__name__)
def test_an_exported_model_gives_the_pytorch_stages(make, tmp_path):
    torch.manual_seed(1)
    model = make().eval()
    img = _image(16)
    want = convlens.capture(model, img)
    path = tmp_path / "net.onnx"
    _export(model, torch.from_numpy(want.model_input), path)
    loaded = convlens.load_model(path)
    t = convlens.capture(loaded.model, img)
    assert t.framework == "onnx" and loaded.name == "net.onnx"
    np.testing.assert_array_equal(t.model_input, want.model_input)
    # every PyTorch stage is there, same values; ONNX adds only the MatMuls named above
    as_torch = {_torch_name(s.name): s for s in t}
    assert set(as_torch) - set(want.names) == ONNX_ONLY & set(as_torch)
    assert [_torch_name(n) for n in t.names if n not in ONNX_ONLY] == want.names
    for s in want:
        got = as_torch[s.name]
        assert got.kind == s.kind, s.name
        np.testing.assert_allclose(got.output, s.output, err_msg=s.name, **TOL)
        assert got.params.get("layout") == s.params.get("layout"), s.name
    # the last stage: onnxruntime's own output, to the bit
    plain = _plain(path, t.model_input)
    np.testing.assert_array_equal(t.stages[-1].output, plain)
    np.testing.assert_array_equal(t.output, plain)
    # the graph is PyTorch's: every edge (so every merge lists every operand)

    def sources(trace, s, rename=lambda n: n):
        out = []
        for i in s.sources:
            src = trace.stages[i] if i >= 0 else None
            if src is not None and src.name in ONNX_ONLY:  # (the MatMul before a bias)
                out += sources(trace, src, rename)
            else:
                out.append("input" if src is None else rename(src.name))
        return out

    for s in want:
        assert sources(t, as_torch[s.name], _torch_name) == sources(want, s), s.name
    for name, srcs in make.merges.items():
        got = as_torch[name]
        assert got.kind == "merge" and len(got.sources) == len(srcs), name
    for s in t:
        assert P.problems(s.kind, s.params) == [], (s.name, s.params)
        assert s.sources and all(-1 <= i < s.index for i in s.sources), s.name


def test_params_and_weights_come_from_the_nodes(tmp_path):
    torch.manual_seed(1)
    model = ResNetish().eval()
    img = _image(16)
    want = convlens.capture(model, img)
    _export(model, torch.from_numpy(want.model_input), tmp_path / "r.onnx")
    t = convlens.capture(convlens.load_model(tmp_path / "r.onnx").model, img)
    conv = t["layer1.0.conv1"]
    assert conv.params == {"kernel_size": (3, 3), "stride": (1, 1), "dilation": (1, 1),
                           "groups": 1, "padding": (1, 1), "in_channels": 4,
                           "out_channels": 4, "bias": False}
    assert conv.params == want["layer1.0.conv1"].params
    # initializers are the weights, exactly, in PyTorch's layout and names
    np.testing.assert_array_equal(conv.weights["weight"], model.layer1[0].conv1.weight.detach())
    bn = t["layer1.0.bn1"]
    assert bn.kind == "norm" and bn.params["function"] == "batch_norm" and bn.params["eps"] == 1e-5
    for k in ("weight", "bias", "running_mean", "running_var"):
        np.testing.assert_array_equal(bn.weights[k], getattr(model.layer1[0].bn1, k).detach())
    fc = t["fc"]
    assert fc.kind == "dense" and fc.params["in_features"] == 4 and fc.params["out_features"] == 3
    np.testing.assert_array_equal(fc.weights["weight"], model.fc.weight.detach())
    pool = t["global_average_pool"]
    assert pool.params == {"mode": "avg", "global": True, "adaptive": True, "output_size": (1, 1)}
    assert t["flatten"].kind == "flatten" and t["flatten"].params["start_dim"] == 1
    assert t["layer1.0.add"].params == {"operation": "add"}
    assert convlens.capture(convlens.load_model(tmp_path / "r.onnx").model, img,
                            weights="none")["stem"].weights == {}


def test_the_dynamo_exporter_names_stages_by_module_path(tmp_path):
    """The default exporter: names from its ``name_scopes`` metadata; it folds each batch
    norm into the conv before it, so that conv holds the batch norm's values."""
    torch.manual_seed(1)
    model = ResNetish().eval()
    img = _image(16)
    want = convlens.capture(model, img)
    path = tmp_path / "d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(want.model_input),), str(path), dynamo=True,
                          verbose=False)
    t = convlens.capture(convlens.load_model(path).model, img)
    fused = [n for n in want.names if n.endswith(("conv1", "conv2"))]
    assert t.names == [n for n in want.names if n not in fused][:-3] + ["mean", "view", "fc"]
    for s in t:
        if s.name in want.names and s.name not in ("mean", "view"):
            np.testing.assert_allclose(s.output, want[s.name].output, err_msg=s.name, **TOL)
    assert t["layer1.0.add"].sources == (t.names.index("relu"), t.names.index("layer1.0.bn2"))
    np.testing.assert_array_equal(t.output, _plain(path, t.model_input))


def test_channels_last_stretch_is_shown_channels_first(tmp_path):
    torch.manual_seed(1)
    model = ConvNeXtish().eval()
    img = _image(16)
    want = convlens.capture(model, img)
    _export(model, torch.from_numpy(want.model_input), tmp_path / "c.onnx")
    t = convlens.capture(convlens.load_model(tmp_path / "c.onnx").model, img)
    last = [s.name for s in t if s.params.get("layout") == "channels_last"]
    assert last == ["block.transpose", "block.norm", "block.pwconv1.mat_mul", "block.pwconv1",
                    "block.act", "block.pwconv2.mat_mul", "block.pwconv2", "block.mul"]
    assert t["block.norm"].output.shape == (1, 4, 8, 8)  # (B, C, H, W), C = the channels
    lin = t["block.pwconv1"]  # MatMul + bias Add of one nn.Linear: one dense stage
    assert lin.kind == "dense" and lin.params["in_features"] == 4 and lin.params["bias"]
    np.testing.assert_array_equal(lin.weights["weight"], model.block.pwconv1.weight.detach())
    np.testing.assert_array_equal(lin.weights["bias"], model.block.pwconv1.bias.detach())
    assert t["block.mul"].sources == (t.names.index("block.pwconv2"),)  # gamma: a weight


def test_fixed_size_and_batch_and_one_session_per_model(tmp_path):
    torch.manual_seed(1)
    model = SE().eval()
    _export(model, torch.zeros(1, 3, 16, 16), tmp_path / "se.onnx")
    m = convlens.load_model(tmp_path / "se.onnx").model
    assert expected_input(m) == (3, (16, 16))
    imgs = np.random.default_rng(0).random((2, 20, 24, 3), dtype=np.float32)
    t = convlens.capture(m, imgs)  # resized to the declared 16x16; batch fixed at 1: per image
    assert t.model_input.shape == (2, 3, 16, 16) and t.output.shape == (2, 4, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(t.output, model(torch.from_numpy(t.model_input)).numpy(), **TOL)
    one = convlens.capture(m, imgs[1])
    np.testing.assert_array_equal(t["mul"].output[1:], one["mul"].output)
    plan = m._plan
    convlens.capture(m, imgs[0])
    assert m._plan is plan  # one session per model object...
    other = convlens.load_model(tmp_path / "se.onnx").model
    assert other._plan.session is not plan.session  # ...and another object gets its own
    assert adapter_for(m).name == "onnx" and adapter_for(m).backend is None


def test_selected_layers_and_notices(tmp_path):
    torch.manual_seed(1)
    _export(SE().eval(), torch.zeros(1, 3, 16, 16), tmp_path / "se.onnx")
    m = convlens.load_model(tmp_path / "se.onnx").model
    t = convlens.capture(m, _image(16), layers="conv")
    assert t.names == ["conv", "reduce", "expand"]
    assert [s.sources for s in t] == [(-1,), (), ()]  # (their sources were not kept)
    full = convlens.capture(m, _image(16))
    # the ReduceMean's axes are a Constant node: computed, not a stage, and named
    assert list(full.meta["notices"]) == [
        "1 computed value(s) of the ONNX graph are not stages; "
        "1 from weights and constants alone: /Constant"]


def _graph(nodes, inits=(), opset=17, shape=(1, 3, 4, 4), out_shape=None, domains=()):
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                         out_shape or shape)],
                          initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                            *(helper.make_opsetid(d, 1) for d in domains)])
    m.ir_version = 8
    return m


def test_a_hand_written_graph_sizes_are_not_stages(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (a ``view(x.size(0), -1)``): the size
    computations are named in the notice, the Reshape is a stage, sources skip them."""
    i64 = lambda n, v: helper.make_tensor(n, TensorProto.INT64, [len(v)], v)  # noqa: E731
    nodes = [helper.make_node("Sub", ["x", "half"], ["c"], name="/Sub"),
             helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
             helper.make_node("Shape", ["r"], ["s"], name="/Shape"),
             helper.make_node("Gather", ["s", "zero"], ["b"], name="/Gather", axis=0),
             helper.make_node("Concat", ["b", "minus1"], ["shape"], name="/Concat", axis=0),
             helper.make_node("Reshape", ["r", "shape"], ["flat"], name="/Reshape"),
             helper.make_node("ReduceSum", ["flat"], ["total"], name="/ReduceSum", keepdims=0),
             helper.make_node("Mul", ["flat", "two"], ["y"], name="/Mul")]
    inits = [i64("zero", [0]), i64("minus1", [-1]),
             helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
             helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])]
    path = tmp_path / "h.onnx"
    onnx.save(_graph(nodes, inits, out_shape=(1, 48)), path)
    x = np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)
    t = convlens.capture(convlens.load_model(path).model, x)
    assert t.names == ["sub", "relu", "reshape", "mul"]
    assert [s.sources for s in t] == [(-1,), (0,), (1,), (2,)]
    assert t["sub"].params == {"operation": "sub", "scalar": 0.5}
    assert t["mul"].params == {"operation": "mul", "scalar": 2.0}
    assert t["reshape"].params == {"operation": "reshape", "target_shape": (48,)}
    xin = t.model_input
    np.testing.assert_array_equal(t.output, np.maximum(xin - np.float32(0.5), 0).reshape(1, 48) * 2)
    notice, = t.meta["notices"]
    assert notice.startswith("4 computed value(s) of the ONNX graph are not stages; "
                             "1 without a batch axis: /ReduceSum; 3 size computations")


# -- malformed and hostile files -----------------------------------------------------
def _bad_files(tmp_path):
    """Each file in ``tmp_path/models`` and the message it gets."""
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    tmp_path = tmp_path / "models"
    tmp_path.mkdir()
    torch.manual_seed(1)
    good = tmp_path / "good.onnx"
    _export(Inception().eval(), torch.zeros(1, 3, 16, 16), good)
    data = good.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.onnx").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "zip.onnx", "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04K\x01.")
    for name, loc in (("passwd", "/etc/passwd"), ("dotdot", "../outside.bin"),
                      ("link", "link.bin"), ("missing", "nothere.bin")):
        m = onnx.load(good)
        t = m.graph.initializer[0]
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        del t.float_data[:]
        t.external_data.add(key="location", value=loc)
        onnx.save(m, tmp_path / f"{name}.onnx")
    os.symlink("/etc/passwd", tmp_path / "link.bin")
    onnx.save(_graph([helper.make_node("Frobnicate", ["x"], ["y"], name="n1")]),
              tmp_path / "unknown_op.onnx")
    onnx.save(_graph([helper.make_node("Frob", ["x"], ["y"], name="n2", domain="my.ops")],
                     domains=["my.ops"]), tmp_path / "custom_op.onnx")
    onnx.save(_graph([helper.make_node("Relu", ["x"], ["y"], name="n3")], opset=5),
              tmp_path / "old_opset.onnx")
    return {
        "truncated": "not an ONNX model", "random": "not an ONNX model",
        "empty": r"not an ONNX model \(an empty file\)",
        "zip": r"not an ONNX model \(a zip archive",
        "passwd": r"'/etc/passwd', outside the model's folder",
        "dotdot": r"'../outside.bin', outside the model's folder",
        "link": r"'link.bin', outside the model's folder",
        "missing": r"'nothere.bin', which is missing",
        "unknown_op": r"op 'Frobnicate' \(node 'n1'\) is not an ONNX op of opset 17",
        "custom_op": r"op 'Frob' of domain my.ops is not an op onnxruntime knows",
        "old_opset": r"ONNX opset 5 is not supported; convlens runs opsets 7 to \d+",
    }


def test_malformed_and_hostile_files_are_one_line(tmp_path, capsys):
    cases = _bad_files(tmp_path)
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    for name, pattern in cases.items():
        path = tmp_path / "models" / f"{name}.onnx"
        with pytest.raises(convlens.ModelError, match=pattern) as err:
            convlens.load_model(path)
        assert "\n" not in str(err.value)
        assert main(["run", str(img), "--model", str(path), "-o", str(tmp_path / "out")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in lines[0], (name, lines)


def test_onnx_is_imported_only_when_used():
    code = ("import sys, convlens; from convlens.capture.adapters import adapter_for\n"
            "try:\n    adapter_for(object())\nexcept convlens.ModelError:\n    pass\n"
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_runs_an_onnx_classifier(tmp_path, capsys):
    torch.manual_seed(1)
    path = tmp_path / "net.onnx"
    model = ResNetish().eval()
    _export(model, torch.zeros(1, 3, 16, 16), path, input_names=["image"],
            dynamic_axes={"image": {0: "batch"}})
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(img)
    assert main(["run", str(img), "--model", str(path), "-o", str(tmp_path / "run")]) == 0
    saved = convlens.Trace.load(next((tmp_path / "run").glob("**/*.npz")))
    assert saved.framework == "onnx" and "layer1.0.add" in saved.names
    assert main(["stats", str(img), "--model", str(path), "-o", str(tmp_path / "stats")]) == 0
    assert main(["report", str(img), "--model", str(path), "-o", str(tmp_path / "report")]) == 0
    assert main(["predict", str(img), "--model", str(path)]) == 0
    out = capsys.readouterr().out
    logits = convlens.capture(convlens.load_model(path).model, str(img)).output[0]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = int(np.argmax(p))
    assert f"1.  {p[top]:.4f}" in out and f"{top} ({top})" in out, out  # the softmax's top class
    assert main(["attribute", str(img), "--model", str(path), "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnx models have no backend" in err[0], err


def test_the_explorer_shows_an_onnx_model(tmp_path):
    """A conv's arithmetic in the explorer, from the initializer weights, equals the value
    onnxruntime computed; an add shows both operands."""
    from fastapi.testclient import TestClient

    from convlens.server import create_app
    from test_server_api import unpack

    torch.manual_seed(1)
    path = tmp_path / "net.onnx"
    _export(ResNetish().eval(), torch.zeros(1, 3, 16, 16), path,
            input_names=["image"], dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}})
    with TestClient(create_app(str(path))) as c:
        header, _ = unpack(c.post("/api/traces", json={"image": "cat", "model": "cli"}).content)
        tid = header["trace"]["id"]
        conv = c.get(f"/api/traces/{tid}/stages/0/explain",
                     params={"channel": 1, "row": 5, "col": 9}).json()
        add = c.get(f"/api/traces/{tid}/stages/7/explain",
                    params={"channel": 0, "row": 3, "col": 4}).json()
    assert conv["arithmetic"]["value"] == pytest.approx(conv["captured"], abs=1e-5)
    ops = add["arithmetic"]["operands"]
    assert [o["name"] for o in ops] == ["relu", "layer1.0.bn2"] and add["stage"] == "layer1.0.add"
    assert ops[0]["value"] + ops[1]["value"] == pytest.approx(add["captured"], abs=1e-6)
