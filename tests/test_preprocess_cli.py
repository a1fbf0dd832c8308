"""Preprocessing is the user's to say (flags and presets on every command, recorded in the
Trace), the same for run, predict and attribute; big inputs are announced and shrinkable."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens.cli import main
from convlens.preprocess import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, Preprocess, describe_steps


@pytest.fixture
def img_png(tmp_path):
    rng = np.random.default_rng(5)
    arr = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(arr).save(path)
    return path, arr.astype(np.float64) / 255.0


def _model_input(tmp_path, img, *flags):
    out = tmp_path / "out"
    assert main(["run", str(img), "--net", "relu", "-o", str(out), *flags]) == 0
    return convlens.Trace.load(out / "trace.npz")


@pytest.mark.parametrize("flags,reference", [
    (["--preprocess", "caffe"], lambda x: x[..., ::-1] * 255.0 - np.array(CAFFE_MEAN_BGR)),
    (["--preprocess", "imagenet"], lambda x: (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)),
    (["--preprocess", "keras-mobilenet"], lambda x: x * 2.0 - 1.0),
    (["--scale=-1..1"], lambda x: x * 2.0 - 1.0),
    (["--scale", "0..255", "--mean", "1,2,3", "--std", "2"],
     lambda x: (x * 255.0 - np.array([1.0, 2.0, 3.0])) / 2.0),
    (["--bgr"], lambda x: x[..., ::-1]),
    (["--gray"], lambda x: (x @ np.array([0.299, 0.587, 0.114]))[..., None]),
])
def test_flags_and_presets_give_the_numpy_reference(tmp_path, img_png, flags, reference):
    path, x = img_png
    trace = _model_input(tmp_path, path, *flags)
    want = reference(x).transpose(2, 0, 1)[None].astype(np.float32)
    np.testing.assert_allclose(trace.model_input, want, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(trace.stages[0].output, np.maximum(trace.model_input, 0))
    assert trace.preprocessing[-1] == {"op": "layout", "to": "NCHW"}


def test_size_resizes_and_is_recorded(tmp_path, img_png):
    path, _ = img_png
    trace = _model_input(tmp_path, path, "--size", "4x5")
    assert trace.model_input.shape == (1, 3, 4, 5)
    step = trace.preprocessing[0]
    assert (step["op"], list(step["from"]), list(step["to"])) == ("resize", [6, 7], [4, 5])
    assert describe_steps(trace.preprocessing) == "resize 6x7 -> 4x5"


def test_steps_read_as_one_line():
    _, steps = Preprocess.preset("caffe", size=(2, 2)).apply(np.zeros((1, 4, 4, 3), np.float32))
    assert describe_steps(steps) == ("resize 4x4 -> 2x2 · RGB -> BGR · scale x255 · normalize "
                                     "mean (103.939, 116.779, 123.68) std (1)")
    assert describe_steps([{"op": "layout", "to": "NCHW"}]) == "none"


def test_bad_preprocessing_is_one_line(tmp_path, img_png, capsys):
    path, _ = img_png
    for flags, message in ((["--gray", "--bgr"], "bgr=True with grayscale=True"),
                           (["--mean", "a,b"], "--mean must be numbers"),
                           (["--size", "4by4"], "--size must look like 224x224"),
                           (["--preprocess", "cafe"], "'cafe' is not one of none, imagenet")):
        try:
            code = main(["run", str(path), "--net", "relu", "-o", str(tmp_path / "o"), *flags])
        except SystemExit as exc:  # argparse's own check
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(convlens.ImageError, match="did you mean caffe"):
        Preprocess.preset("cafe")


def _dark_on_light_seven(tmp_path):
    images, labels = convlens.digits()
    seven = images[list(labels).index(7)]
    dark = 1.0 - np.kron(seven, np.ones((8, 8, 1)))  # 64x64, dark ink on white paper
    path = tmp_path / "seven.png"
    Image.fromarray((dark * 255).round().astype(np.uint8)).save(path)
    return path


def test_run_predict_and_attribute_see_the_same_lenet_input(tmp_path, capsys):
    path = _dark_on_light_seven(tmp_path)
    assert main(["predict", str(path), "--model", "zoo:lenet", "--format", "json"]) == 0
    import json
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert top["index"] == 7
    assert main(["run", str(path), "--model", "zoo:lenet", "-o", str(tmp_path / "r")]) == 0
    trace = convlens.Trace.load(tmp_path / "r" / "trace.npz")
    assert {"op": "invert"} in trace.preprocessing
    assert int(np.argmax(trace.output[0])) == 7
    assert main(["attribute", str(path), "--model", "zoo:lenet", "-o", str(tmp_path / "a")]) == 0
    meta = json.loads((tmp_path / "a" / "gradcam.json").read_text())
    assert meta["targets"] == [7]


def test_max_size_shrinks_while_decoding(tmp_path):
    big = (np.random.default_rng(0).random((300, 500, 3)) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(big).save(tmp_path / "big.png")
    for name in ("big.jpg", "big.png"):
        small = convlens.load_image(tmp_path / name, max_size=100)
        assert small.shape == (60, 100, 3) and small.dtype == np.float32
    png = convlens.load_image(tmp_path / "big.png", max_size=100)
    ref = np.asarray(Image.fromarray(big).resize((100, 60), Image.Resampling.BILINEAR,
                                                 reducing_gap=3.0), np.float32) / 255
    np.testing.assert_allclose(png, ref, atol=1e-6)
    same = convlens.load_image(tmp_path / "big.png", max_size=500)
    np.testing.assert_array_equal(same, convlens.load_image(tmp_path / "big.png"))
    with pytest.raises(convlens.ImageError, match="max_size=0 is not valid"):
        convlens.load_image(tmp_path / "big.png", max_size=0)


def test_big_input_is_announced_with_an_estimate(tmp_path, capsys, monkeypatch):
    from convlens.cli import common

    monkeypatch.setattr(common, "BIG_PIXELS", 100 * 100)
    arr = (np.random.default_rng(1).random((200, 300, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.png")
    assert main(["run", str(tmp_path / "p.png"), "--net", "conv(2, 3x3) relu", "-o",
                 str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    trace = convlens.Trace.load(tmp_path / "o" / "trace.npz")
    line = next(ln for ln in err.splitlines() if "MP)" in ln)
    # conv (2 x 198 x 298) + relu, float32, plus the input: the estimate is the real size
    real = trace.nbytes - trace.model_input.nbytes
    assert f"200x300 (0.1 MP)" in line and "--max-size 1024" in line
    mb = real / 2 ** 20
    assert f"about {mb:.0f} MB" in line
    assert main(["run", str(tmp_path / "p.png"), "--net", "conv(2, 3x3) relu", "--max-size",
                 "50", "-o", str(tmp_path / "s")]) == 0
    assert "MP)" not in capsys.readouterr().err
    assert convlens.Trace.load(tmp_path / "s" / "trace.npz").input.shape == (1, 33, 50, 3)


def test_a_file_over_the_limit_is_never_written_silently(tmp_path, monkeypatch, capsys):
    import convlens.trace as T
    import convlens.cli.run as R

    trace = convlens.make_trace(np.zeros((8, 8, 3), np.float32), net="relu")
    assert trace.nbytes == 8 * 8 * 3 * 4 * 3  # input, model input, one stage
    monkeypatch.setattr(T, "LARGE_FILE_BYTES", 100)
    with pytest.warns(UserWarning, match="about 0.0 GiB"):
        trace.save(tmp_path / "t.npz")
    monkeypatch.setattr(R, "LARGE_FILE_BYTES", 100)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "z.png")
    assert main(["run", str(tmp_path / "z.png"), "--net", "relu", "-o", str(tmp_path / "o")]) == 0
    assert "writing trace.npz of about" in capsys.readouterr().err


def test_a_preset_keeps_the_models_geometry():
    # LeNet takes 32x32 grey: a preset changes how values are scaled, not the size
    cat = convlens.cat()
    trace = convlens.make_trace(cat, model="zoo:lenet", preprocess={"preset": "keras-mobilenet"})
    assert trace.model_input.shape == (1, 1, 32, 32)
    grey = Preprocess(size=(32, 32), grayscale=True).apply(cat[None])[0]
    np.testing.assert_allclose(trace.model_input, grey * 2.0 - 1.0, atol=1e-6)
    with pytest.raises(convlens.ImageError, match="mean has 3 values; expected 1"):
        convlens.make_trace(cat, model="zoo:lenet", preprocess={"preset": "imagenet"})


def test_the_journey_gif_starts_with_what_the_network_saw(tmp_path):
    from convlens.export import journey_frames

    path = _dark_on_light_seven(tmp_path)      # white paper, dark ink
    trace = convlens.make_trace(str(path), model="zoo:lenet")
    first = np.asarray(journey_frames(trace, tile=128)[0].convert("L"), np.float64) / 255
    # LeNet saw it inverted: the picture in the first frame is mostly dark
    h, w = first.shape
    picture = first[int(h * 0.25):int(h * 0.7), 10:138]
    assert picture.mean() < 0.35
