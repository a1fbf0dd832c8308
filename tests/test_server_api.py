"""The explorer's HTTP API (FastAPI TestClient): frames, arithmetic, uploads, errors."""
import argparse
import io
import socket
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's notice about its httpx-based client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

import convlens  # noqa: E402
from convlens import ops  # noqa: E402
from convlens.errors import ConvlensError  # noqa: E402
from convlens.pipeline import trace_spec  # noqa: E402
from convlens.render import colormaps  # noqa: E402
from convlens.server import create_app  # noqa: E402
from convlens.server.encode import dequantize, downsample, pack, quantize, unpack  # noqa: E402

SPEC = "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def reference():
    return trace_spec(convlens.cat(), SPEC, seed=7)


@pytest.fixture(scope="module")
def toy(client):
    r = client.post("/api/traces", json={"image": "cat", "model": "toy", "spec": SPEC, "seed": 7})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    return unpack(r.content)


def png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["status"] == status and "\n" not in body["message"]
    return body


# -- encoding ---------------------------------------------------------------------------
def test_frame_round_trip_and_alignment():
    blobs = [np.arange(5, dtype=np.uint8), b"xyz", np.zeros((2, 3), np.float32)]
    frame = pack({"a": 1}, blobs)
    header, got = unpack(frame)
    assert header["a"] == 1 and got[0] == bytes(range(5)) and got[1] == b"xyz"
    assert all(off % 8 == 0 for off, _ in header["blobs"])
    assert np.frombuffer(got[2], np.float32).tolist() == [0.0] * 6


def test_quantize_is_within_half_a_step_and_hits_the_ends():
    x = np.array([[[-2.0, -1.0], [0.5, 3.0]], [[1.0, 1.0], [1.0, 1.0]]], np.float32)
    lo, hi = np.array([-2.0, 1.0]), np.array([3.0, 1.0])
    q = quantize(x, lo, hi)
    assert q[0].tolist() == [[0, 51], [128, 255]] and q[1].tolist() == [[0, 0], [0, 0]]
    back = dequantize(q, lo, hi)
    assert np.abs(back[0] - x[0]).max() <= 5.0 / 510 + 1e-12
    assert np.all(back[1] == 1.0)


def test_downsample_is_a_block_mean_with_ragged_edges():
    x = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    small = downsample(x, 3)  # factor 3 -> blocks rows [0:3, 3:5], cols [0:3, 3:6, 6:7]
    assert small.shape == (1, 2, 3)
    assert small[0, 0, 0] == x[0, 0:3, 0:3].mean() and small[0, 1, 2] == x[0, 3:5, 6:7].mean()
    assert downsample(x, 0) is x


# -- info, schema ---------------------------------------------------------------------------
def test_info_lists_choices_and_the_colour_tables(client):
    info = client.get("/api/info").json()
    assert [i["id"] for i in info["images"]][:2] == ["cat", "digit-0"]
    assert [m["id"] for m in info["models"]] == ["toy", "zoo:lenet", "zoo:efficientnet-lite0"]
    assert info["default_model"] == "toy"
    assert info["colormaps"]["viridis"] == colormaps.lut("viridis").reshape(-1).tolist()
    assert info["limits"]["upload_bytes"] == 8 << 20


def test_openapi_schema_documents_validated_requests(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/info", "/api/images", "/api/traces", "/api/traces/{tid}/stages/{pos}/explain",
            "/api/traces/{tid}/npz"} <= set(schema["paths"])
    req = schema["components"]["schemas"]["TraceRequest"]["properties"]
    assert req["image"]["pattern"].startswith("^(cat|digit")
    assert req["seed"]["minimum"] == 0


# -- traces -----------------------------------------------------------------------------
def test_trace_frame_holds_every_stage_with_exact_ranges(toy, reference):
    header, blobs = toy
    assert [s["name"] for s in header["stages"]] == reference.names
    assert header["trace"]["spec"] == SPEC and header["trace"]["seed"] == 7
    for rec, stage in zip(header["stages"], reference.stages):
        out = stage.output[0]
        assert rec["shape"] == list(out.shape) and rec["shape_str"] == stage.shape_str
        assert rec["min"] == float(out.min()) and rec["max"] == float(out.max())
        p = rec["preview"]
        assert p["lo"] == [float(v) for v in out[:p["channels"]].min(axis=(1, 2))]
    lo = min(float(s.output.min()) for s in reference.stages)
    assert header["global"][0] == lo
    assert header["input"]["h"] == 300 and header["input"]["w"] == 451
    shown = np.frombuffer(blobs[0], np.uint8).reshape(300, 451, 3)
    np.testing.assert_array_equal(shown, np.round(convlens.cat() * 255).astype(np.uint8))
    assert header["predictions"] is None


