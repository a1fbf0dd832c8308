"""Export: stage/channel PNGs, the PNG folder + manifest round trip, the journey GIF."""
import json

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens import export, render
from convlens.render.scale import Scale
from convlens.trace import Stage, Trace


def trace_of(batch: int = 1) -> Trace:
    rng = np.random.default_rng(7)
    conv = rng.normal(0, 3, size=(batch, 5, 6, 7)).astype(np.float32)
    conv[:, 2] = 1.25                                   # a constant channel
    relu = np.maximum(conv, 0)
    flat = rng.normal(0, 1, size=(batch, 9)).astype(np.float32)
    stages = [
        Stage(0, "conv1", "conv", "Conv2d", conv, params={"kernel_size": (3, 3)}, source=-1),
        Stage(1, "relu/1", "activation", "ReLU", relu, params={"function": "relu"}, source=0),
        Stage(2, "fc", "dense", "Linear", flat, source=1),
    ]
    image = rng.uniform(0, 1, size=(batch, 6, 7, 3)).astype(np.float32)
    return Trace(stages, image, "torch", "tiny", preprocessing=[{"op": "layout", "to": "NCHW"}],
                 meta={"seed": 7})


def test_folder_round_trip_within_half_a_grey_level(tmp_path):
    tr = trace_of(batch=2)
    manifest = export.to_folder(tr, tmp_path / "pngs")
    back = export.from_folder(tmp_path / "pngs")
    assert back.names == tr.names and back.model_name == "tiny" and back.meta == tr.meta
    assert back.preprocessing == tr.preprocessing
    assert back["conv1"].params == {"kernel_size": (3, 3)}
    for a, b in zip(tr.stages, back.stages, strict=True):
        x = a.output.astype(np.float64)
        axes = (2, 3) if x.ndim == 4 else (1,)
        span = x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)
        assert b.output.shape == x.shape and b.output.dtype == np.float32
        err = np.abs(b.output - x)
        assert np.all(err <= span / 510 + 1e-6 * np.abs(x) + 1e-7)
    assert np.array_equal(back["conv1"].output[:, 2], tr["conv1"].output[:, 2])  # constant
    assert np.all(np.abs(back.input - tr.input) <= 1 / 510 + 1e-7)
    m = json.loads(manifest.read_text())
    assert m["inputs"] == ["input.png", "input_1.png"]
    rec = m["stages"][1]
    assert rec["files"] == ["001_relu_1_img0.png", "001_relu_1_img1.png"] and rec["cols"] == 3


def test_folder_pixels_follow_the_manifest_rule(tmp_path):
    tr = trace_of()
    export.to_folder(tr, tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    rec = m["stages"][0]
    x = tr["conv1"].output[0].astype(np.float64)
    q = np.asarray(Image.open(tmp_path / rec["files"][0]))
    assert q.shape == (2 * 6, 3 * 7) and q.dtype == np.uint8       # 5 maps, 3 per row
    for c in range(5):
        lo, hi = rec["scales"][0][c]
        assert (lo, hi) == (float(x[c].min()), float(x[c].max()))
        r, k = divmod(c, 3)
        tile = q[r * 6:(r + 1) * 6, k * 7:(k + 1) * 7]
        want = np.zeros((6, 7)) if hi == lo else np.floor((x[c] - lo) / (hi - lo) * 255 + 0.5)
        assert np.array_equal(tile, want)
    fc = np.asarray(Image.open(tmp_path / "002_fc.png"))
    assert fc.shape == (1, 9) and fc.min() == 0 and fc.max() == 255


def test_values_on_the_grey_grid_come_back_exactly(tmp_path):
    grid = (np.arange(256, dtype=np.float32) / 255 * 2.0 - 1.0).reshape(1, 1, 16, 16)
    tr = Trace([Stage(0, "g", "conv", "Conv2d", grid)], np.zeros((1, 16, 16, 3), np.float32),
               "torch", "grid")
    export.to_folder(tr, tmp_path)
    back = export.from_folder(tmp_path)
    assert np.allclose(back["g"].output, grid, rtol=0, atol=1e-6)


def test_from_folder_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(convlens.TraceError, match="manifest.json: no such file"):
        export.from_folder(tmp_path)
    export.to_folder(trace_of(), tmp_path)
    (tmp_path / "000_conv1.png").unlink()
    with pytest.raises(convlens.TraceError, match="000_conv1.png: missing"):
        export.from_folder(tmp_path)
    export.to_folder(trace_of(), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["stages"][2]["files"] = []
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(convlens.TraceError, match="damaged manifest.*lists 0 files for a batch"):
        export.from_folder(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(convlens.TraceError, match="expected 'convlens-png-folder' version 1"):
        export.from_folder(tmp_path)


def test_stage_and_channel_pngs(tmp_path):
    tr = trace_of()
    p = export.save_stage(tr, tmp_path / "s.png", layer="relu/1", norm="map")
    assert np.array_equal(np.asarray(Image.open(p).convert("RGB")),
                          render.stage(tr["relu/1"], norm="map").to_array())
    p = export.save_channel(tr["conv1"], 3, tmp_path / "c.png")
    assert np.array_equal(np.asarray(Image.open(p).convert("RGB")),
                          render.heatmap(tr["conv1"], 3).to_array())
    p = export.save_channel(tr["conv1"], 3, tmp_path / "plain.png", plain=True, zoom=2)
    x = tr["conv1"].output
    scale = Scale.from_range(float(x.min()), float(x.max()), "stage")
    want = np.repeat(np.repeat(scale.colorize(x[0, 3]), 2, axis=0), 2, axis=1)
    assert np.array_equal(np.asarray(Image.open(p).convert("RGB")), want)
    with pytest.raises(convlens.RenderError, match="channel 5 is out of range"):
        export.save_channel(tr["conv1"], 5, tmp_path / "x.png")


def test_journey_gif_one_labelled_frame_per_stage(tmp_path):
    tr = trace_of()
    p = export.journey_gif(tr, tmp_path / "j.gif", tile=64, duration=500)
    frames = export.journey_frames(tr, tile=64)
    with Image.open(p) as g:
        assert g.n_frames == len(tr) + 1 == len(frames)
        assert g.info["duration"] == 500 and g.info["loop"] == 0
        exact = 0
        for k, f in enumerate(frames):
            g.seek(k)
            assert g.size == f.size
            got = np.asarray(g.convert("RGB"))
            want = np.asarray(f)
            if len(np.unique(want.reshape(-1, 3), axis=0)) <= 256:  # fits a GIF palette
                assert np.array_equal(got, want)
                exact += 1
        assert exact >= 2
    again = export.journey_gif(tr, tmp_path / "k.gif", tile=64, duration=500)
    assert again.read_bytes() == p.read_bytes()
    with pytest.raises(convlens.RenderError, match="needs a convlens Trace"):
        export.journey_gif(tr["conv1"], tmp_path / "x.gif")
