"""Notebook views: Trace/Stage/Figure HTML and PNG reprs, and the ipywidgets explorer."""
import sys

import numpy as np
import pytest
from htmlcheck import Elements, rgb

import convlens
from convlens import render
from convlens.display import (
    ALL_CHANNELS, Explorer, StaticView, channel_gallery, explore, stage_html, trace_html,
)
from convlens.render.scale import Scale
from convlens.render.text import fmt
from convlens.trace import Stage, Trace

CLASSES = ["cat", "dog", "fish"]


def hand_trace(channels: int = 20) -> Trace:
    """conv (signed ramp, `channels` maps of 4x4) -> relu -> 1x1 pool -> dense -> softmax."""
    x = (np.arange(channels * 16, dtype=np.float32).reshape(1, channels, 4, 4) - 100.0) / 8
    logits = np.array([[0.5, 2.0, -1.0]], dtype=np.float32)
    probs = np.exp(logits) / np.exp(logits).sum()
    stages = [
        Stage(0, "conv1", "conv", "Conv2d", x, params={"kernel_size": (3, 3)}, source=-1),
        Stage(1, "relu1", "activation", "ReLU", np.maximum(x, 0), params={"function": "relu"},
              source=0),
        Stage(2, "gap", "pool", "AdaptiveAvgPool2d", np.maximum(x, 0).mean(axis=(2, 3),
              keepdims=True), source=1),
        Stage(3, "fc", "dense", "Linear", logits, source=2),
        Stage(4, "softmax", "activation", "Softmax", probs, source=3),
    ]
    image = np.linspace(0, 1, 6 * 5 * 3, dtype=np.float32).reshape(1, 6, 5, 3)
    return Trace(stages, image, "torch", "hand", meta={"class_names": CLASSES})


def test_stage_html_embeds_every_channel_first_16_visible_rest_lazy():
    tr = hand_trace(20)
    st = tr["conv1"]
    doc = Elements(st._repr_html_())
    imgs = doc.imgs()
    tiles = [(a, d) for a, d in imgs if a.get("class") == "cl-px"]
    bars = [a for a, _ in imgs if a.get("class") == "cl-bar"]
    assert len(tiles) == 20 and len(bars) == 1 and len(imgs) == 21
    assert [d for _, d in tiles] == [0] * 16 + [1] * 4          # the rest inside <details>
    assert all(a.get("loading") == "lazy" for a, d in tiles if d) and \
        not any("loading" in a for a, d in tiles if not d)
    assert [a["alt"] for a, _ in tiles] == [f"#{c}" for c in range(20)]
    assert "show all 20 channels (4 more)" in doc.text
    # each 4x4 map is stored as it is, coloured by the one stage scale
    scale = Scale.from_range(float(st.output.min()), float(st.output.max()), "stage")
    for c, (a, _) in enumerate(tiles):
        assert np.array_equal(rgb(a["src"]), scale.colorize(st.output[0, c]))
        assert a["width"] == "64"
    # the statistics row holds the real numbers
    assert fmt(float(st.output.min())) in doc.text and fmt(float(st.output.mean())) in doc.text


def test_gallery_shrinks_values_before_colouring_and_limits_channels():
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(1, 2, 8, 8)
    st = Stage(0, "c", "conv", "Conv2d", x)
    doc = Elements(channel_gallery(st, thumb=4, limit=1))
    tiles = [a for a, _ in doc.imgs() if a.get("class") == "cl-px"]
    assert len(tiles) == 1
    means = x[0, 0].reshape(4, 2, 4, 2).mean(axis=(1, 3))     # 2x2 area means
    scale = Scale.from_range(0.0, 127.0, "stage")
    assert np.array_equal(rgb(tiles[0]["src"]), scale.colorize(means))
    assert "channels 0..0 of 2 included (1 left out)" in doc.text


def test_gallery_per_map_norm_states_each_range():
    st = hand_trace(3)["conv1"]
    doc = Elements(channel_gallery(st, norm="map"))
    assert not [a for a, _ in doc.imgs() if a.get("class") == "cl-bar"]
    for c in range(3):
        assert Scale.for_data(st.output[0, c], "map").describe() in doc.text


def test_one_by_one_maps_are_drawn_as_bars():
    st = hand_trace(4)["gap"]
    doc = Elements(channel_gallery(st))
    (img,) = [a for a, _ in doc.imgs()]
    flat = Stage(st.index, st.name, st.kind, st.op, st.output.reshape(1, 4))
    assert np.array_equal(rgb(img["src"]), render.bars(flat).to_array())