def test_journey_preview_is_the_block_mean_quantised(toy, reference):
    header, blobs = toy
    rec = header["stages"][5]  # maxpool2: 48x73x3, 2 columns -> 56 px -> factor 2
    p = rec["preview"]
    out = reference.stages[5].output[0].astype(np.float64)
    f = 2
    h, w = p["h"], p["w"]
    assert (h, w) == (24, 37)
    padded = np.pad(out, ((0, 0), (0, h * f - 48), (0, w * f - 73)), constant_values=np.nan)
    expect = np.nanmean(padded.reshape(3, h, f, w, f), axis=(2, 4))
    codes = np.frombuffer(blobs[p["blob"]], np.uint8).reshape(3, h, w)
    back = dequantize(codes, np.array(p["lo"]), np.array(p["hi"]))
    step = (np.array(p["hi"]) - np.array(p["lo"])) / 255
    assert np.all(np.abs(back - expect) <= step[:, None, None] / 2 + 1e-6)


def test_channels_at_full_resolution(client, toy, reference):
    tid = toy[0]["trace"]["id"]
    r = client.get(f"/api/traces/{tid}/stages/0/channels", params={"start": 1, "count": 5})
    header, blobs = unpack(r.content)
    out = reference.stages[0].output[0]
    assert (header["start"], header["count"], header["h"], header["w"]) == (1, 2, 298, 449)
    assert header["lo"] == [float(out[1].min()), float(out[2].min())]
    codes = np.frombuffer(blobs[0], np.uint8).reshape(2, 298, 449)
    back = dequantize(codes, np.array(header["lo"]), np.array(header["hi"]))
    step = (np.array(header["hi"]) - np.array(header["lo"])) / 255
    assert np.all(np.abs(back - out[1:]) <= step[:, None, None] / 2 + 1e-6)


def test_conv_arithmetic_matches_numpy_reference(client, toy, reference):
    tid = toy[0]["trace"]["id"]
    a = client.get(f"/api/traces/{tid}/stages/3/explain",
                   params={"channel": 2, "row": 40, "col": 61}).json()
    conv2 = reference["conv2"]
    ref = ops.conv2d_at(reference["maxpool1"].output[0], conv2.weights["weight"],
                        conv2.weights["bias"], 2, 40, 61)
    ar = a["arithmetic"]
    assert ar["type"] == "conv" and a["input_name"] == "maxpool1"
    assert ar["value"] == ref["value"]
    assert np.allclose(ar["window"], ref["window"]) and np.allclose(ar["weights"], ref["kernel"])
    assert ar["sum"] == pytest.approx(float(ref["channel_sums"].sum()), abs=1e-12)
    assert a["captured"] == pytest.approx(ref["value"], abs=1e-5)
    # conv2 row 40 reads maxpool1 rows 40..42, which read relu1/conv1 rows 120..128,
    # which read input rows 120..130: an 11x11 field
    rf = a["receptive_field"]
    assert rf["rows"] == [120, 130] and rf["cols"] == [183, 193] and rf["size"] == [11, 11]


def test_pool_and_activation_arithmetic(client, toy, reference):
    tid = toy[0]["trace"]["id"]
    a = client.get(f"/api/traces/{tid}/stages/2/explain",
                   params={"channel": 0, "row": 10, "col": 20}).json()
    ref = ops.pool2d_at(reference["relu1"].output[0], 3, 0, 10, 20)
    assert a["arithmetic"]["type"] == "pool" and a["arithmetic"]["value"] == ref["value"]
    assert tuple(a["arithmetic"]["pick"]) == ref["pick"]
    assert np.array_equal(a["arithmetic"]["window"], ref["window"])
    a = client.get(f"/api/traces/{tid}/stages/1/explain",
                   params={"channel": 1, "row": 3, "col": 4}).json()
    x = float(reference["conv1"].output[0, 1, 3, 4])
    assert a["arithmetic"] == {"type": "activation", "function": "relu", "x": x,
                               "value": max(x, 0.0)}


def test_command_line_model_with_hand_set_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from models import box_sum_net
    path = tmp_path / "box.pt"
    torch.jit.script(box_sum_net()).save(str(path))
    with TestClient(create_app(str(path))) as c:
        info = c.get("/api/info").json()
        assert info["models"][-1] == {"id": "cli", "label": "box.pt (command line)"}
        assert info["default_model"] == "cli"
        header, _ = unpack(c.post("/api/traces", json={"image": "cat", "model": "cli"}).content)
        a = c.get(f"/api/traces/{header['trace']['id']}/stages/0/explain",
                  params={"channel": 0, "row": 5, "col": 9}).json()
    cat = convlens.cat().astype(np.float64)
    expect = cat[5:7, 9:11, 0].sum() - 1.0  # the kernel sums channel 0 of a 2x2 window
    assert a["arithmetic"]["value"] == pytest.approx(expect, abs=1e-12)
    assert a["captured"] == pytest.approx(expect, abs=1e-5)


