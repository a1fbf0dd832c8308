"""The fast rendering paths: the automatic grid size, packed pixels, label atlases, text
widths, placing without drawing, PNG encoding on threads -- exact pixels and records
against the straightforward way, no timings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from convlens import render
from convlens.errors import RenderError
from convlens.render import encode, gridplan, layout
from convlens.render import text as T
from convlens.render.colormaps import lut, packed_lut
from convlens.render.groups import groups
from convlens.render.labelatlas import LabelAtlas
from convlens.render.packed import pack, pack_color, to_image, unpack
from convlens.render.resolve import channel_scales
from convlens.render.scale import Scale
from convlens.render.scaleset import ScaleSet
from convlens.trace import Stage
from tests.reference_grid import grid_by_blocks as reference_grid


def mk(arr, name: str = "s") -> Stage:
    return Stage(0, name, "conv", "Op", np.asarray(arr, dtype=np.float32))


def panel(fig: render.Figure) -> dict:
    return fig.meta["panels"][0]


def many_maps(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``n`` maps of every kind: signed, non-negative, all-zero, constant, NaN, +-inf, tiny."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, n, h, w)) * 10.0 ** rng.integers(-4, 3, size=(1, n, 1, 1))
    x[0, 1::5] = np.abs(x[0, 1::5])
    x[0, 2::7] = 0.0
    x[0, 3::11] = 2.5
    x[0, 4::13] = -1.5
    if n > 7:
        x[0, 5, 0, 0] = np.nan
        x[0, 6, 0, 0], x[0, 6, -1, -1] = np.inf, -np.inf
        x[0, 7] *= 1e-6
    return x


def grid_by_blocks(st: Stage, norm: str, zoom: int, cols: int, labels: list[list[str]],
                   note: str | None) -> render.Figure:
    """Every channel of image 0 with the given zoom, columns and label rows, drawn the
    straightforward way (reference_grid); ``labels`` is given row by row."""
    chs = list(range(st.channels))
    return reference_grid(st, 0, norm, chs, channel_scales(st, 0, norm, chs), zoom, cols,
                          [list(col) for col in zip(*labels)], note)


# -- the automatic size -----------------------------------------------------------------
def test_a_grid_that_fits_is_exactly_the_tile_96_grid():
    st = mk(many_maps(12, 5, 7))
    auto, old = render.grid(st), render.grid(st, tile=96)
    assert auto.to_png_bytes() == old.to_png_bytes() and auto.meta == old.meta
    assert panel(auto)["zoom"] == 13 and "notes" not in panel(auto)


@pytest.mark.parametrize("shape,norm,zoom,cols,compact", [
    ((32, 112, 112), "map", 1, 6, False),     # never shrunk; 6 x 114 px fits
    ((4, 1, 1), "stage", 96, 2, False),       # never more than 96 px
    ((3, 200, 10), "map", 1, 2, False),       # tall maps: the longer side counts
    ((144, 28, 28), "stage", 3, 12, False),   # 12 columns of 86 px: 1098 px
    ((1280, 7, 7), "stage", 4, 33, False),    # "#1279" is 30 px: 33 columns of 30 px
    ((1152, 7, 7), "map", None, None, True),  # ranges too wide in full: compact
])
def test_auto_zoom_and_columns_for_given_shapes(shape, norm, zoom, cols, compact):
    assert T.text_width("#1279", T.SMALL) == 30  # the widths the expectations assume
    n, h, w = shape
    fig = render.grid(mk(many_maps(*shape)), norm=norm)
    p = panel(fig)
    z = p["zoom"]
    if zoom is not None:
        assert z == zoom
    first_row = [t for t in p["tiles"] if t["box"][1] == p["tiles"][0]["box"][1]]
    if cols is not None:
        assert len(first_row) == cols
    assert ("notes" in p) == compact
    assert z * max(h, w) <= gridplan.AUTO_TILE or z == 1
    assert fig.size[0] <= gridplan.AUTO_WIDTH + 2 * 10  # the grid, and a 10 px margin


def test_auto_zoom_is_the_largest_that_fits():
    """Widths of the rule, checked directly: one more step of zoom breaks the width or the
    96-pixel cap, or makes the tile wider than its labels (then the width is the labels')."""
    for n, h, w in [(7, 9, 9), (40, 28, 28), (240, 14, 14), (80, 14, 14), (192, 7, 7)]:
        st = mk(many_maps(n, h, w))
        p = panel(render.grid(st, norm="stage"))
        z = p["zoom"]
        cols = math.ceil(math.sqrt(n))
        lw = int(T.text_widths([f"#{c}" for c in range(n)], T.SMALL).max())
        assert gridplan.grid_width(n, cols, w, z, lw) <= gridplan.AUTO_WIDTH
        bigger = z + 1
        assert (bigger * max(h, w) > gridplan.AUTO_TILE
                or gridplan.grid_width(n, cols, w, bigger, lw) > gridplan.AUTO_WIDTH)


def test_explicit_cols_are_kept_even_when_wide():
    st = mk(many_maps(300, 7, 7))
    p = panel(render.grid(st, norm="stage", cols=50))
    rows0 = [t for t in p["tiles"] if t["box"][1] == p["tiles"][0]["box"][1]]
    assert len(rows0) == 50
    assert p["zoom"] == (T.text_width("#299", T.SMALL) - 2) // 7  # no wider than the labels


@pytest.mark.parametrize("shape,norm", [((1152, 7, 7), "map"), ((700, 5, 6), "map"),
                                        ((400, 7, 7), "standard"), ((1280, 3, 3), "stage"),
                                        ((60, 1, 1), "map")])
def test_auto_grid_equals_the_block_by_block_grid(shape, norm):
    """Compact labels, fewer columns, the note: pixel for pixel and record for record what
    composing one Block per tile draws with the same zoom, columns and labels."""
    st = mk(many_maps(*shape))
    fast = render.grid(st, norm=norm)
    p = panel(fast)
    n = shape[0]
    cols = len({t["box"][0] for t in p["tiles"]})
    labels = [[t["labels"][j] for t in p["tiles"]] for j in range(len(p["tiles"][0]["labels"]))]
    slow = grid_by_blocks(st, norm, int(p["zoom"]), cols, labels, (p.get("notes") or [None])[0])
    assert fast.size == slow.size
    np.testing.assert_array_equal(fast.to_array(), slow.to_array())
    assert fast.meta == slow.meta
    assert len(p["tiles"]) == n


def test_compact_labels_say_each_range():
    x = np.zeros((1, 6, 2, 2))
    x[0, 0] = [[-2, 1], [0, 0.5]]   # signed: -2 ... 2
    x[0, 1] = [[0, 3], [1, 2]]      # non-negative: 0 ... 3
    x[0, 2] = 0.0                   # one value: 0 ... 0
    x[0, 3] = 5.0                   # constant data, range 0 ... 5
    x[0, 4] = -1.5                  # constant data, range -1.5 ... 1.5
    x[0, 5] = [[1e-5, 0], [0, 0]]
    sset = ScaleSet.per_map(x[0].astype(np.float32))
    assert sset.compact() == ["±2", "0..3", "all 0", "0..5", "±1.5", "0..1e-5"]
    key = sset.compact_key()
    assert "±m = -m ... m (RdBu_r)" in key and "0..m = 0 ... m (viridis)" in key
    assert "all v = every value is v" in key
    std = ScaleSet.from_scales([Scale.standardized(m) for m in x[0, :2]])
    assert std.compact() == [f"{T.fmt(m)}±{T.fmt(s)}" for m, s in
                             ((x[0, 0].mean(), x[0, 0].std()), (x[0, 1].mean(), x[0, 1].std()))]
    assert std.compact_key() == "under each tile: the map's mean±sd"


def test_compact_grid_tiles_are_the_colour_table_of_the_numpy_normalised_map():
    x = many_maps(1152, 7, 7, seed=3)
    fig = render.grid(mk(x))
    p = panel(fig)
    assert p["notes"] and p["tiles"][0]["labels"][1].startswith(("±", "0..", "all "))
    px = fig.to_array()
    z = int(p["zoom"])
    for t in p["tiles"][::97]:
        m = x[0, t["channel"]].astype(np.float32).astype(np.float64)
        x0, y0, x1, y1 = t["box"]
        got = px[y0:y1:z, x0:x1:z]
        assert (x1 - x0, y1 - y0) == (7 * z, 7 * z)
        # enlarged by nearest neighbour: every z x z block is one colour
        np.testing.assert_array_equal(px[y0:y1, x0:x1], np.repeat(np.repeat(got, z, 0), z, 1))
        finite = m[np.isfinite(m)]
        lo, hi = finite.min(), finite.max()
        vmin, vmax = (-max(-lo, hi), max(-lo, hi)) if lo < 0 else (0.0, hi)
        assert (t["vmin"], t["vmax"]) == (vmin, vmax)
        u = np.clip((m - vmin) / (vmax - vmin), 0, 1) if vmax > vmin else np.zeros_like(m)
        want = lut(t["cmap"])[np.minimum(np.floor(np.nan_to_num(u) * 256), 255).astype(int)]
        want[np.isnan(m)] = (255, 0, 255)
        np.testing.assert_array_equal(got, want)


def test_auto_grid_is_deterministic_with_cold_caches():
    from convlens.render import glyphs, labelatlas

    st = mk(many_maps(500, 6, 6, seed=5))
    a = render.grid(st).to_png_bytes()
    glyphs._SETS.clear()
    T._PACKED.clear()
    labelatlas.channel_atlas.cache_clear()
    T.text_pixels.cache_clear()
    assert render.grid(st).to_png_bytes() == a


# -- pieces -----------------------------------------------------------------------------
def test_fmt_many_is_fmt():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(size=3000) * 10.0 ** rng.integers(-9, 9, 3000),
                        [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-3, -1e-3, 0.000999999, 99.95,
                         99.96, 100, 99999.4, 99999.5, 1e5, -1e5, 5e-324, 1.7e308]])
    assert T.fmt_many(v) == [T.fmt(x) for x in v]
    assert T.fmt_many(v[:40].astype(np.float32)) == [T.fmt(x) for x in v[:40].astype(np.float32)]
    assert T.fmt_many([1.5, 2.25]) == ["1.5", "2.25"] and T.fmt_many([]) == []


