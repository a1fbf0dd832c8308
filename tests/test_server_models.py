"""Model files loaded from the explorer's page (``POST /api/models``), preprocessing presets
in trace requests, and ``convlens serve --model`` checked before it listens.

The uploaded model's trace is compared with :func:`convlens.capture` of the same file's
model, value for value; a preset's model input with ``make_trace(..., preprocess=
{"preset": ...})`` (what ``convlens run --preprocess`` does) and with the preset's
arithmetic written out in NumPy.
"""
from __future__ import annotations

import asyncio
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
torch = pytest.importorskip("torch")
with warnings.catch_warnings():  # starlette's notice about its httpx-based client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

import convlens  # noqa: E402
from convlens.cli import main  # noqa: E402
from convlens.pipeline import make_trace  # noqa: E402
from convlens.preprocess import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, describe_steps  # noqa: E402
from convlens.server import create_app  # noqa: E402
from convlens.server.encode import unpack  # noqa: E402
from test_server_api import error_of  # noqa: E402


def _torch_net():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(2, 3)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One small model in each format the page loads, and a TorchScript file it refuses."""
    root = tmp_path_factory.mktemp("models")
    net, x = _torch_net(), torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():  # (the TorchScript-based exporter's deprecation notice)
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(root / "net.onnx"), dynamo=False,
                          input_names=["image"],
                          dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}})
    torch.export.save(torch.export.export(net, (x,)), str(root / "net.pt2"))
    torch.jit.script(net).save(str(root / "net.pt"))
    from convlens.nets.keras_backend import import_keras
    keras = import_keras()
    keras.utils.set_random_seed(5)
    km = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3,
                           activation="relu"), keras.layers.MaxPooling2D(2),
                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    km.save(root / "net.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.save(root / "net.h5")
    return root


@pytest.fixture
def app():
    return create_app()


def post_model(client, name, data):
    return client.post("/api/models", files={"file": (name, data, "application/octet-stream")})


def held_files(app):
    folder = app.state.explorer._model_dir
    return sorted(p.name for p in Path(folder).iterdir()) if folder else []


def frame(client, **body):
    r = client.post("/api/traces", json=body)
    assert r.status_code == 200, r.text
    return unpack(r.content)[0]


def npz(client, tid, tmp_path):
    path = tmp_path / f"{tid}.npz"
    path.write_bytes(client.get(f"/api/traces/{tid}/npz").content)
    return convlens.Trace.load(path)


# -- uploads ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, framework", [("net.onnx", "onnx"), ("net.pt2", "export"),
                                             ("net.keras", "keras"), ("net.h5", "keras")])
def test_an_uploaded_model_traces_exactly_as_capture(files, app, tmp_path, name, framework):
    with TestClient(app) as c:
        r = post_model(c, f"../../{name}", (files / name).read_bytes())
        body = r.json()
        assert r.status_code == 200, body
        assert body["label"] == name and body["framework"] == framework
        assert body["id"] == "m1"
        info = c.get("/api/info").json()
        assert {"id": "m1", "label": f"{name} (uploaded)"} in info["models"]
        assert set(info["model_formats"]) == {".keras", ".h5", ".onnx", ".pt2"}
        header = frame(c, image="cat", model="m1")
        got = npz(c, header["trace"]["id"], tmp_path)
        assert held_files(app) == [f"m1{name[3:]}"]  # the server's name, in its folder
    assert app.state.explorer._model_dir is None  # removed when the server stopped
    ref = convlens.capture(convlens.load_model(files / name).model, convlens.cat())
    assert got.framework == ref.framework == framework
    assert got.names == ref.names and len(ref.names) >= 5
    assert [s["name"] for s in header["stages"]] == ref.names
    np.testing.assert_array_equal(got.model_input, ref.model_input)
    for a, b in zip(got.stages, ref.stages):
        np.testing.assert_array_equal(a.output, b.output, err_msg=a.name)
    assert header["trace"]["preprocessing_text"] == describe_steps(ref.preprocessing)
    assert header["trace"]["preset"] is None


def test_formats_that_run_code_are_refused_with_one_line(files, app):
    with TestClient(app) as c:
        for name, data in [("net.pt", (files / "net.pt").read_bytes()),
                           ("model.pkl", b"\x80\x04K\x01."), ("weights.pth", b"PK\x03\x04"),
                           ("notes.txt", b"hello"), ("model", b"hello")]:
            body = error_of(post_model(c, name, data), 415)
            assert body["type"] == "UnsupportedModelFormat"
            assert body["message"].startswith(f"{name}: ")
            assert "the page loads only .h5, .keras, .onnx, .pt2 files" in body["message"]
        r = post_model(c, "net.pt", (files / "net.pt").read_bytes())
        body = error_of(r, 415)
        assert "TorchScript archive or a torch.save pickle, which can run code" in body["message"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        error_of(c.post("/api/models", files={"wrong": ("net.onnx", b"x")}), 422)
        error_of(post_model(c, "empty.onnx", b""), 400)
        assert c.get("/api/info").json()["models"][-1]["id"] == "zoo:efficientnet-lite0"
        assert app.state.explorer.uploaded == [] and held_files(app) == []


def _zip_bomb(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b"{}")
        zf.writestr("model.weights.h5", b"\0" * (80 << 20))


def test_corrupt_and_hostile_files_get_one_line_and_leave_nothing(files, app, tmp_path):
    onnx = (files / "net.onnx").read_bytes()
    _zip_bomb(tmp_path / "bomb.keras")
    with zipfile.ZipFile(tmp_path / "pickle.pt2", "w") as zf:  # a torch.save, renamed
        zf.writestr("archive/data.pkl", b"\x80\x04K\x01.")
    cases = {
        "corrupt.keras": (np.random.default_rng(0).bytes(5000), "the file is truncated or corrupt"),
        "corrupt.h5": (b"\x89HDF\r\n\x1a\n" + bytes(200), "cannot load this Keras model"),
        "half.onnx": (onnx[: len(onnx) // 2], "not an ONNX model"),
        "bomb.keras": ((tmp_path / "bomb.keras").read_bytes(), "looks like a zip bomb"),
        "pickle.pt2": ((tmp_path / "pickle.pt2").read_bytes(), "not a torch.export archive"),
    }
    with TestClient(app, raise_server_exceptions=False) as c:
        for name, (data, expect) in cases.items():
            body = error_of(post_model(c, name, data), 400)
            assert body["message"].startswith(f"{name}: ") and expect in body["message"], body
            assert "convlens-models" not in body["message"]  # never the server's path
        assert app.state.explorer.uploaded == [] and held_files(app) == []
        assert post_model(c, "net.onnx", onnx).json()["id"] == "m6"  # still answering


def test_uploads_are_size_limited_early_and_while_streaming(files):
    data = (files / "net.onnx").read_bytes()
    app = create_app(max_model_bytes=len(data) - 1)
    with TestClient(app) as c:
        body = error_of(post_model(c, "big.onnx", data + bytes(70_000)), 413)
        assert body["message"].startswith("the upload is ") and \
            f"the limit is {len(data) - 1:,}" in body["message"]  # from Content-Length
        body = error_of(post_model(c, "net.onnx", data), 413)  # over by one byte: when read
        assert body["message"] == (f"net.onnx is {len(data):,} bytes, larger than the limit "
                                   f"of {len(data) - 1:,} — send a smaller model file")
        assert c.get("/api/info").json()["limits"]["model_bytes"] == len(data) - 1
        assert held_files(app) == []
    # a body longer than its Content-Length said is cut off as it streams in
    small = create_app(max_model_bytes=1000)
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"net.onnx\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    chunks = [head] + [bytes(8192)] * 16 + [f"\r\n--{boundary}--\r\n".encode()]
    sent = []

    async def receive():
        if chunks:
            sent.append(len(chunks[0]))
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    out = []

    async def send(message):
        out.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/models", "raw_path":
             b"/api/models", "query_string": b"", "root_path": "", "client": ("t", 1),
             "server": ("testserver", 80), "headers": [
                 (b"host", b"testserver"), (b"content-length", b"900"),
                 (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}
    asyncio.run(small(scope, receive, send))
    assert out[0]["status"] == 413 and sum(sent) < 1000 + 65536 + 8192 + len(head) + 1
    assert json.loads(out[1]["body"])["error"]["message"] == (
        "the upload is larger than the limit of 1,000 bytes — send a smaller model file")
    assert len(chunks) > 0  # it stopped reading before the end


def test_only_the_latest_uploads_are_kept(files):
    app = create_app()
    app.state.explorer.max_models = 2
    data = (files / "net.onnx").read_bytes()
    with TestClient(app) as c:
        ids = [post_model(c, f"n{i}.onnx", data).json()["id"] for i in range(3)]
        assert ids == ["m1", "m2", "m3"]
        assert [m["id"] for m in c.get("/api/info").json()["models"]][-2:] == ["m2", "m3"]
        body = error_of(c.post("/api/traces", json={"image": "cat", "model": "m1"}), 404)
        assert "upload the file again" in body["message"]
        error_of(c.post("/api/traces", json={"image": "cat", "model": "../m1"}), 422)
        assert held_files(app) == ["m2.onnx", "m3.onnx"]
        folder = app.state.explorer._model_dir
    assert not os.path.exists(folder)  # the server stopped: its folder is gone


# -- preprocessing ---------------------------------------------------------------------
def _by_hand(preset):
    """The preset's model input for the cat, written out in NumPy (float64, then float32)."""
    x = convlens.cat().astype(np.float64)
    if preset == "imagenet":
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
    elif preset == "keras-mobilenet":
        x = x * 2.0 - 1.0
    elif preset == "caffe":
        x = x[..., ::-1] * 255.0 - CAFFE_MEAN_BGR
    return x.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.parametrize("preset", [None, "none", "imagenet", "keras-mobilenet", "caffe"])
