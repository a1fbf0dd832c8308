"""`convlens explain ...` through its own parser, and the demo's explanations section."""
from __future__ import annotations

import argparse
import sys
import types

import numpy as np
import pytest
from PIL import Image
from test_explain_support import numpy_trace

from convlens.errors import ConvlensError
from convlens.cli import explain as cli
from convlens.demo.explain import demo_section


def parse(*argv):
    parser = argparse.ArgumentParser(prog="convlens")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["explain", *argv])


@pytest.fixture
def fake_pipeline(monkeypatch):
    """convlens.pipeline.make_trace stand-in: the spec on a small random image."""
    calls = []

    def make_trace(images, *, net=None, model=None, backend="torch", seed=0, layers=None,
                   preprocess=None, weights=None, trust_model_code=False):
        calls.append(dict(images=images, net=net, model=model, backend=backend, seed=seed,
                          preprocess=preprocess))
        x = np.random.default_rng(seed).uniform(size=(1, 3, 30, 40))
        return numpy_trace(net, x, seed)

    monkeypatch.setitem(sys.modules, "convlens.pipeline", types.SimpleNamespace(make_trace=make_trace))
    return calls


def test_conv_default(tmp_path, capsys):
    assert cli.run(parse("conv", "--out", str(tmp_path), "--svg")) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "conv.gif") in printed
    with Image.open(tmp_path / "conv.gif") as im:
        assert im.n_frames == 9
    assert len(list((tmp_path / "conv_frames").glob("*.png"))) == 9
    assert "= 4" in (tmp_path / "conv.svg").read_text()


def test_conv_custom_matrices(tmp_path):
    cli.run(parse("conv", "--input", "1,2,0;0,1,3;2,2,1", "--kernel", "1,0;0,-1", "--bias", "1",
                  "--out", str(tmp_path)))
    assert len(list((tmp_path / "conv_frames").glob("*.png"))) == 4


def test_pool_default_and_errors(tmp_path):
    cli.run(parse("pool", "--mode", "avg", "--pool", "3", "--stride", "2", "--padding", "1",
                  "--input", "1,2,3,4;5,6,7,8;9,10,11,12;13,14,15,16", "--out", str(tmp_path)))
    assert (tmp_path / "avgpool.gif").exists()
    with pytest.raises(ConvlensError, match="rows of numbers"):
        cli.run(parse("pool", "--input", "1,a;2", "--out", str(tmp_path)))
    with pytest.raises(ConvlensError, match="valid or same"):
        cli.run(parse("pool", "--padding", "lots", "--out", str(tmp_path)))


def test_real_network_stages(tmp_path, fake_pipeline, capsys):
    net = "conv(3, 3x3) relu maxpool(5)"
    cli.run(parse("conv", "--net", net, "--stage", "conv1", "--channel", "2", "--at", "10,20",
                  "--out", str(tmp_path)))
    assert fake_pipeline[0]["net"] == net and fake_pipeline[0]["preprocess"] is None
    import convlens
    np.testing.assert_array_equal(fake_pipeline[0]["images"][0], convlens.cat())  # the default
    assert (tmp_path / "conv_conv1_ch2.gif").exists()
    cli.run(parse("pool", "--net", net, "--stage", "maxpool1", "--at", "1,2", "--out", str(tmp_path)))
    assert (tmp_path / "pool_maxpool1_ch0.gif").exists()
    cli.run(parse("activations", "--net", net, "--stage", "relu1", "--out", str(tmp_path)))
    assert (tmp_path / "histogram_relu1.png").exists() and (tmp_path / "activations.png").exists()
    with pytest.raises(ConvlensError, match="conv stages are: conv1"):
        cli.run(parse("conv", "--net", net, "--out", str(tmp_path)))


def test_architecture_receptive_field_and_shapes(tmp_path, capsys, fake_pipeline):
    cli.run(parse("architecture", "alexnet", "--out", str(tmp_path)))
    assert "55x55x96" in (tmp_path / "architecture.svg").read_text()
    cli.run(parse("receptive-field", "alexnet", "--stage", "conv2", "--at", "0,0", "--out", str(tmp_path)))
    out = capsys.readouterr().out
    assert "conv2 at (0, 0): input rows -18..32, cols -18..32 (51x51 pixels)" in out
    assert (tmp_path / "receptive_field_growth.png").exists()
    cli.run(parse("receptive-field", "--net", "conv(2, 3x3) maxpool(2)", "--out", str(tmp_path)))
    assert (tmp_path / "receptive_field_maxpool1.png").exists()
    cli.run(parse("shapes", "conv(3, 3x3) relu maxpool(5)", "--input-shape", "3,300,451"))
    assert "298x449x3 -> 59x89x3" in capsys.readouterr().out
    with pytest.raises(ConvlensError, match="C,H,W"):
        cli.run(parse("shapes", "maxpool(2)", "--input-shape", "3,4"))
    with pytest.raises(ConvlensError, match="give a network"):
        cli.run(parse("architecture", "--out", str(tmp_path)))


def test_every_subcommand_has_an_example():
    parser = argparse.ArgumentParser(prog="convlens")
    top = cli.add_parser(parser.add_subparsers(dest="command"))
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"conv", "pool", "activations", "architecture", "receptive-field"}
    for name, p in sub.choices.items():
        assert f"convlens explain {name}" in p.format_help(), name


def test_demo_section(tmp_path):
    cat = np.asarray(Image.open(__import__("importlib.resources").resources.files("convlens")
                                / "data" / "chelsea.png").convert("RGB"), dtype=np.float32) / 255
    x = np.moveaxis(cat, -1, 0)[None]
    items = demo_section(tmp_path, lambda spec: numpy_trace(spec, x))  # timed in bench/
    assert len(items) >= 10
    for item in items:
        assert set(item) == {"title", "file", "caption"}
        assert (tmp_path / item["file"]).stat().st_size > 1000
    captions = " ".join(i["caption"] for i in items)
    assert "[[4,3,4], [2,4,3], [2,3,4]]" in captions and "298x449 -> 59x89" in captions


def test_import_is_light():
    import subprocess

    code = ("import sys, convlens.explain, convlens.cli.explain; "
            "print(sorted(m for m in ('torch', 'keras', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