def test_lenet_predictions_match_the_zoo(client):
    from convlens.nets import zoo
    header, _ = unpack(client.post("/api/traces", json={"image": "digit-3",
                                                         "model": "zoo:lenet"}).content)
    images, labels = convlens.digits()
    digit = images[int(np.flatnonzero(labels == 3)[0])]
    ref = zoo.predict(zoo.load("lenet"), digit, top=5)[0]
    got = header["predictions"]
    assert got["probabilities"] is True
    assert [t["index"] for t in got["top"]] == [p.index for p in ref]
    assert got["top"][0]["name"] == "3"
    assert got["top"][0]["value"] == pytest.approx(ref[0].probability, abs=1e-6)
    assert header["features"]["gradcam"] is True


def test_gradcam_for_a_zoo_classifier_and_refused_for_a_toy_net(client, toy):
    from convlens.attribute import gradcam
    from convlens.nets import zoo
    header, _ = unpack(client.post("/api/traces", json={"image": "digit-7",
                                                         "model": "zoo:lenet"}).content)
    g = client.get(f"/api/traces/{header['trace']['id']}/gradcam").json()
    zm = zoo.load("lenet")
    images, labels = convlens.digits()
    digit = images[int(np.flatnonzero(labels == 7)[0])]
    ref = gradcam(zm.model, digit, preprocess=zm.preprocess_for(digit))
    cam = ref.maps[0].astype(np.float64)
    assert (g["stage"], g["class_index"], g["h"], g["w"]) == (ref.stage, ref.targets[0],
                                                               *cam.shape)
    assert g["values"] == np.round(cam / cam.max() * 255).astype(int).reshape(-1).tolist()
    body = error_of(client.get(f"/api/traces/{toy[0]['trace']['id']}/gradcam"), 400)
    assert "Grad-CAM is not available" in body["message"]


# -- downloads --------------------------------------------------------------------------------
def test_trace_download_loads_back_equal(client, toy, tmp_path, reference):
    r = client.get(f"/api/traces/{toy[0]['trace']['id']}/npz")
    (tmp_path / "t.npz").write_bytes(r.content)
    loaded = convlens.Trace.load(tmp_path / "t.npz")
    assert loaded.names == reference.names
    for a, b in zip(loaded.stages, reference.stages):
        np.testing.assert_array_equal(a.output, b.output)


def test_stage_png_is_the_render_module_picture(client, toy, reference):
    r = client.get(f"/api/traces/{toy[0]['trace']['id']}/stages/2/png", params={"norm": "map"})
    assert r.headers["content-type"] == "image/png"
    assert 'filename="002_maxpool1.png"' in r.headers["content-disposition"]
    assert r.content == convlens.render.stage(reference["maxpool1"], norm="map").to_png_bytes()


def test_report_download_is_the_report_module_page(client, toy, reference):
    from convlens.report import report_html
    r = client.get(f"/api/traces/{toy[0]['trace']['id']}/report.html")
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == report_html(reference)