def test_a_preset_gives_the_model_input_of_convlens_run(files, app, tmp_path, preset):
    with TestClient(app) as c:
        assert post_model(c, "net.keras", (files / "net.keras").read_bytes()).status_code == 200
        header = frame(c, image="cat", model="m1", preprocess=preset)
        got = npz(c, header["trace"]["id"], tmp_path)
    ref = make_trace(convlens.cat(), model=str(files / "net.keras"),
                     preprocess={"preset": preset} if preset else None)
    np.testing.assert_array_equal(got.model_input, ref.model_input)
    np.testing.assert_allclose(got.model_input, _by_hand(preset), rtol=0, atol=2e-5)
    for a, b in zip(got.stages, ref.stages):
        np.testing.assert_array_equal(a.output, b.output)
    assert got.preprocessing == ref.preprocessing
    assert header["trace"]["preprocessing_text"] == describe_steps(ref.preprocessing)
    assert header["trace"]["preset"] == preset


def test_presets_for_zoo_and_toy_networks_and_bad_names(app, tmp_path):
    digit = convlens.digits()[0][int(np.flatnonzero(convlens.digits()[1] == 7)[0])]
    with TestClient(app) as c:
        own = npz(c, frame(c, image="digit-7", model="zoo:lenet")["trace"]["id"], tmp_path)
        toy = frame(c, image="cat", model="toy", spec="conv(2, 3x3)", preprocess="caffe")
        toy_trace = npz(c, toy["trace"]["id"], tmp_path)
        body = error_of(c.post("/api/traces", json={"image": "cat", "preprocess": "cafe"}), 422)
        assert "preprocess: Input should be 'none', 'imagenet', 'keras-mobilenet' or " \
               "'caffe'" in body["message"]
    ref = make_trace(digit, model="zoo:lenet")  # LeNet's own: 32x32 grey, inverted
    np.testing.assert_array_equal(own.model_input, ref.model_input)
    assert [s["op"] for s in ref.preprocessing][:2] == ["resize", "grayscale"]
    np.testing.assert_allclose(toy_trace.model_input, _by_hand("caffe"), rtol=0, atol=2e-5)
    assert toy["trace"]["preprocessing_text"] == "RGB -> BGR · scale x255 · normalize mean " \
        "(103.939, 116.779, 123.68) std (1)"