def test_trace_html_cards_predictions_and_statistics():
    tr = hand_trace(6)
    doc = Elements(tr._repr_html_())
    cards = [(a, d) for a, d in doc.imgs() if a.get("class") == "cl-card"]
    assert [a["alt"].split(":")[0] for a, _ in cards] == ["input", *tr.names]
    assert all(d == 0 for _, d in cards)                     # 5 stages: nothing hidden
    text = doc.text
    # top 3 of softmax(0.5, 2, -1): dog 78.6%, cat 17.5%, fish 3.9%
    p = np.exp([0.5, 2.0, -1.0]) / np.exp([0.5, 2.0, -1.0]).sum()
    rows = [f"{r} {name} ({k}) {100 * p[k]:.1f}%" for r, (name, k) in
            enumerate((("dog", 1), ("cat", 0), ("fish", 2)), 1)]
    assert rows == ["1 dog (1) 78.6%", "2 cat (0) 17.5%", "3 fish (2) 3.9%"]
    assert " ".join(rows) in text
    stats = tr.stats()
    for row in stats:
        assert fmt(row["max"]) in text
    assert "5 stages" in text


def test_trace_html_hides_cards_after_first_and_lazy_loads_them():
    tr = hand_trace(2)
    doc = Elements(trace_html(tr, first=1))
    cards = [(a, d) for a, d in doc.imgs() if a.get("class") == "cl-card"]
    assert [d for _, d in cards] == [0, 0, 1, 1, 1, 1]
    assert all(a.get("loading") == "lazy" for a, d in cards if d)
    assert "show all 5 stages (4 more)" in doc.text


def test_no_predictions_without_class_names():
    tr = hand_trace(2)
    bare = Trace(tr.stages, tr.input, "torch", "hand")
    assert "probability" not in trace_html(bare)


def test_pngs_are_the_static_figures():
    tr = hand_trace(3)
    from PIL import Image
    import io
    st = tr["relu1"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(st._repr_png_())).convert("RGB")),
                          render.stage(st).to_array())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(tr._repr_png_())).convert("RGB")),
                          render.journey(tr, tile=96, max_channels=9).to_array())


def test_figure_html_shows_the_picture_and_its_scale():
    st = hand_trace(2)["conv1"]
    fig = render.heatmap(st, 1)
    doc = Elements(fig._repr_html_())
    (img,) = [a for a, _ in doc.imgs()]
    assert np.array_equal(rgb(img["src"]), fig.to_array())
    assert img["width"] == str(fig.size[0])
    lim = fmt(float(np.abs(st.output).max()))
    assert f"-{lim} ... {lim}" in doc.text and "heatmap" in doc.text and "conv1" in doc.text


def test_explorer_redraws_the_figure_of_the_controls():
    tr = hand_trace(4)
    ex = explore(tr)
    assert isinstance(ex, Explorer)
    c = ex.controls
    assert ex.image.value == render.stage(tr["conv1"]).to_png_bytes()
    c["channel"].value = 2
    assert ex.image.value == render.heatmap(tr["conv1"], 2).to_png_bytes()
    c["norm"].value, c["cmap"].value = "map", "magma"
    assert ex.image.value == render.heatmap(tr["conv1"], 2, norm="map", cmap="magma").to_png_bytes()
    c["stage"].value = "fc"                                   # a flat stage: bars, no channel
    assert c["channel"].value == ALL_CHANNELS and c["channel"].disabled
    assert ex.image.value == render.bars(tr["fc"], norm="map", cmap="magma").to_png_bytes()
    c["stage"].value = "relu1"
    assert c["channel"].max == 3 and not c["channel"].disabled
    assert "relu1" in ex.caption.value and fmt(float(tr["relu1"].output.max())) in ex.stats.value
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_explore_without_ipywidgets_degrades_to_the_static_view(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)     # import ipywidgets -> ImportError
    tr = hand_trace(2)
    view = explore(tr)
    assert isinstance(view, StaticView)
    html = view._repr_html_()
    assert 'pip install "convlens[notebook]"' in html.replace("&quot;", '"')
    assert trace_html(tr) in html


def test_bad_arguments_are_one_line_errors():
    tr = hand_trace(2)
    with pytest.raises(convlens.RenderError, match="image index 3 is out of range"):
        trace_html(tr, image=3)
    with pytest.raises(convlens.RenderError, match="explore needs a convlens Trace"):
        explore(tr["conv1"])
    with pytest.raises(convlens.RenderError, match="stage_html needs a convlens Stage"):
        stage_html(tr)
    with pytest.raises(convlens.RenderError, match="unknown norm 'loud'"):
        channel_gallery(tr["conv1"], norm="loud")
    with pytest.raises(convlens.RenderError, match="unknown colour map 'jet'"):
        channel_gallery(tr["conv1"], cmap="jet")
    with pytest.raises(convlens.RenderError, match="first must be an integer"):
        stage_html(tr["conv1"], first="all")


def test_nan_values_are_magenta_tiles():
    x = np.array([[[[0.0, 1.0], [np.nan, 2.0]]]], dtype=np.float32)
    doc = Elements(channel_gallery(Stage(0, "n", "conv", "Conv2d", x)))
    (tile,) = [a for a, _ in doc.imgs() if a.get("class") == "cl-px"]
    px = rgb(tile["src"])
    assert px[1, 0].tolist() == [255, 0, 255]
    assert np.array_equal(px, Scale.from_range(0.0, 2.0).colorize(x[0, 0]))
