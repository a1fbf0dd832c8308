"""Layer statistics: every number equals a direct NumPy computation on hand-set stages."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import convlens
from convlens import cli
from convlens.errors import TraceError
from convlens.analysis.stats import COLUMNS, StatsTable
from convlens.trace import Stage, Trace


@pytest.fixture
def stats_cli(monkeypatch):
    return cli.main


def hand_trace() -> Trace:
    """Batch of 2.  conv: signed; relu: channel 1 zero in both images, channel 2 zero in
    image 0 only; dense: unit 0 zero in both images, unit 2 in image 1 only."""
    rng = np.random.default_rng(7)
    conv = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    relu = np.maximum(conv, 0)
    relu[:, 1] = 0
    relu[0, 2] = 0
    relu[1, 2] = np.abs(relu[1, 2]) + 0.5
    dense = np.array([[0.0, 1.5, -2.0, 3.0], [0.0, -1.0, 0.0, 0.25]], dtype=np.float32)
    stages = [Stage(0, "conv", "conv", "Conv2d", conv), Stage(1, "relu", "activation", "ReLU", relu),
              Stage(2, "fc", "dense", "Linear", dense)]
    return Trace(stages, np.zeros((2, 4, 5, 3), np.float32), "numpy", "hand")


def expected(x: np.ndarray) -> dict:
    x = x.astype(np.float64)
    per_channel = [np.all(np.take(x, c, axis=1) == 0) for c in range(x.shape[1])]
    return {"values": x.size, "mean": x.mean(), "std": x.std(), "min": x.min(), "max": x.max(),
            "zeros": np.count_nonzero(x == 0) / x.size, "dead_channels": np.mean(per_channel)}


def test_stats_over_the_batch_equal_numpy():
    trace = hand_trace()
    table = trace.stats()
    assert isinstance(table, StatsTable) and len(table) == 3 and table.scope == "all images"
    for row, stage in zip(table, trace.stages):
        assert (row["index"], row["name"], row["kind"], row["op"], row["shape"]) == \
            (stage.index, stage.name, stage.kind, stage.op, stage.shape_str)
        for key, value in expected(stage.output).items():
            assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (stage.name, key)
    # the hand-set facts, stated plainly
    assert table["relu"]["dead_channels"] == pytest.approx(1 / 3)  # only channel 1 in both
    assert table["fc"]["dead_channels"] == pytest.approx(1 / 4)   # only unit 0 in both
    assert table["fc"]["zeros"] == pytest.approx(3 / 8)
    assert table["conv"]["zeros"] == 0.0


def test_stats_of_one_image_use_that_image_only():
    trace = hand_trace()
    for i in (0, 1):
        table = trace.stats(image=i)
        assert table.scope == f"image {i}"
        for row, stage in zip(table, trace.stages):
            for key, value in expected(stage.output[i:i + 1]).items():
                assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert trace.stats(0)["relu"]["dead_channels"] == pytest.approx(2 / 3)  # channels 1 and 2
    assert trace.stats(1)["fc"]["dead_channels"] == pytest.approx(2 / 4)    # units 0 and 2
    with pytest.raises(TraceError, match=r"image index 2 is out of range.*0\.\.1"):
        trace.stats(image=2)


def test_csv_json_and_text_carry_the_same_numbers():
    table = hand_trace().stats()
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert list(rows[0]) == list(COLUMNS)
    for parsed, row in zip(rows, table):
        for c in ("mean", "std", "min", "max", "zeros", "dead_channels"):
            assert float(parsed[c]) == row[c]  # repr round-trips exactly
        assert parsed["name"] == row["name"] and int(parsed["values"]) == row["values"]
    doc = json.loads(table.to_json())
    assert doc["columns"] == list(COLUMNS) and doc["scope"] == "all images"
    assert [r["mean"] for r in doc["rows"]] == table.column("mean")
    text = str(table)
    assert text.splitlines()[0] == "layer statistics of hand (all images)"
    assert "relu" in text and "33.3%" in text and "37.5%" in text
    with pytest.raises(TraceError, match="unknown statistics column 'avg'"):
        table.column("avg")


def test_relu_zeros_on_a_real_trace_match_the_outputs():
    trace = convlens.make_trace(convlens.cat()[:60, :80], net="conv(4, 3x3) relu maxpool(2)",
                                seed=1)
    relu = trace["relu1"].output
    row = trace.stats()["relu1"]
    assert row["zeros"] == np.count_nonzero(relu == 0) / relu.size
    assert row["min"] == 0.0 and row["max"] == float(relu.max())


def test_stats_cli_writes_csv_and_json(tmp_path, stats_cli, capsys):
    from PIL import Image

    img = tmp_path / "cat.png"
    Image.fromarray(np.round(convlens.cat()[:50, :70] * 255).astype(np.uint8)).save(img)
    spec = "conv(2, 3x3) relu"
    assert stats_cli(["stats", str(img), "--net", spec, "--format", "csv", "-o",
                      str(tmp_path / "s.csv")]) == 0
    ref = convlens.make_trace(convlens.load_image(img), net=spec).stats()
    rows = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert [float(r["zeros"]) for r in rows] == ref.column("zeros")
    assert "wrote statistics of 2 stages" in capsys.readouterr().out
    # a saved trace, one image, JSON on stdout
    trace = hand_trace()
    trace.save(tmp_path / "t.npz")
    assert stats_cli(["stats", "--trace", str(tmp_path / "t.npz"), "--image", "1",
                      "--format", "json", "--layers", "fc"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scope"] == "image 1" and [r["name"] for r in doc["rows"]] == ["fc"]
    assert doc["rows"][0]["dead_channels"] == 0.5


def test_stats_cli_errors_are_one_line(tmp_path, stats_cli, capsys):
    assert stats_cli(["stats", "--net", "relu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give at least one image file" in err
