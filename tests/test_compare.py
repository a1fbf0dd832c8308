"""convlens.compare: rows matched by name, one colour range per row, labels that say what
differs; random vs trained weights; `convlens compare`."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens import cli, render
from convlens.analysis.comparison import compare, difference, random_vs_trained, zoo_trace
from convlens.errors import RenderError
from convlens.render.colormaps import unit_to_index
from convlens.trace import Stage, Trace


@pytest.fixture
def main(monkeypatch):
    return cli.main


def trace(heat: np.ndarray, extra: str | None = None, image: float = 0.0, **meta) -> Trace:
    stages = [Stage(0, "conv", "conv", "Conv2d", np.asarray(heat, np.float32)[None, None]),
              Stage(1, "fc", "dense", "Linear", np.array([[1.0, -2.0]], np.float32))]
    if extra:
        stages.append(Stage(2, extra, "pool", "MaxPool2d", np.zeros((1, 1, 1, 1), np.float32)))
    return Trace(stages, np.full((1, 4, 4, 3), image, np.float32), "numpy", "net", meta=meta)


def tile_px(fig, stage: str, col: int, row: int, c: int) -> tuple[int, ...]:
    """Pixel of value (row, c) of ``stage``'s heatmap in column ``col`` (0 = A, 1 = B)."""
    panels = [p for p in fig.meta["panels"] if p.get("stage") == stage]
    tile = sorted(panels, key=lambda p: p["box"][0])[col]["tiles"][0]
    z = int(tile["zoom"])
    x0, y0, _, _ = tile["box"]
    return tuple(int(v) for v in fig.to_array()[y0 + row * z + z // 2, x0 + c * z + z // 2])


def heat(u: float, cmap: str = "RdBu_r") -> tuple[int, ...]:
    return tuple(int(v) for v in render.lut(cmap)[unit_to_index(np.array([u]))[0]])


def test_rows_share_one_range_and_state_the_difference():
    a = np.array([[-1.0, 0.0], [0.5, 1.0]])
    b = np.array([[4.0, 0.0], [-2.0, 2.0]])
    fig = compare(trace(a, "only_a", weights="random", seed=3), trace(b, weights="trained"))
    assert fig.meta["labels"] == ["random weights (seed 3)", "trained weights"]
    assert fig.meta["differs"] == "weights"
    rows = {r["stage"]: r for r in fig.meta["rows"]}
    assert list(rows) == ["conv", "fc"] and fig.meta["only_a"] == ["only_a"]
    assert rows["conv"]["range"] == [-2.0, 4.0]
    assert rows["conv"]["mean_abs_diff"] == pytest.approx(np.abs(a - b).mean())
    assert rows["fc"]["mean_abs_diff"] == 0.0
    # both columns on the row's symmetric scale [-4, 4]: the same value, the same colour
    for col, arr in ((0, a), (1, b)):
        for r in range(2):
            for c in range(2):
                assert tile_px(fig, "conv", col, r, c) == heat((arr[r, c] + 4.0) / 8.0)
    assert tile_px(fig, "conv", 0, 0, 1) == tile_px(fig, "conv", 1, 0, 1) == heat(0.5)
    conv_panels = [p for p in fig.meta["panels"] if p.get("stage") == "conv"]
    assert all((p["vmin"], p["vmax"]) == (-4.0, 4.0) for p in conv_panels)


def test_labels_say_which_image_or_network_differs():
    a, b = trace(np.ones((2, 2))), trace(np.ones((2, 2)), image=0.5)
    assert difference(a, b)[2] == "input image"
    assert difference(a, b)[:2] == ("first image 0 (4x4)", "second image 0 (4x4)")
    assert difference(a, a)[2].startswith("nothing")
    other = Trace(b.stages, b.input, "numpy", "other-net")
    assert difference(a, other) == ("net", "other-net", "network")
    fig = compare(a, b, labels=("left", "right"))
    assert fig.meta["labels"] == ["left", "right"] and fig.meta["differs"] == "input image"


def test_one_trace_of_two_images_and_errors():
    batch = Trace([Stage(0, "conv", "conv", "Conv2d", np.stack([np.ones((1, 2, 2)),
                                                                -np.ones((1, 2, 2))]))],
                  np.zeros((2, 2, 2, 3), np.float32), "numpy", "net")
    fig = compare(batch)
    assert fig.meta["images"] == [0, 1] and fig.meta["rows"][0]["mean_abs_diff"] == 2.0
    with pytest.raises(RenderError, match="share no stage name"):
        compare(trace(np.ones((2, 2))), Trace([Stage(0, "x", "conv", "C", np.ones((1, 1, 1, 1)))],
                                              np.zeros((1, 1, 1, 3), np.float32), "numpy", "n"))
    with pytest.raises(RenderError, match="compares two of its images, but it holds 1"):
        compare(trace(np.ones((2, 2))))
    with pytest.raises(RenderError, match="labels must be two strings"):
        compare(batch, labels="ab")


def test_random_vs_trained_lenet_on_a_real_digit():
    digit = convlens.digits(3)[0][2]
    random, trained = random_vs_trained(digit, "lenet", seed=5)
    assert (random.meta["weights"], random.meta["seed"], trained.meta["weights"]) == \
        ("random", 5, "trained")
    ref = convlens.make_trace(digit, model="zoo:lenet")
    np.testing.assert_array_equal(trained.output, ref.output)
    again = zoo_trace(digit, "lenet", "random", seed=5)
    np.testing.assert_array_equal(random["conv1"].weights["weight"],
                                  again["conv1"].weights["weight"])
    assert not np.array_equal(random["conv1"].weights["weight"], trained["conv1"].weights["weight"])
    fig = compare(random, trained, layers="conv,softmax")
    assert [r["stage"] for r in fig.meta["rows"]] == ["conv1", "conv2", "softmax"]
    assert trained.meta["predictions"][0][0]["name"] == "2"
    pred_panels = [p for p in fig.meta["panels"] if p.get("kind") == "predictions"]
    assert [p["predictions"][0]["probability"] for p in pred_panels] == pytest.approx(
        [random.predictions(1)[0][0].probability, trained.predictions(1)[0][0].probability])


def _png(path, arr):
    Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(path)
    return str(path)


def test_cli_compare_random_vs_trained_and_two_images(tmp_path, main, capsys):
    digit = np.repeat(np.kron(convlens.digits(3)[0][2][..., 0], np.ones((4, 4)))[..., None], 3, -1)
    d = _png(tmp_path / "digit.png", digit)
    assert main(["compare", d, "--model", "zoo:lenet", "--layers", "conv1,fc3",
                 "-o", str(tmp_path / "rt.png")]) == 0
    out = capsys.readouterr().out
    assert "A: random weights (seed 0)\nB: trained weights\nwhat differs: weights" in out
    assert "conv1" in out and "fc3" in out and (tmp_path / "rt.png").is_file()
    cat = convlens.cat()[:40, :60]
    a, b = _png(tmp_path / "a.png", cat), _png(tmp_path / "b.png", cat[::-1])
    assert main(["compare", a, b, "--net", "conv(2, 3x3) relu", "-o", str(tmp_path / "ab.png")]) == 0
    out = capsys.readouterr().out
    assert "A: a.png (40x60)\nB: b.png (40x60)\nwhat differs: input image" in out
    assert main(["compare", a, "--net", "relu", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a zoo model" in err