def test_text_widths_are_the_fonts_own_measure():
    rng = np.random.default_rng(1)
    v = rng.normal(size=800) * 10.0 ** rng.integers(-6, 6, 800)
    corpus = [f"{a} ... {b}" for a, b in zip(T.fmt_many(-np.abs(v)), T.fmt_many(np.abs(v)))]
    corpus += [f"#{i}" for i in range(1500)] + ["", " ", "±3 sd", "constant 0", "all -2",
                                                  "stem.conv · Conv2d · 112x112x32", "tiger cat"]
    for size in (T.SMALL, T.LABEL, T.TITLE):
        want = [math.ceil(T.font(size).getlength(t)) for t in corpus]
        assert T.text_widths(corpus, size).tolist() == want
        assert [T.text_width(t, size) for t in corpus] == want
    assert T.text_width("a\nb", T.SMALL) == math.ceil(T.font(T.SMALL).getlength("a\nb"))


def test_packed_pixels_round_trip():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    packed = pack(rgb)
    assert packed.shape == (5, 7) and packed.dtype == np.dtype("<u4")
    np.testing.assert_array_equal(unpack(packed), rgb)
    img = to_image(packed)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb)
    packed[0, 0] = 0  # the image is a copy
    assert np.array_equal(np.asarray(img), rgb)
    assert pack_color((1, 2, 3)) == int(pack(np.array([1, 2, 3], np.uint8)))
    np.testing.assert_array_equal(packed_lut("viridis"), pack(lut("viridis")))


