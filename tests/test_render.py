"""convlens.render: exact colours, ranges, layouts and determinism on hand-made stages."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens import render
from convlens.errors import RenderError
from convlens.render.colormaps import BAD_COLOR
from convlens.render.text import fmt
from convlens.trace import Stage, Trace

CAT = Path(__file__).resolve().parents[1] / "src" / "convlens" / "data" / "chelsea.png"


# -- helpers --------------------------------------------------------------------------
def mk(arr, name: str = "s", kind: str = "conv", index: int = 0) -> Stage:
    return Stage(index, name, kind, "Op", np.asarray(arr, dtype=np.float32))


def panel(fig: render.Figure, k: int = 0) -> dict:
    return fig.meta["panels"][k]


def value_px(fig: render.Figure, tile: dict, row: int, col: int) -> tuple[int, ...]:
    """The figure's pixel at the centre of value (row, col) of a tile drawn at integer zoom."""
    z = int(tile["zoom"])
    x0, y0, _, _ = tile["box"]
    return tuple(int(v) for v in fig.to_array()[y0 + row * z + z // 2, x0 + col * z + z // 2])


def colour(cmap: str, index: int) -> tuple[int, ...]:
    return tuple(int(v) for v in render.lut(cmap)[index])


def toy_trace(batch: int = 1) -> Trace:
    """Input (B, 6, 8, 3) and four stages of known shapes."""
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(batch, 6, 8, 3)).astype(np.float32)
    conv = rng.normal(size=(batch, 5, 6, 8)).astype(np.float32)
    stages = [
        mk(conv, "conv1", "conv", 0),
        mk(np.maximum(conv, 0), "relu1", "activation", 1),
        mk(np.maximum(conv, 0)[:, :, ::2, ::2], "pool1", "pool", 2),
        mk(conv[:, :3, :2, :2], "rgbish", "conv", 3),
        mk(conv[:, :1], "single", "conv", 4),
        mk(conv.reshape(batch, -1)[:, :10], "fc", "dense", 5),
    ]
    return Trace(stages, img, "numpy", "toy")


# -- colour tables ------------------------------------------------------------------
def test_lut_is_matplotlib_resampled_and_cached():
    from matplotlib import colormaps

    t = render.lut("viridis")
    assert t.shape == (256, 3) and t.dtype == np.uint8 and not t.flags.writeable
    assert np.array_equal(t, colormaps["viridis"].resampled(256)(np.arange(256), bytes=True)[:, :3])
    assert render.lut("viridis") is t
    assert colour("RdBu_r", 128) == (247, 246, 246)  # the near-white centre


def test_import_render_does_not_import_matplotlib():
    code = "import sys, convlens.render; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- Scale ----------------------------------------------------------------------------
def test_scale_signed_is_symmetric_diverging_and_centred():
    s = render.Scale.for_data(np.array([-0.5, 2.0]), "map")
    assert (s.vmin, s.vmax, s.cmap, s.signed) == (-2.0, 2.0, "RdBu_r", True)
    assert s.to_unit(np.array([0.0]))[0] == 0.5
    rgb = s.colorize(np.array([-2.0, 0.0, 1.0, 2.0, 5.0]))
    assert [tuple(c) for c in rgb] == [
        colour("RdBu_r", 0), colour("RdBu_r", 128), colour("RdBu_r", 192),
        colour("RdBu_r", 255), colour("RdBu_r", 255),
    ]
    assert [t for _, t in s.ticks()] == ["-2", "0", "2"]


def test_scale_nonnegative_is_sequential_from_zero():
    s = render.Scale.for_data(np.array([1.0, 3.0]), "stage")
    assert (s.vmin, s.vmax, s.cmap, s.signed) == (0.0, 3.0, "viridis", False)
    assert tuple(s.colorize(np.array([3.0]))[0]) == colour("viridis", 255)
    assert tuple(s.colorize(np.array([1.5]))[0]) == colour("viridis", 128)


def test_scale_standardized_and_constants(recwarn):
    x = np.array([1.0, 3.0])  # mean 2, sd 1
    s = render.Scale.standardized(x)
    assert (s.vmin, s.vmax, s.mean, s.std, s.cmap) == (-1.0, 5.0, 2.0, 1.0, "RdBu_r")
    assert tuple(s.colorize(np.array([2.0]))[0]) == colour("RdBu_r", 128)
    zero = render.Scale.for_data(np.zeros((3, 3)), "map")
    assert zero.constant and (zero.vmin, zero.vmax) == (0.0, 0.0)
    assert np.all(zero.colorize(np.zeros((3, 3))) == render.lut("viridis")[0])
    flat = render.Scale.standardized(np.full(4, 7.0))
    assert flat.constant and np.all(flat.colorize(np.full(4, 7.0)) == render.lut("RdBu_r")[128])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_scale_nan_is_magenta_and_inf_clips():
    s = render.Scale.from_range(-1.0, 1.0)
    out = s.colorize(np.array([np.nan, np.inf, -np.inf]))
    assert tuple(out[0]) == tuple(BAD_COLOR)
    assert tuple(out[1]) == colour("RdBu_r", 255) and tuple(out[2]) == colour("RdBu_r", 0)


def test_fmt():
    assert [fmt(v) for v in (0, -0.42, 1.37, 0.4213, 123.4, 2519.2, 1.5e-5, 3e6)] == [
        "0", "-0.42", "1.37", "0.421", "123", "2519", "1.5e-5", "3e6",
    ]


# -- heatmap ------------------------------------------------------------------------
def test_heatmap_signed_exact_pixels_and_labels():
    st = mk([[[[-2.0, 0.0], [1.0, 2.0]]]], "conv1")
    fig = render.heatmap(st)
    p = panel(fig)
    t = p["tiles"][0]
    assert (p["vmin"], p["vmax"], p["cmap"], p["norm"], p["shape"]) == (-2.0, 2.0, "RdBu_r", "stage", "2x2x1")
    assert t["zoom"] == 128  # 2x2 enlarged to 256x256
    assert value_px(fig, t, 0, 0) == colour("RdBu_r", 0)
    assert value_px(fig, t, 0, 1) == colour("RdBu_r", 128)  # 0 -> the centre colour
    assert value_px(fig, t, 1, 0) == colour("RdBu_r", 192)
    assert value_px(fig, t, 1, 1) == colour("RdBu_r", 255)  # max -> the end colour
    assert p["labels"] == ["-2", "0", "2"]


def test_heatmap_colorbar_states_real_range():
    st = mk(np.linspace(-0.42, 1.37, 12).reshape(1, 1, 3, 4))
    labels = panel(render.heatmap(st))["labels"]
    assert labels == ["-1.37", "0", "1.37"]
    pos = mk(np.linspace(0.5, 3.21, 12).reshape(1, 1, 3, 4))
    assert panel(render.heatmap(pos))["labels"] == ["0", "3.21"]
    assert panel(render.heatmap(pos, cmap="magma"))["cmap"] == "magma"


def test_nearest_upscale_keeps_values():
    a = np.arange(6).reshape(2, 3)
    up = render.upscale(a, 3)
    assert up.shape == (6, 9) and np.array_equal(up[::3, ::3], a)
    assert np.array_equal(up, np.kron(a, np.ones((3, 3), dtype=int)))
    vals = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    fig = render.heatmap(mk(vals))
    t = panel(fig)["tiles"][0]
    z = int(t["zoom"])
    assert z == 51  # a 5x5 map becomes 255x255
    x0, y0, x1, y1 = t["box"]
    drawn = fig.to_array()[y0:y1, x0:x1]
    expect = render.upscale(render.Scale.for_data(vals, "stage").colorize(vals[0, 0]), z)
    assert np.array_equal(drawn, expect)  # every pixel is a value's own colour: no blur


def test_constant_maps_render_without_crash(recwarn):
    fig = render.heatmap(mk(np.zeros((1, 1, 4, 4))))
    p = panel(fig)
    assert p["constant"] and p["labels"] == ["constant 0"]
    assert value_px(fig, p["tiles"][0], 2, 2) == colour("viridis", 0)
    fig = render.heatmap(mk(np.full((1, 1, 4, 4), 5.0)), norm="standard")
    assert value_px(fig, panel(fig)["tiles"][0], 1, 1) == colour("RdBu_r", 128)
    fig = render.rgb(mk(np.zeros((1, 3, 4, 4))))
    assert value_px(fig, panel(fig)["tiles"][0], 0, 0) == (0, 0, 0)
    g = render.grid(mk(np.stack([np.full((4, 4), 5.0), np.zeros((4, 4))])[None]))
    tiles = panel(g)["tiles"]
    assert (tiles[0]["vmin"], tiles[0]["vmax"], tiles[0]["constant"]) == (0.0, 5.0, True)
    assert value_px(g, tiles[0], 0, 0) == colour("viridis", 255)
    assert value_px(g, tiles[1], 0, 0) == colour("viridis", 0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# -- normalisation modes ------------------------------------------------------------
def _two_channel_batch() -> Stage:
    a = np.zeros((2, 2, 2, 2), dtype=np.float32)
    a[0, 0] = [[0, 1], [0.5, 0.25]]    # image 0 channel 0: 0..1
    a[0, 1] = [[0, 4], [2, 1]]         # image 0 channel 1: 0..4
    a[1, 0] = [[0, 8], [0, 0]]         # image 1 reaches 8
    a[1, 1] = [[-1, 0], [0, 0]]        # image 1 has a negative
    return mk(a, "conv2")


def test_norm_map_stage_global_standard_ranges():
    st = _two_channel_batch()
    per_map = panel(render.grid(st, norm="map"))["tiles"]
    assert [(t["vmin"], t["vmax"]) for t in per_map] == [(0.0, 1.0), (0.0, 4.0)]
    assert per_map[0]["labels"] == ["#0", "0 ... 1"]
    assert value_px(render.grid(st, norm="map"), per_map[1], 0, 1) == colour("viridis", 255)

    stage = render.grid(st, norm="stage")
    p = panel(stage)
    assert (p["vmin"], p["vmax"], p["cmap"]) == (-8.0, 8.0, "RdBu_r")  # over both images
    assert all((t["vmin"], t["vmax"]) == (-8.0, 8.0) for t in p["tiles"])
    assert value_px(stage, p["tiles"][1], 0, 1) == colour("RdBu_r", 192)  # 4 on +-8
    assert p["labels"] == ["-8", "0", "8"]

    glob = panel(render.grid(st, norm="global", vrange=(-2.0, 16.0)))
    assert (glob["vmin"], glob["vmax"]) == (-16.0, 16.0)
    alone = panel(render.grid(st, norm="global"))
    assert (alone["vmin"], alone["vmax"]) == (-8.0, 8.0)  # alone: falls back to the stage

    std = panel(render.grid(st, norm="standard"))["tiles"]
    x = st.output[0, 1].astype(np.float64)
    m, s = x.mean(), x.std()
    assert std[1]["mean"] == pytest.approx(m) and std[1]["std"] == pytest.approx(s)
    assert (std[1]["vmin"], std[1]["vmax"]) == pytest.approx((m - 3 * s, m + 3 * s))
    assert panel(render.grid(st, norm="standard"))["labels"] == ["-3 sd", "mean", "+3 sd"]


def test_journey_global_uses_one_range_over_all_stages():
    a = mk(np.full((1, 2, 2, 2), 1.0), "a", index=0)
    b = mk(np.full((1, 2, 2, 2), -3.0), "b", index=1)
    c = mk(np.array([[0.5, 2.0]]), "c", "dense", 2)
    tr = Trace([a, b, c], np.zeros((1, 2, 2, 3)), "numpy", "t")
    fig = render.journey(tr, norm="global")
    assert fig.meta["global_range"] == [-3.0, 2.0]
    for p in fig.meta["panels"][1:]:
        assert (p["vmin"], p["vmax"], p["norm"]) == (-3.0, 3.0, "global")
    stage = render.journey(tr, norm="stage").meta["panels"]
    assert [(p["vmin"], p["vmax"]) for p in stage[1:]] == [(0.0, 1.0), (-3.0, 3.0), (0.0, 2.0)]


# -- RGB composite ------------------------------------------------------------------
def test_rgb_composite_exact_pixels_and_legend():
    a = np.array([
        [[-0.5, 1.5], [0.0, 0.5]],   # red
        [[0.0, 0.0], [1.5, 0.25]],   # green
        [[1.0, -0.5], [0.5, 0.0]],   # blue
    ], dtype=np.float32)[None]
    fig = render.rgb(mk(a, "c3"))
    p = panel(fig)
    assert (p["vmin"], p["vmax"], p["view"]) == (-0.5, 1.5, "rgb")
    u = lambda v: math.floor((v + 0.5) / 2.0 * 255 + 0.5)  # noqa: E731
    t = p["tiles"][0]
    assert value_px(fig, t, 0, 0) == (0, u(0.0), u(1.0)) == (0, 64, 191)
    assert value_px(fig, t, 0, 1) == (255, 64, 0)
    assert value_px(fig, t, 1, 0) == (64, 255, 128)
    assert value_px(fig, t, 1, 1) == (u(0.5), u(0.25), u(0.0))
    assert "R,G,B: -0.5 ... 1.5 -> 0 ... 255" in p["notes"]


def test_rgb_nonnegative_range_starts_at_zero_and_map_norm_is_per_image():
    a = np.zeros((2, 3, 1, 1), dtype=np.float32)
    a[0, :, 0, 0] = [0.5, 1.0, 0.25]
    a[1, :, 0, 0] = [2.0, 0.0, 0.0]
    st = mk(a)
    assert (panel(render.rgb(st))["vmin"], panel(render.rgb(st))["vmax"]) == (0.0, 2.0)
    fig = render.rgb(st, norm="map")
    assert panel(fig)["vmax"] == 1.0
    assert value_px(fig, panel(fig)["tiles"][0], 0, 0) == (128, 255, 64)


# -- flat stages ----------------------------------------------------------------------
def test_bars_for_flat_stage():
    v = np.array([[-1.0, 0.0, 2.0, 0.5]], dtype=np.float32)
    fig = render.stage(mk(v, "fc", "dense"))
    p = panel(fig)
    t = p["tiles"][0]
    assert p["view"] == "bars" and (p["vmin"], p["vmax"]) == (-2.0, 2.0) and p["shape"] == "4"
    per = t["px_per_value"]
    x0, y0, x1, y1 = t["box"]
    arr = fig.to_array()
    sx0, sy0, _, _ = t["strip_box"]
    for i, val in enumerate(v[0]):  # the colour strip holds each value's colour
        assert tuple(arr[sy0 + 1, sx0 + i * per + per // 2]) == tuple(
            render.Scale.from_range(-1.0, 2.0).colorize(np.array([val]))[0]
        )
    col = x0 + 2 * per + per // 2  # the max value: a bar from the baseline to the top
    assert tuple(arr[y0, col]) != (255, 255, 255) and tuple(arr[y1 - 1, col]) == (255, 255, 255)
    assert t["notes"] == ["max 2 at #2 · min -1 at #0"]
    assert p["labels"] == ["-2", "0", "2"]


def test_bars_bin_many_values_and_keep_spikes():
    v = np.zeros((1, 3000), dtype=np.float32)
    v[0, 1234] = 9.0
    fig = render.bars(mk(v, "logits", "dense"), width=500)
    t = panel(fig)["tiles"][0]
    assert t["values_per_column"] == 6 and t["px_per_value"] == 1
    x0, y0, x1, _ = t["box"]
    assert x1 - x0 == 500
    assert tuple(fig.to_array()[y0, x0 + 1234 // 6]) != (255, 255, 255)  # the spike survives


# -- dispatch, grid, batch -------------------------------------------------------------
def test_stage_picks_the_view_and_accepts_trace_with_layer():
    tr = toy_trace()
    views = {s.name: panel(render.stage(s))["view"] for s in tr}
    assert views == {"conv1": "grid", "relu1": "grid", "pool1": "grid", "rgbish": "rgb",
                     "single": "heatmap", "fc": "bars"}
    assert panel(render.heatmap(tr, layer="single"))["stage"] == "single"
    assert panel(render.grid(tr, layer=0, channels=[4, 1]))["channels"] == [4, 1]


def test_grid_labels_tiles_by_index_and_limits():
    st = mk(np.arange(64 * 9, dtype=np.float32).reshape(1, 64, 3, 3))
    p = panel(render.grid(st, max_channels=10, cols=5))
    assert [t["channel"] for t in p["tiles"]] == list(range(10))
    assert [t["labels"][0] for t in p["tiles"]][:3] == ["#0", "#1", "#2"]
    boxes = [t["box"] for t in p["tiles"]]
    assert len({b[1] for b in boxes}) == 2  # two rows of five


def test_batch_side_by_side():
    tr = toy_trace(batch=2)
    fig = render.batch(tr["conv1"])
    ps = fig.meta["panels"]
    assert [p["image"] for p in ps] == [0, 1] and fig.meta["images"] == [0, 1]
    assert ps[0]["box"][0] < ps[1]["box"][0] and ps[0]["box"][1] == ps[1]["box"][1]
    assert (ps[0]["vmin"], ps[0]["vmax"]) == (ps[1]["vmin"], ps[1]["vmax"])  # shared stage range
    inputs = render.batch(tr, images=[1])
    assert [p["view"] for p in inputs.meta["panels"]] == ["photo"]


# -- journey --------------------------------------------------------------------------
def test_journey_panels_in_order_with_shapes():
    tr = toy_trace()
    fig = render.journey(tr, per_row=3)
    ps = fig.meta["panels"]
    assert [p["stage"] for p in ps] == ["input"] + tr.names
    assert [p["shape"] for p in ps] == ["6x8x3", "6x8x5", "6x8x5", "3x4x5", "2x2x3", "6x8x1", "10"]
    assert [p["view"] for p in ps] == ["photo", "grid", "grid", "grid", "rgb", "heatmap", "bars"]
    assert all(p["norm"] == "stage" for p in ps[1:])
    assert len({p["box"][1] for p in ps}) == 3  # wrapped into three rows of three
    # the input is drawn exactly (8x8 zoom would need 16: 128 // 8)
    t = ps[0]["tiles"][0]
    assert value_px(fig, t, 2, 3) == tuple(np.floor(tr.input[0, 2, 3] * 255 + 0.5).astype(int))


def test_journey_mini_grid_says_how_many_channels():
    st = mk(np.random.default_rng(0).normal(size=(1, 64, 5, 5)), "wide")
    tr = Trace([st], np.zeros((1, 5, 5, 3)), "numpy", "t")
    p = render.journey(tr).meta["panels"][1]
    assert p["channels_shown"] == 16 and p["channels_total"] == 64
    assert "16 of 64 channels" in p["notes"]
    assert [t["channel"] for t in p["tiles"]] == list(range(16))


def test_journey_batch_of_two_shows_both_images():
    tr = toy_trace(batch=2)
    fig = render.journey(tr)
    ps = fig.meta["panels"]
    assert [p["image"] for p in ps] == [0] * 7 + [1] * 7
    arr = fig.to_array()

    def crop(p):
        x0, y0, x1, y1 = p["tiles"][0]["box"]
        return arr[y0:y1, x0:x1]

    assert not np.array_equal(crop(ps[0]), crop(ps[7]))  # two different input pictures
    assert not np.array_equal(crop(ps[1]), crop(ps[8]))
    assert ps[7]["box"][1] > ps[0]["box"][3]  # image 1's band is below image 0's
    only = render.journey(tr, images=[1]).meta["panels"]
    assert {p["image"] for p in only} == {1}


def test_same_call_gives_byte_identical_png(tmp_path):
    tr = toy_trace(batch=2)
    a = render.journey(tr).save(tmp_path / "a.png")
    b = render.journey(tr).save(tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    assert render.grid(tr["conv1"]).to_png_bytes() == render.grid(tr["conv1"]).to_png_bytes()


# -- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("call, words", [
    (lambda t: render.heatmap(t["single"], norm="perstage"), ["map, stage, global, standard"]),
    (lambda t: render.grid(t["conv1"], cmap="jet"), ["viridis", "RdBu_r"]),
    (lambda t: render.heatmap(t["conv1"], channel=5), ["channel 5", "0..4"]),
    (lambda t: render.grid(t["conv1"], channels=[0, 9]), ["channel 9", "0..4"]),
    (lambda t: render.heatmap(t["conv1"], image=1), ["image index 1", "0..0"]),
    (lambda t: render.journey(t, images=[3]), ["image index 3", "0..0"]),
    (lambda t: render.rgb(t["conv1"]), ["3-channel", "5 channels"]),
    (lambda t: render.heatmap(t["fc"]), ["flat", "render.stage"]),
    (lambda t: render.journey(t, tile=10), ["tile 10", ">= 64"]),
    (lambda t: render.stage(t["conv1"], image=True), ["image index True"]),
])
def test_errors_are_one_line_render_errors(call, words):
    with pytest.raises(RenderError) as info:
        call(toy_trace())
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, ValueError)
    for w in words:
        assert w in msg


# -- the real cat -----------------------------------------------------------------
def test_cat_journey(tmp_path):
    from numpy.lib.stride_tricks import sliding_window_view

    img = np.asarray(Image.open(CAT).convert("RGB"), dtype=np.float32)[::2, ::2] / 255
    x = img.transpose(2, 0, 1)[None]
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 3, 3))
    conv = np.einsum("bchwij,ocij->bohw", sliding_window_view(x, (3, 3), axis=(2, 3)), w)
    relu = np.maximum(conv, 0)
    b, c, h, wd = relu.shape
    pool = relu[:, :, : h // 5 * 5, : wd // 5 * 5].reshape(b, c, h // 5, 5, wd // 5, 5).max(axis=(3, 5))
    stages = [mk(conv, "conv", "conv", 0), mk(relu, "relu", "activation", 1),
              mk(pool, "pool", "pool", 2), mk(pool.reshape(1, -1)[:, :50], "flat", "flatten", 3)]
    tr = Trace(stages, img[None], "numpy", "cat")
    fig = render.journey(tr)
    out = fig.save(tmp_path / "cat.png")
    assert Image.open(out).size == fig.size
    assert [p["shape"] for p in fig.meta["panels"]] == ["150x226x3", "148x224x3", "148x224x3",
                                                        "29x44x3", "50"]
    # the photo is reduced to the 128-px tile, not cropped
    x0, y0, x1, y1 = fig.meta["panels"][0]["tiles"][0]["box"]
    assert x1 - x0 == 128 and 80 <= y1 - y0 <= 90


def test_reduced_maps_average_values_not_colours():
    yy, xx = np.mgrid[0:100, 0:100]
    maps = np.stack([np.sin(xx / 7.0) * np.cos(yy / 5.0), xx - 50.0]).astype(np.float32)
    tr = Trace([mk(maps[None], "big")], np.zeros((1, 4, 4, 3)), "numpy", "t")
    fig = render.journey(tr)
    p = fig.meta["panels"][1]
    arr = fig.to_array()
    table = {tuple(c) for c in render.lut(p["cmap"])}
    for t in p["tiles"]:
        assert t["zoom"] < 1  # 100x100 reduced into the mini-grid
        x0, y0, x1, y1 = t["box"]
        assert {tuple(c) for c in arr[y0:y1, x0:x1].reshape(-1, 3)} <= table
