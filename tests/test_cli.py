"""The command line end to end: exit codes, one-line errors, files written, the demo."""
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens.cli import main


@pytest.fixture
def cat_png(tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(np.round(convlens.cat()[:120, :160] * 255).astype(np.uint8)).save(path)
    return path


def test_run_with_a_spec_writes_stages_journey_and_trace(tmp_path, cat_png, capsys):
    out = tmp_path / "out"
    code = main(["run", str(cat_png), "--net", "conv(3, 3x3) relu maxpool(5)", "-o", str(out),
                 "--seed", "4"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00_conv1.png", "01_relu1.png", "02_maxpool1.png", "journey.png", "trace.npz"]
    trace = convlens.Trace.load(out / "trace.npz")
    ref = convlens.make_trace(convlens.load_image(cat_png), net="conv(3, 3x3) relu maxpool(5)",
                              seed=4)
    np.testing.assert_array_equal(trace.output, ref.output)
    stdout = capsys.readouterr().out
    assert "maxpool1" in stdout and "23x31x3" in stdout and "ReLU replaced every negative" in stdout


def test_run_batch_with_keras_backend_and_layer_selection(tmp_path, cat_png):
    other = tmp_path / "flip.png"
    Image.open(cat_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    out = tmp_path / "o"
    code = main(["run", str(cat_png), str(other), "--net", "conv(1, 3x3) relu", "--backend",
                 "keras", "--layers", "activation", "--norm", "map", "-o", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00_relu1_img0.png", "00_relu1_img1.png",
                                                         "journey.png"]


def test_run_with_a_keras_model_file(tmp_path, cat_png):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2D(2, 3, activation="relu", name="c")])
    model.save(tmp_path / "m.keras")
    assert main(["run", str(cat_png), "--model", str(tmp_path / "m.keras"), "-o",
                 str(tmp_path / "k")]) == 0
    assert convlens.Trace.load(tmp_path / "k" / "trace.npz").names == ["c", "c.relu"]


@pytest.mark.parametrize("args,message", [
    (["run", "{img}", "--net", "conv(3, 3x3) reluu", "-o", "{out}"], "unknown layer 'reluu'"),
    (["run", "{tmp}/missing.png", "--net", "relu", "-o", "{out}"], "missing.png"),
    (["run", "{bad}", "--net", "relu", "-o", "{out}"], "bad.png"),
    (["run", "{img}", "--model", "{tmp}/x.onnx", "-o", "{out}"], "no such model file"),
    (["run", "{img}", "--net", "conv(1, 200x200)", "-o", "{out}"], "too small for its 200x200"),
    (["run", "{img}", "-o", "{out}"], "one of the arguments --model --net is required"),
    (["run", "{img}", "--net", "relu", "--layers", "conv", "-o", "{out}"], "matches no stage"),
    (["frobnicate"], "'frobnicate' is not one of demo, run"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, cat_png, capsys, args, message):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    fill = {"img": str(cat_png), "out": str(tmp_path / "o"), "tmp": str(tmp_path),
            "bad": str(tmp_path / "bad.png")}
    code = _exit_code([a.format(**fill) for a in args])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def _exit_code(argv):
    """main()'s status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_help_shows_examples():
    for argv in (["--help"], ["run", "--help"], ["demo", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "convlens.cli", *argv], capture_output=True,
                              text=True)
        assert proc.returncode == 0
        assert "example" in proc.stdout and "convlens " in proc.stdout


def test_demo_writes_every_tutorial_experiment(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "convlens.cli", "demo", "-o", str(tmp_path / "d")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path / 'd'}" in proc.stdout and "15/15" in proc.stderr
    index = (tmp_path / "d" / "index.html").read_text()
    figures = re.findall(r"<figure id='exp(\d+)'>", index)
    assert figures[:15] == [str(i) for i in range(1, 16)]
    for i in range(1, 16):
        assert (tmp_path / "d" / f"{i:02d}_result.png").is_file()
    assert "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)" in index
    assert "59x89x1" in index          # conv(1, 3x3) maxpool(5): 298x449 -> 59x89
    assert "http://" not in index and "https://" not in index


def test_demo_is_deterministic(tmp_path):
    from convlens.demo.tutorial import run_demo

    run_demo(tmp_path / "a", progress=None)
    run_demo(tmp_path / "b", progress=None)
    for p in sorted((tmp_path / "a").glob("*.png")):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name