def test_packed_colours_are_the_colours():
    maps = many_maps(40, 5, 6, seed=4)[0]
    maps[8] = np.array([[1e-310, 2e-310, 0, 0, 0, 0]] * 5)  # a sub-normal range
    for dtype in (np.float32, np.float16, np.float64):
        with np.errstate(over="ignore"):
            m = maps.astype(dtype)
        for sset in (ScaleSet.per_map(m), ScaleSet.per_map(m, "gray"),
                     ScaleSet.from_scales([Scale.standardized(a) for a in m]),
                     ScaleSet.from_scales([Scale.from_range(-3.0, 7.0)] * len(m))):
            want = np.stack([sset.scale(k).colorize(a) for k, a in enumerate(m)])
            np.testing.assert_array_equal(sset.colorize(m), want)
            np.testing.assert_array_equal(sset.colorize_packed(m), pack(want))


def test_describe_of_any_scales_is_scale_describe():
    odd = [Scale(-1.0, 3.0, "viridis", False, "stage"), Scale(0.0, 0.0, "viridis", False, "map", True),
           Scale(-2.0, 2.0, "RdBu_r", True, "map", True), Scale.from_range(0.0, 1e-7)]
    assert ScaleSet.from_scales(odd).describe() == [s.describe() for s in odd]
    maps = many_maps(30, 4, 4)[0].astype(np.float32)
    assert ScaleSet.per_map(maps).describe() == [Scale.for_data(a, "map").describe() for a in maps]


