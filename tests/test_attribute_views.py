"""Top stimuli, overlays, the sanity metrics and the ``convlens attribute`` command."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens import attribute
from convlens.cli.attribute import add_parser
from convlens.errors import ConvlensError, ModelError, RenderError
from convlens.preprocess import Preprocess
from convlens.render.colormaps import lut

from attribute_models import dot_detector, dot_image, quadrant_net


# -- top stimuli ------------------------------------------------------------------------
def test_top_stimulus_is_the_bright_dot_with_its_exact_receptive_field():
    ts = attribute.top_stimuli(dot_detector(), dot_image(12, 16, (4, 11)), "0", 0, k=3)
    first = ts.items[0]
    assert first.image == 0 and first.position == (3, 10)      # valid conv: centre at (4, 11)
    assert first.value == pytest.approx(1.0 + 8 * 0.05 * 0.1)
    assert first.box == (3, 10, 5, 12)                         # rows 3..5, cols 10..12
    np.testing.assert_array_equal(first.crop, dot_image(12, 16, (4, 11))[3:6, 10:13])
    assert ts.field_size == (3, 3) and ts.jump == (1, 1)
    # no later pick is a neighbour of an earlier one (min_distance=1)
    for a in range(3):
        for b in range(a):
            pa, pb = ts.items[a].position, ts.items[b].position
            assert max(abs(pa[0] - pb[0]), abs(pa[1] - pb[1])) > 1


def test_top_stimuli_boxes_are_scaled_back_to_the_image_when_preprocessing_resized_it():
    big = np.kron(dot_image(12, 16, (4, 11)), np.ones((2, 2, 1))).astype(np.float32)  # 24x32
    ts = attribute.top_stimuli(dot_detector(), [big, big[::-1]], "1", 0, k=2,
                               preprocess=Preprocess(size=(12, 16)))
    assert [s.image for s in ts.items] == [0, 1] or [s.image for s in ts.items] == [1, 0]
    s = next(s for s in ts.items if s.image == 0)
    assert s.position == (3, 10) and s.box == (6, 20, 11, 25)  # model rows 3..5 -> 6..11
    assert s.crop.shape == (6, 6, 3)
    fig = attribute.stimuli_figure(ts)
    assert [it["rect"] for it in fig.meta["items"]] == [it.box for it in ts.items]


def test_top_stimuli_from_a_trace_and_errors():
    trace = convlens.capture(dot_detector(), dot_image())
    ts = attribute.top_stimuli(trace, None, "1", 0, k=1)
    assert ts.items[0].position == (3, 10)
    with pytest.raises(ModelError, match=r"channel 2 is out of range; 1 has 1 channels"):
        attribute.top_stimuli(trace, None, "1", 2)
    with pytest.raises(ModelError, match="a Trace brings its own images"):
        attribute.top_stimuli(trace, dot_image(), "1", 0)


# -- overlays ---------------------------------------------------------------------------
def test_overlay_states_its_scale_and_draws_the_top_colour_at_the_peak():
    a = attribute.gradcam(quadrant_net(), dot_image(12, 16))
    fig = attribute.overlay(a, size=64)
    rows = [r for r in fig.meta["panels"] if "row" in r]
    assert rows[0]["vmin"] == 0.0 and rows[0]["vmax"] == pytest.approx(float(a.maps.max()))
    assert rows[0]["cmap"] == "viridis" and rows[0]["labels"][0] == "0"
    tiles = {t["view"]: t for t in fig.meta["panels"] if "view" in t and "row" not in t}
    x0, y0, x1, y1 = tiles["map"]["box"]
    px = fig.to_array()[y0:y1, x0:x1].reshape(-1, 3)
    assert (px == lut("viridis")[255]).all(axis=1).any()
    assert fig.to_png_bytes() == attribute.overlay(a, size=64).to_png_bytes()


def test_signed_maps_get_a_symmetric_diverging_scale_and_clipping_is_stated():
    g = attribute.gradient_x_input(quadrant_net(), dot_image(12, 16), target=0)
    fig = attribute.overlay(g, size=64)
    row = [r for r in fig.meta["panels"] if "row" in r][0]
    top = float(np.percentile(np.abs(g.maps[0]), 99.5))
    assert row["cmap"] == "RdBu_r" and row["vmin"] == pytest.approx(-top)
    assert row["vmax"] == pytest.approx(top)
    full = attribute.overlay(g, clip=None, size=64)
    row = [r for r in full.meta["panels"] if "row" in r][0]
    assert row["vmax"] == pytest.approx(float(np.abs(g.maps).max()))
    with pytest.raises(RenderError, match="image 3 is out of range"):
        attribute.overlay(g, images=3)


# -- sanity metrics ---------------------------------------------------------------------
def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(6, 7)), 1)
    b = np.maximum(a + rng.normal(scale=0.5, size=a.shape), 0)  # many ties at 0
    assert attribute.spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel())[0])
    assert attribute.spearman(a, a) == pytest.approx(1.0)
    assert attribute.spearman(a, -a) == pytest.approx(-1.0)
    assert attribute.spearman(a, np.zeros_like(a)) == 0.0


def test_ssim_matches_a_window_by_window_reference():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=(9, 10)), rng.uniform(size=(9, 10))
    x, y = a / a.max(), b / b.max()
    vals = []
    for i in range(9 - 6):
        for j in range(10 - 6):
            p, q = x[i:i + 7, j:j + 7], y[i:i + 7, j:j + 7]
            cov = ((p - p.mean()) * (q - q.mean())).mean()
            vals.append((2 * p.mean() * q.mean() + 1e-4) * (2 * cov + 9e-4)
                        / ((p.mean() ** 2 + q.mean() ** 2 + 1e-4) * (p.var() + q.var() + 9e-4)))
    assert attribute.ssim(a, b) == pytest.approx(np.mean(vals), rel=1e-9)
    assert attribute.ssim(a, 3 * a) == pytest.approx(1.0)


def test_sanity_on_a_small_net_reports_every_cut(tmp_path):
    rep = attribute.sanity(quadrant_net(), dot_image(12, 16), steps=5, seed=0)
    assert rep.meta["cascade"] == ["5", "0"]  # the layers with weights, output first
    assert [s.layers for s in rep.steps] == [1, 2]
    again = attribute.sanity(quadrant_net(), dot_image(12, 16), steps=5, seed=0)
    assert [s.spearman for s in rep.steps] == [s.spearman for s in again.steps]


# -- the command line -------------------------------------------------------------------
def _main(argv):
    p = argparse.ArgumentParser(prog="convlens")
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return args.handler(args)


def test_cli_gradcam_writes_the_figure_maps_and_summary(tmp_path, capsys):
    d, _ = convlens.digits(2)
    files = []
    for i, im in enumerate(d):
        f = tmp_path / f"d{i}.png"
        Image.fromarray((im * 255).round().astype(np.uint8)).save(f)
        files.append(str(f))
    out = tmp_path / "out"
    assert _main(["attribute", *files, "--model", "zoo:lenet", "--stage", "conv2",
                  "--method", "gradcam++", "-o", str(out)]) == 0
    meta = json.loads((out / "gradcampp.json").read_text())
    maps = np.load(out / "gradcampp.npz")["maps"]
    want = attribute.gradcam_plus_plus(convlens.load_model("zoo:lenet"), files, "conv2")
    assert meta["targets"] == want.targets and meta["stage"] == "conv2"
    np.testing.assert_allclose(maps, want.maps, rtol=1e-6)
    assert (out / "gradcampp.png").is_file()
    assert "image 1: class" in capsys.readouterr().out


def test_cli_maximize_and_errors(tmp_path, capsys):
    out = tmp_path / "m"
    assert _main(["attribute", "--model", "zoo:lenet", "--method", "maximize", "--stage", "conv2",
                  "--channel", "1,2", "--steps", "2", "-o", str(out)]) == 0
    assert (out / "maximize.png").is_file() and (out / "maximize_2.png").is_file()
    assert "conv2 1:" in capsys.readouterr().out
    with pytest.raises(ConvlensError, match="needs --channel"):
        _main(["attribute", "--model", "zoo:lenet", "--method", "maximize", "-o", str(out)])
    with pytest.raises(ConvlensError, match=r"stages that can: conv1, relu1, pool1, conv2, relu2, pool2$"):
        _main(["attribute", "--model", "zoo:lenet", "--stage", "fc1", "-o", str(out)])