# -- convlens serve ----------------------------------------------------------------------
def _no_listening(monkeypatch):
    from convlens.cli import serve

    def refuse(*_):
        raise AssertionError("serve started listening")
    monkeypatch.setattr(serve, "_bind", refuse)


@pytest.mark.parametrize("name, data, expect", [
    ("bad.onnx", b"\x08\x07garbage" * 40, "not an ONNX model"),
    ("bad.keras", b"not a zip" * 40, "the file is truncated or corrupt"),
    ("bad.h5", b"\x89HDF\r\n\x1a\n" + bytes(200), "cannot load this Keras model"),
    ("bad.pt", b"PK\x03\x04" + bytes(300), "cannot load this TorchScript model"),
    ("bad.pt2", b"\x80\x04K\x01." * 10, "not a torch.export archive"),
    ("bad.xyz", b"?", "unsupported model file type '.xyz'"),
])
def test_serve_refuses_a_bad_model_before_listening(tmp_path, capsys, monkeypatch, name, data,
                                                    expect):
    _no_listening(monkeypatch)
    (tmp_path / name).write_bytes(data)
    assert main(["serve", "--model", str(tmp_path / name), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and "Traceback" not in err[0], err


def test_serve_passes_weights_and_the_pool_sizes(tmp_path, capsys, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch\n\ndef Net():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))\n")
    sd = {"0.weight": torch.full((2, 3, 3, 3), 0.25), "0.bias": torch.tensor([0.0, -1.0])}
    torch.save(sd, tmp_path / "w.pt")
    made = []
    import convlens.server.app as server_app
    real = server_app.create_app
    monkeypatch.setattr(server_app, "create_app", lambda *a, **k: made.append(real(*a, **k))
                        or made[-1])
    _no_listening(monkeypatch)
    spec = f"{tmp_path / 'mynet.py'}:Net"
    with pytest.raises(AssertionError, match="serve started listening"):
        main(["serve", "--model", spec, "--weights", str(tmp_path / "w.pt"), "--workers", "3",
              "--queue", "1", "--port", "0"])
    app, = made
    assert (app.state.pool.workers, app.state.pool.queue) == (3, 1)
    assert "cli" in app.state.explorer.models  # loaded before listening
    with TestClient(app, base_url="http://127.0.0.1") as c:  # (serve: loopback hosts only)
        header = frame(c, image="cat", model="cli")
        a = c.get(f"/api/traces/{header['trace']['id']}/stages/0/explain",
                  params={"channel": 1, "row": 4, "col": 7}).json()
    cat = convlens.cat().astype(np.float64)
    assert a["captured"] == pytest.approx(0.25 * cat[4:7, 7:10].sum() - 1.0, abs=1e-5)
    # weights that do not fit: one line, before listening
    torch.save({"0.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / "short.pt")
    assert main(["serve", "--model", spec, "--weights", str(tmp_path / "short.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0.bias" in err[0], err
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers 0 --queue 4 is not valid" in capsys.readouterr().err