def test_groups_finds_equal_keys_in_order():
    rng = np.random.default_rng(3)
    a, b = rng.integers(-3, 3, 500), rng.integers(0, 4, 500)
    got = groups(a, b)
    want: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(zip(a.tolist(), b.tolist())):
        want.setdefault(k, []).append(i)
    assert [(k, idx.tolist()) for k, idx in got] == list(want.items())
    assert [(k, i.tolist()) for k, i in groups(np.array([4, 4, 4]))] == [(4, [0, 1, 2])]
    assert groups(np.array([], int)) == []


def test_label_atlas_holds_each_label_as_drawn():
    texts = ["#3", "0..1.5", "#3", "±0.25", "all 0", "0..1.5", ""]
    atlas = LabelAtlas(texts, None, T.SMALL, T.MUTED)
    for k, t in enumerate(texts):
        got = atlas.pixels(np.array([k]))[0]
        np.testing.assert_array_equal(got, pack(T.text_pixels(t, T.SMALL, T.MUTED)))
    same = [k for k, t in enumerate(texts) if len(t) == 2]
    assert atlas.pixels(np.array(same)).shape[0] == len(same)


def _blocks():
    rng = np.random.default_rng(4)
    out = []
    for k in range(5):
        img = Image.fromarray(rng.integers(0, 256, size=(3 + k, 4 + 2 * k, 3), dtype=np.uint8))
        recs = [{"name": f"b{k}", "box": (0, 0, 2, 2), "tiles": [{"box": (1, 1, 2, 2)}],
                 "other_box": (0, 1, 2, 3), "none_box": None}] if k % 2 == 0 else []
        out.append(layout.Block(img, recs))
    return out


def test_placing_then_drawing_is_stacking():
    b = _blocks()
    nested = layout.pad(layout.vstack([layout.hstack(b[:3], gap=4, align="center"),
                                       layout.hstack(b[3:], gap=2), b[0]], gap=5, align="right"),
                        3, 2, 1, 4)
    placed = layout.draw(layout.place_pad(layout.place_v(
        [layout.place_h(b[:3], gap=4, align="center"), layout.place_h(b[3:], gap=2), b[0]],
        gap=5, align="right"), 3, 2, 1, 4))
    assert placed.image.size == nested.image.size
    np.testing.assert_array_equal(np.asarray(placed.image), np.asarray(nested.image))
    assert placed.records == nested.records
    assert placed.records[0] is not b[0].records[0]  # copies, never the originals