def test_architecture_diagram_is_svg(client, toy):
    r = client.get(f"/api/traces/{toy[0]['trace']['id']}/architecture.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in r.text[:300] and "maxpool1" in r.text


# -- uploads and bad requests ------------------------------------------------------------------
def test_upload_is_decoded_by_load_image_and_usable(client):
    arr = (np.arange(40 * 60 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    r = client.post("/api/images",
                    files={"file": ("../../etc/grad.png", png_bytes(arr), "image/png")})
    body = r.json()
    assert r.status_code == 200 and body["label"] == "grad.png"
    assert body["id"].startswith("upload-") and (body["height"], body["width"]) == (40, 60)
    header, blobs = unpack(client.post("/api/traces", json={"image": body["id"], "model": "toy",
                                                             "spec": "conv(2, 3x3)"}).content)
    shown = np.frombuffer(blobs[0], np.uint8).reshape(40, 60, 3)
    np.testing.assert_array_equal(shown, arr)
    assert header["stages"][0]["shape"] == [2, 38, 58]


def test_large_uploads_are_scaled_down(client):
    arr = np.zeros((100, 1280, 3), np.uint8)
    body = client.post("/api/images", files={"file": ("wide.png", png_bytes(arr))}).json()
    assert (body["height"], body["width"]) == (50, 640)
    assert body["note"] == "scaled from 100x1280 to 50x640"


def test_bad_requests_get_json_errors_and_the_server_keeps_working(client, toy):
    tid = toy[0]["trace"]["id"]
    body = error_of(client.post("/api/images", files={"file": ("notes.png", b"hello, world")}), 400)
    assert body["type"] == "ImageError" and "notes.png: not an image file" in body["message"]
    error_of(client.post("/api/images", files={"file": ("empty.png", b"")}), 400)
    error_of(client.post("/api/images", files={"wrong": ("a.png", b"x")}), 422)
    trunc = png_bytes(np.zeros((50, 50, 3), np.uint8))[:60]
    assert "truncated" in error_of(client.post("/api/images", files={"file": ("t.png", trunc)}),
                                   400)["message"]
    error_of(client.post("/api/traces", json={"image": "/etc/passwd"}), 422)
    error_of(client.post("/api/traces", json={"image": "cat", "model": "toy", "seed": -1}), 422)
    error_of(client.post("/api/traces", json={"image": "cat", "extra": 1}), 422)
    error_of(client.post("/api/traces", content=b"{not json", headers={
        "content-type": "application/json"}), 422)
    assert error_of(client.post("/api/traces", json={"image": "upload-0123456789ab"}),
                    404)["type"] == "NotFound"
    body = error_of(client.post("/api/traces", json={"model": "toy",
                                                      "spec": "conv(3, 3x3) reluu"}), 400)
    assert body["type"] == "SpecError" and "unknown layer 'reluu'" in body["message"]
    assert "too small" in error_of(client.post("/api/traces", json={
        "model": "toy", "spec": "conv(1, 3x3) maxpool(50) maxpool(50)"}), 400)["message"]
    assert "at most" in error_of(client.post("/api/traces", json={
        "model": "toy", "spec": "conv(4000, 3x3) relu"}), 400)["message"]
    assert "zoo:nope" in error_of(client.post("/api/traces", json={"model": "zoo:nope"}),
                                  400)["message"]
    error_of(client.get("/api/traces/t999999/npz"), 404)
    error_of(client.get("/api/traces/..%2F..%2Fetc/npz"), 404)
    error_of(client.get(f"/api/traces/{tid}/stages/99/explain"), 404)
    error_of(client.get(f"/api/traces/{tid}/stages/0/explain", params={"row": 9999}), 404)
    error_of(client.get(f"/api/traces/{tid}/stages/0/explain", params={"channel": -1}), 422)
    error_of(client.get(f"/api/traces/{tid}/stages/0/channels", params={"start": 3}), 404)
    error_of(client.get(f"/api/traces/{tid}/stages/0/png", params={"cmap": "jet"}), 400)
    error_of(client.get("/api/nothing"), 404)
    # still answering
    r = client.post("/api/traces", json={"image": "cat", "model": "toy", "spec": "conv(1, 3x3)"})
    assert r.status_code == 200 and unpack(r.content)[0]["stages"][0]["shape"] == [1, 298, 449]


def test_upload_size_limit():
    with TestClient(create_app(max_upload_bytes=1000)) as c:
        rng = np.random.default_rng(0)
        noise = png_bytes(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
        assert len(noise) > 100_000  # refused from its Content-Length, before it is read
        body = error_of(c.post("/api/images", files={"file": ("big.png", noise)}), 413)
        assert "the limit is 1,000" in body["message"]
        small = png_bytes(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
        assert 1000 < len(small) < 60_000  # refused when read
        body = error_of(c.post("/api/images", files={"file": ("mid.png", small)}), 413)
        assert "limit of 1,000 bytes" in body["message"]
        ok = png_bytes(np.zeros((4, 4, 3), np.uint8))
        assert c.post("/api/images", files={"file": ("ok.png", ok)}).status_code == 200


def test_host_header_guard():
    with TestClient(create_app(allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 400


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    error_of(client.get("/static/../app.py"), 404)


# -- the serve command ---------------------------------------------------------------------------
def _serve_args(*argv):
    from convlens.cli import serve as cli
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    return cli, parser.parse_args(["serve", *argv])


def test_serve_refuses_a_missing_model_and_a_busy_port(tmp_path):
    cli, args = _serve_args("--model", str(tmp_path / "nope.pt"), "--port", "0")
    with pytest.raises(ConvlensError, match="nope.pt: no such model file"):
        cli.run(args)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cli, args = _serve_args("--port", str(busy.getsockname()[1]))
        with pytest.raises(ConvlensError, match="cannot listen on 127.0.0.1"):
            cli.run(args)