def test_shift_moves_every_box_and_copies():
    rec = {"box": (1, 2, 3, 4), "x_box": [0, 0, 1, 1], "none_box": None, "n": 3,
           "t": (9, 9), "tiles": [{"box": (0, 0, 1, 1), "labels": ["a"]}], "d": {"y_box": (1, 1, 2, 2)}}
    out = layout.shift(rec, 10, 20)
    assert out == {"box": (11, 22, 13, 24), "x_box": (10, 20, 11, 21), "none_box": None, "n": 3,
                   "t": (9, 9), "tiles": [{"box": (10, 20, 11, 21), "labels": ["a"]}],
                   "d": {"y_box": (11, 21, 12, 22)}}
    assert out["tiles"][0] is not rec["tiles"][0] and rec["box"] == (1, 2, 3, 4)


def test_png_bytes_on_threads_are_the_figures_bytes(tmp_path):
    figs = [render.grid(mk(many_maps(9, 4, 4, seed=s))) for s in range(4)]
    want = [f.to_png_bytes() for f in figs]
    assert encode.png_bytes(figs, workers=1) == want
    assert encode.png_bytes(figs, workers=2) == want
    paths = encode.save_pngs([(f, tmp_path / f"g{k}.png") for k, f in enumerate(figs)], workers=2)
    assert [p.read_bytes() for p in paths] == want
    with pytest.raises(RenderError, match="png_bytes needs Figures; got a str"):
        encode.png_bytes(["x"])  # type: ignore[list-item]
    with pytest.raises(RenderError, match="workers must be an integer >= 1"):
        encode.png_bytes(figs, workers=0)


# -- labels from cached glyphs ---------------------------------------------------------
def _label_corpus() -> list[str]:
    rng = np.random.default_rng(7)
    v = rng.normal(size=600) * 10.0 ** rng.integers(-7, 7, 600)
    tops = T.fmt_many(np.abs(v))
    words = [f"{a} ... {b}" for a, b in zip(T.fmt_many(-np.abs(v)), tops)]
    words += [f"±{t}" for t in tops] + [f"0..{t}" for t in tops] + [f"#{i}" for i in range(0, 3000, 7)]
    words += ["all 0", "constant 0", "mean -0.3, sd 4 (constant)", "", " ", "sd 1.5",
              "-0.0123 ... 0.0123 (constant data)", "0.5±0.25", "stem.conv", "tiger cat"]
    alphabet = "0123456789.-e#± alconstmd,()"
    words += ["".join(rng.choice(list(alphabet), size=int(k))) for k in rng.integers(1, 18, 400)]
    return words


@pytest.mark.parametrize("size", [T.SMALL, T.LABEL, T.TITLE])
def test_labels_from_glyphs_are_pillows_labels(size):
    from convlens.render.glyphs import draw_coverage, ink_table

    corpus = _label_corpus()
    covs = draw_coverage(corpus, size)
    assert sum(c is None for c in covs) == 0  # every character of these labels: glyphs
    for color in (T.INK, T.MUTED, (200, 10, 30)):
        table = ink_table(color)
        for t, cov in zip(corpus, covs):
            np.testing.assert_array_equal(table[cov], T.text_pixels(t, size, color), err_msg=t)


def test_labels_with_other_characters_are_left_to_pillow():
    from convlens.render.glyphs import draw_coverage

    texts = ["tab\there", "0..1", "new\nline"]
    covs = draw_coverage(texts, T.SMALL)
    assert covs[0] is None and covs[1] is not None and covs[2] is None
    got = T.packed_texts_many(texts + ["0..1"], T.SMALL, T.MUTED)
    for t, arr in zip(texts + ["0..1"], got):
        np.testing.assert_array_equal(arr, pack(T.text_pixels(t, T.SMALL, T.MUTED)))
        assert not arr.flags.writeable


def test_ink_table_is_how_pillow_paints_through_a_mask():
    from convlens.render.glyphs import ink_table

    mask = Image.frombytes("L", (256, 1), bytes(range(256)))
    for ink in [(0, 0, 0), (25, 25, 25), (95, 95, 95), (200, 10, 30), (254, 1, 128)]:
        img = Image.new("RGB", (256, 1), (255, 255, 255))
        img.paste(ink, (0, 0), mask)
        np.testing.assert_array_equal(np.asarray(img)[0], ink_table(ink))
