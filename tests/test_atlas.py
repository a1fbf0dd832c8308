"""The atlas: the running state's merge, and one answer from every engine.

Tolerances: the top-k (images, positions, values), the histograms and the dead counts are
compared exactly.  ``mean`` and ``std`` are float64 sums grouped differently by each
engine (batch by batch here, shard by shard there), so they agree to ``rtol=1e-12``; the
stage outputs themselves are the same float32 numbers in every engine (the same batches,
the same kernels), and the tests check that too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens.atlas import atlas, merge
from convlens.atlas.state import BINS, State, batch_state, empty_state, histogram_bins, responses
from convlens.cli import main
from convlens.errors import ConvlensError

RTOL = 1e-12


# -- the running state --------------------------------------------------------------------
def _random_run(rng: np.random.Generator, n_batches: int = 12, b: int = 5, k: int = 4):
    """Batches of made-up outputs for a spatial stage (3, 4, 5) and a flat one (6,), with
    ties (values on a coarse grid) and a few dead channels; returns (per-batch states,
    every output, every path)."""
    shapes = {"conv": (3, 4, 5), "fc": (6,)}
    outs = {n: rng.integers(-4, 9, size=(n_batches * b, *s)).astype(np.float32) / 4
            for n, s in shapes.items()}
    outs["conv"][:, 2] = -np.abs(outs["conv"][:, 2])        # channel 2: dead everywhere
    paths = [f"img{i:03d}.png" for i in rng.permutation(n_batches * b)]  # order != path order
    bins = {n: histogram_bins(responses(o[:b])[0]) for n, o in outs.items()}
    states = [batch_state({n: o[i * b:(i + 1) * b] for n, o in outs.items()},
                          paths[i * b:(i + 1) * b], k, bins, i) for i in range(n_batches)]
    return states, outs, paths, bins, shapes


def _same(a: State, b: State, exact_stats: bool = False) -> None:
    assert a.images == b.images and a.batches == b.batches and a.skipped == b.skipped
    for n in a.stages:
        x, y = a.stages[n], b.stages[n]
        for f in ("top_value", "top_path", "top_pos", "count", "dead", "hist", "lo", "width"):
            assert np.array_equal(getattr(x, f), getattr(y, f)), (n, f)
        if exact_stats:
            assert np.array_equal(x.mean, y.mean) and np.array_equal(x.m2, y.m2), n
        else:
            np.testing.assert_allclose(x.mean, y.mean, rtol=RTOL, atol=1e-15)
            np.testing.assert_allclose(x.m2, y.m2, rtol=RTOL)


def test_merge_is_associative_and_commutative_and_matches_a_numpy_reference():
    rng = np.random.default_rng(7)
    states, outs, paths, bins, shapes = _random_run(rng)
    k = 4
    left = states[0]
    for s in states[1:]:
        left = merge(left, s)
    # shuffled order, random groupings into shards, merged as a tree
    for trial in range(4):
        order = rng.permutation(len(states))
        cuts = np.sort(rng.choice(np.arange(1, len(states)), size=3, replace=False))
        shards = []
        for part in np.split(order, cuts):
            acc = states[part[0]]
            for i in part[1:]:
                acc = merge(acc, states[i])
            shards.append(acc)
        rng.shuffle(shards)
        while len(shards) > 1:
            shards = [merge(shards[i], shards[i + 1]) if i + 1 < len(shards) else shards[i]
                      for i in range(0, len(shards), 2)]
        _same(left, shards[0])
    # commutative bit for bit, and the empty state is the identity
    a, b = merge(states[0], states[3]), merge(states[5], states[8])
    _same(merge(a, b), merge(b, a), exact_stats=True)
    _same(merge(empty_state(shapes, k, bins), a), a, exact_stats=True)

    # against a plain NumPy reference over all images at once
    ref_paths = np.asarray(paths)
    for name, out in outs.items():
        st = left.stages[name]
        flat = out.reshape(len(out), out.shape[1], -1)
        resp = flat.max(axis=2)
        arg = flat.argmax(axis=2)
        for c in range(out.shape[1]):
            order = sorted(range(len(out)), key=lambda i: (-resp[i, c], ref_paths[i]))[:k]
            assert list(st.top_path[c]) == [ref_paths[i] for i in order]
            assert list(st.top_value[c]) == [resp[i, c] for i in order]
            if out.ndim == 4:
                w = out.shape[3]
                assert [tuple(p) for p in st.top_pos[c]] == [(arg[i, c] // w, arg[i, c] % w) for i in order]
            assert st.dead[c] == (resp[:, c] <= 0).sum()
            lo, width = bins[name][0][c], bins[name][1][c]
            idx = np.clip(np.floor((resp[:, c].astype(np.float64) - lo) / width), -1, BINS) + 1
            assert np.array_equal(st.hist[c], np.bincount(idx.astype(int), minlength=BINS + 2))
        values = flat.transpose(1, 0, 2).reshape(out.shape[1], -1).astype(np.float64)
        # (a batch's sum of squares is taken as sum(x^2) - n mean^2 in float64)
        np.testing.assert_allclose(st.mean, values.mean(axis=1), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st.std, values.std(axis=1), rtol=1e-9)
    assert left.stages["conv"].dead[2] == len(paths)   # the dead channel


def test_a_batch_is_never_counted_twice():
    states, *_ = _random_run(np.random.default_rng(1), n_batches=3)
    ab = merge(states[0], states[1])
    with pytest.raises(ConvlensError, match="both cover batch 1"):
        merge(ab, states[1])
    assert merge(ab, states[2]).batches == ((0, 3),)


def test_histogram_bins_are_round_and_cover_the_first_batch():
    lo, width = histogram_bins(np.array([[0.0, 5.0, 2.0], [1.0, 5.0, 2.0]], np.float32))
    # channel 0 spans 1: width = 2 * 1 / 32 rounded up to two digits, lo a multiple of it
    assert width[0] == pytest.approx(0.063) and lo[0] == pytest.approx(-0.252)
    # equal responses take the stage's span (1)
    assert width[1] == pytest.approx(0.063) and width[2] == pytest.approx(0.063)
    assert np.all(lo <= [0.0, 5.0, 2.0]) and np.all(lo + BINS * width > [1.0, 5.0, 2.0])


# -- a toy net with hand-set weights over generated images ---------------------------------
TOY = "conv(4, 3x3) relu maxpool(2)"
# (file, row, col, grey level): one bright pixel on black; two images share level 200
PIXELS = [("a/p00.png", 3, 4, 120), ("a/p01.png", 7, 7, 200), ("b/p02.png", 12, 2, 250),
          ("b/p03.png", 5, 13, 200), ("b/c/p04.png", 9, 9, 60), ("p05.bmp", 2, 2, 180),
          ("p06.png", 14, 14, 90), ("p07.png", 1, 8, 30), ("p08.png", 10, 5, 220),
          ("p09.png", 6, 11, 150)]


def _toy_model():
    import torch

    net = convlens.build(convlens.parse_spec(TOY), seed=0, in_shape=(3, 16, 16))
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, :, 1, 1] = 1.0 / 3     # the pixel's grey level, at its own place
        conv.weight[1, :, 1, 1] = -1.0 / 3    # never above 0: dead on every image
        conv.weight[2, 0, :, :] = 1.0 / 9     # a 3x3 box of red
        conv.bias[2] = -0.25
        conv.weight[3, 1, 0, 0] = 1.0         # green, one up and one left of the output
    return net


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    for name, r, c, level in PIXELS:
        im = np.zeros((16, 16, 3), np.uint8)
        im[r, c] = level
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / name)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(root / ".hidden" / "x.png")
    return root


def _expected_toy(k: int):
    """The top-k of channels 0 and 3 worked out by hand: conv output (i, j) sees input
    pixel (i + 1, j + 1) for channel 0 and (i, j) for channel 3 (valid 3x3 conv, 14x14)."""
    ch0 = [(name, level / 255, (r - 1, c - 1)) for name, r, c, level in PIXELS
           if 1 <= r <= 14 and 1 <= c <= 14]
    ch3 = [(name, level / 255, (r, c)) for name, r, c, level in PIXELS if r <= 13 and c <= 13]
    key = lambda e: (-e[1], e[0])  # noqa: E731
    return sorted(ch0, key=key)[:k], sorted(ch3, key=key)[:k]


def _check_toy(data: dict, k: int) -> None:
    assert data["images"] == len(PIXELS) and data["files"] == len(PIXELS) + 1
    assert [s["image"] for s in data["skipped"]] == ["broken.png"]
    (stage,) = data["stages"]
    assert stage["name"] == "conv1" and stage["shape"] == [4, 14, 14]
    ch = stage["channels"]
    exp0, exp3 = _expected_toy(k)
    for got, exp in ((ch[0]["top"], exp0), (ch[3]["top"], exp3)):
        assert [(e["image"], tuple(e["position"])) for e in got] == [(n, p) for n, _, p in exp]
        np.testing.assert_allclose([e["value"] for e in got], [v for _, v, _ in exp], rtol=1e-6)
    # the two images of level 200 tie: the one with the smaller path comes first
    assert [e["image"] for e in ch[0]["top"]][2:4] == ["a/p01.png", "b/p03.png"]
    assert ch[1]["dead"] == 1.0 and ch[0]["dead"] == 0.0
    # channel 1's responses are all 0: every image ties, so path order decides
    assert [e["image"] for e in ch[1]["top"]] == sorted(n for n, *_ in PIXELS)[:k]
    # channel 0's mean and std over all 14x14 positions of all images, by hand
    vals = np.zeros((len(PIXELS), 14 * 14))
    for i, (_, r, c, level) in enumerate(PIXELS):
        if 1 <= r <= 14 and 1 <= c <= 14:
            vals[i, (r - 1) * 14 + (c - 1)] = level / 255
    assert ch[0]["mean"] == pytest.approx(vals.mean(), rel=1e-6)
    assert ch[0]["std"] == pytest.approx(vals.std(), rel=1e-5)
    assert sum(ch[0]["histogram"]["counts"]) + ch[0]["histogram"]["below"] + \
        ch[0]["histogram"]["above"] == len(PIXELS)


def _no_run(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "run"}


def test_toy_net_atlas_is_worked_out_by_hand(toy_folder, tmp_path):
    out = tmp_path / "atlas"
    res = atlas(toy_folder, _toy_model(), stages="conv1", k=5, batch=4, out=out,
                progress=False)
    _check_toy(res.data, 5)
    on_disk = json.loads((out / "atlas.json").read_text())
    assert _no_run(on_disk) == _no_run(res.data)
    assert on_disk["run"]["engine"] == "local" and "seconds" in on_disk["run"]
    # crops: channel 0's best image is p02 (level 250) at (11, 1); its 3x3 field is
    # rows 11..13, cols 1..3 of the 16x16 image, shown with context and outlined
    crop = np.asarray(Image.open(out / "crops" / "conv1" / "c0000-1.png"))
    assert crop.shape[2] == 3 and max(crop.shape[:2]) >= 64
    assert (crop == [255, 60, 0]).all(axis=-1).any()          # the outline
    assert (crop == [250, 250, 250]).all(axis=-1).any()       # the bright pixel itself
    page = (out / "conv1.html").read_text()
    assert page.count("<img ") == 4 * 5 and 'src="http' not in page and "href='http" not in page
    assert all(src.startswith("data:image/png;base64,")
               for src in page.split('src="')[1:])
    assert "dead on 100.0% of images" in page
    assert "conv1.html" in (out / "index.html").read_text()


def test_cli_atlas_writes_the_atlas_and_fails_in_one_line(toy_folder, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["atlas", str(toy_folder), "--net", TOY, "--stages", "conv1,maxpool1",
                 "-k", "3", "--batch", "4", "--quiet", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped broken.png" in text and "atlas of 10 images" in text
    data = json.loads((out / "atlas.json").read_text())
    assert [s["name"] for s in data["stages"]] == ["conv1", "maxpool1"]
    assert [s["shape"] for s in data["stages"]] == [[4, 14, 14], [4, 7, 7]]
    assert (out / "maxpool1.html").is_file() and (out / "atlas-state.npz").is_file()
    assert main(["atlas", str(tmp_path / "nowhere"), "--net", TOY, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    assert main(["atlas", str(toy_folder), "--net", TOY, "--stages", "nope", "-o", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


# -- LeNet over the 1,797 digits: local, resumed, Dask ------------------------------------
@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    images, labels = convlens.digits(split="all")
    for i, (im, y) in enumerate(zip(images, labels)):
        (root / str(y)).mkdir(exist_ok=True)
        Image.fromarray((im * 255 + 0.5).astype(np.uint8)).save(root / str(y) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def lenet_local(digit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("lenet-local")
    return atlas(digit_folder, "zoo:lenet", k=9, batch=64, out=out, progress=False,
                 page_channels=2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from convlens.atlas.dask_engine import WORKER_ENV, start_cluster

    before = {k: os.environ.get(k) for k in (*WORKER_ENV, "OMP_NUM_THREADS")}
    c = start_cluster(2, local_directory=tmp_path_factory.mktemp("dask-scratch"))
    yield c
    c.close()
    # the client's environment is as it was (Dask's nanny writes the workers' there)
    assert {k: os.environ.get(k) for k in before} == before


def _same_atlas(a: dict, b: dict) -> None:
    a, b = _no_run(a), _no_run(b)
    for sa, sb in zip(a.pop("stages"), b.pop("stages")):
        assert sa["name"] == sb["name"] and sa["shape"] == sb["shape"]
        for ca, cb in zip(sa["channels"], sb["channels"]):
            assert ca["top"] == cb["top"] and ca["histogram"] == cb["histogram"]
            assert ca["dead"] == cb["dead"]
            assert ca["mean"] == pytest.approx(cb["mean"], rel=RTOL, abs=1e-15)
            assert ca["std"] == pytest.approx(cb["std"], rel=RTOL)
    assert a == b


def test_lenet_atlas_over_the_digits(lenet_local):
    data = lenet_local.data
    assert data["images"] == 1797 and data["skipped"] == []
    assert [s["name"] for s in data["stages"]] == ["conv1", "conv2"]   # default stages
    assert [s["shape"] for s in data["stages"]] == [[6, 28, 28], [16, 10, 10]]
    # the top image of a channel really is the one with the largest maximum: recompute
    # channel 0 of conv1 for its top 9 and a few others directly
    lm = convlens.load_model("zoo:lenet")
    top = data["stages"][0]["channels"][0]["top"]
    paths = [e["image"] for e in top] + ["0/0000.png", "5/0005.png"]
    trace = convlens.capture(lm.model, [str(lenet_local.plan.root + "/" + p) for p in paths],
                             preprocess=lm.preprocess, layers="conv1")
    fm = trace["conv1"].output[:, 0]
    assert [float(v) for v in fm.max(axis=(1, 2))[:9]] == [e["value"] for e in top]
    for i in (9, 10):
        if paths[i] not in paths[:9]:
            assert fm[i].max() <= top[-1]["value"]
    flat = fm.reshape(len(paths), -1).argmax(axis=1)
    assert [[int(i // 28), int(i % 28)] for i in flat[:9]] == [e["position"] for e in top]


def test_lenet_resumed_after_an_interruption_is_identical(digit_folder, lenet_local, tmp_path):
    out = tmp_path / "resumed"

    class Stop(Exception):
        pass

    def stop_after_11(i, state):
        if i == 10:
            raise Stop

    with pytest.raises(Stop):
        atlas(digit_folder, "zoo:lenet", k=9, batch=64, out=out, progress=False,
              checkpoint_every=4, on_batch=stop_after_11, pages=False)
    assert not (out / "atlas.json").exists()
    seen = []
    res = atlas(digit_folder, "zoo:lenet", k=9, batch=64, out=out, progress=False,
                resume=True, checkpoint_every=4, on_batch=lambda i, s: seen.append(i),
                pages=False)
    assert seen[0] == 8 and seen[-1] == 28          # from the last checkpoint (8 batches)
    assert _no_run(res.data) == _no_run(lenet_local.data)    # bit for bit
    with pytest.raises(ConvlensError, match="checkpoint of another run"):
        atlas(digit_folder, "zoo:lenet", k=5, batch=64, out=out, resume=True,
              progress=False, pages=False)


def test_lenet_on_dask_gives_the_local_answer(digit_folder, lenet_local, cluster, tmp_path):
    res = atlas(digit_folder, "zoo:lenet", k=9, batch=64, engine="dask", client=cluster.client,
                out=tmp_path / "dask", progress=False, pages=False, shard_batches=5)
    assert res.data["run"]["workers"] == 2 and res.data["run"]["shards"] == 6
    _same_atlas(res.data, lenet_local.data)


def test_toy_net_on_dask_survives_a_lost_worker(toy_folder, cluster, tmp_path):
    marker = tmp_path / "crashed"
    res = atlas(toy_folder, _toy_model(), stages="conv1", k=5, batch=2, engine="dask",
                client=cluster.client, progress=False, pages=False, shard_batches=1,
                _crash_marker=str(marker))
    assert marker.exists()      # a worker died in the middle of a shard; it was run again
    _check_toy(res.data, 5)
    # the model and the plan went to the workers by plugins, removed again from this
    # cluster of the user's
    left = cluster.client.run(lambda: sorted(__import__(
        "convlens.atlas.dask_engine", fromlist=["_SHIPPED"])._SHIPPED))
    assert left and all(v == [] for v in left.values())
    local = atlas(toy_folder, _toy_model(), stages="conv1", k=5, batch=2, progress=False)
    _same_atlas(res.data, local.data)


# -- activation maximisation beside the crops ----------------------------------------------
def _png_rgb(data: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)


@pytest.fixture(scope="module")
def toy_maximized(toy_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy-max")
    return atlas(toy_folder, _toy_model(), stages="conv1", k=5, batch=4, out=out,
                 progress=False, maximize=True, maximize_steps=64)


def test_maximisation_shows_what_each_hand_set_channel_wants(toy_maximized, toy_folder, tmp_path):
    res, out = toy_maximized, toy_maximized.out
    data = res.data
    (stage,) = data["stages"]
    assert data["maximize"]["settings"]["steps"] == 64 and data["maximize"]["notes"] == []
    assert data["maximize"]["settings"]["size"] == [16, 16]      # the size the model sees
    assert "maximize" not in data["run"] and "maximize_seconds" in data["run"]
    means = []
    for ch in stage["channels"]:
        mx = ch["maximization"]
        assert mx["image"] == f"maximize/conv1/{ch['channel']}.png"
        assert mx["final"] > mx["start"] + 0.1                     # the ascent climbed
        pic = np.asarray(Image.open(out / mx["image"]))
        assert pic.shape == (16, 16, 3)
        means.append(pic.reshape(-1, 3).mean(axis=0))
    grey, negative, red, green = means
    # channel 2 sees only red (a 3x3 box): its image is red; green and blue untouched
    assert red[0] > red[1] + 25 and red[0] > red[2] + 25
    assert abs(red[1] - red[2]) < 3
    # channel 3 sees only green
    assert green[1] > green[0] + 25 and green[1] > green[2] + 25
    # channel 0 sums the three colours: a bright grey; channel 1 subtracts them: a dark grey
    assert np.ptp(grey) < 3 and np.ptp(negative) < 3 and grey.mean() > 150 > 100 > negative.mean()
    # on the page, beside that channel's crops
    page = (out / "conv1.html").read_text()
    assert page.count("<img ") == 4 * 5 + 4
    row = page.split("id='c2'")[1].split("id='c3'")[0]
    assert row.count("<img ") == 6 and "activation maximisation of channel 2" in row
    assert "activation maximisation" in (out / "index.html").read_text()
    # seeded: the same run writes the same pictures and the same JSON
    again = atlas(toy_folder, _toy_model(), stages="conv1", k=5, batch=4, out=tmp_path,
                  progress=False, maximize=True, maximize_steps=64, pages=False)
    assert _no_run(again.data) == _no_run(data)
    for c in range(4):
        assert (tmp_path / f"maximize/conv1/{c}.png").read_bytes() == \
            (out / f"maximize/conv1/{c}.png").read_bytes()


def test_maximisation_needs_gradients_torchscript_gets_a_note(toy_folder, tmp_path):
    import torch

    from convlens.atlas.maximize import NEEDS_GRADIENTS

    scripted = torch.jit.trace(_toy_model().eval(), torch.zeros(1, 3, 16, 16))
    res = atlas(toy_folder, scripted, k=2, batch=8, out=tmp_path, progress=False,
                maximize=True)
    assert res.data["maximize"] == {"note": NEEDS_GRADIENTS + " (this is a torchscript model)"}
    assert not (tmp_path / "maximize").exists()
    assert not any("maximization" in ch for s in res.data["stages"] for ch in s["channels"])
    for page in [tmp_path / "index.html", *(tmp_path / f"{s['name']}.html" for s in res.data["stages"])]:
        assert page.read_text().count(NEEDS_GRADIENTS) == 1, page


def test_cli_maximize_respects_page_channels(toy_folder, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["atlas", str(toy_folder), "--net", TOY, "--stages", "conv1,maxpool1", "-k", "2",
                 "--quiet", "--maximize", "--maximize-steps", "2", "--maximize-size", "12",
                 "--page-channels", "2", "-o", str(out)]) == 0
    for stage in ("conv1", "maxpool1"):
        assert sorted(p.name for p in (out / "maximize" / stage).iterdir()) == ["0.png", "1.png"]
        assert Image.open(out / "maximize" / stage / "0.png").size == (12, 12)
    data = json.loads((out / "atlas.json").read_text())
    assert [("maximization" in ch) for ch in data["stages"][0]["channels"]] == [True, True, False, False]
    capsys.readouterr()
    assert main(["atlas", str(toy_folder), "--net", TOY, "--maximize", "--maximize-steps", "0",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--maximize-steps 0" in err


# -- the notebook view and load() -----------------------------------------------------------
def _imgs(html_text: str) -> list[tuple[str, str]]:
    """(alt, src) of every <img> in order."""
    import re

    return re.findall(r'<img src="([^"]+)" alt="([^"]*)"', html_text)


def test_notebook_view_shows_the_top_images_in_order(toy_maximized):
    import base64

    res = toy_maximized
    html_text = res._repr_html_()
    assert "<script" not in html_text and 'src="http' not in html_text
    rows = html_text.split("<div class='at-row'>")[1:]
    assert len(rows) == 4 and "<details" not in html_text       # 4 channels, first=4
    exp0, exp3 = _expected_toy(5)
    for c, exp in ((0, exp0), (3, exp3)):
        imgs = _imgs(rows[c])
        assert [alt for _, alt in imgs] == [n for n, _, _ in exp] + \
            [f"activation maximisation of channel {c}"]
    # the first picture is channel 0's best crop (p02, grey level 250), shrunk to 48 px
    src = _imgs(rows[0])[0][0]
    assert src.startswith("data:image/png;base64,")
    pic = _png_rgb(base64.b64decode(src.split(",", 1)[1]))
    assert max(pic.shape[:2]) <= 48 and (np.abs(pic - 250) <= 1).all(axis=-1).any()
    # the last picture of channel 2's row is its maximisation: red
    mx = _png_rgb(base64.b64decode(_imgs(rows[2])[-1][0].split(",", 1)[1]))
    assert mx[..., 0].mean() > mx[..., 1].mean() + 25
    # first=1, limit=3: channel 0 shown, 1 and 2 behind "show all" (lazy), 3 left out
    small = res.to_html(first=1, limit=3)
    shown, hidden = small.split("<details", 1)
    assert shown.count("<div class='at-row'>") == 1
    assert hidden.count("<div class='at-row'>") == 2 and "show channels 0..2 (2 more)" in hidden
    assert hidden.count('loading="lazy"') == 2 * 6 and "channels 0..2 of 4 included" in hidden
    # without an output folder the crops are cut in memory: the same pictures
    mem = atlas(res.plan.root, _toy_model(), stages="conv1", k=5, batch=4, progress=False)
    assert mem.out is None
    assert [a for a in _imgs(mem.to_html())] == [a for a in _imgs(html_text) if
                                               not a[1].startswith("activation")]


def test_load_reads_an_atlas_folder_back(toy_maximized, tmp_path):
    from convlens.atlas import load

    res = toy_maximized
    back = load(res.out)
    assert back.data == res.data and back.plan is None and back.out == res.out
    for name, s in res.state.stages.items():
        assert np.array_equal(back.state.stages[name].top_path, s.top_path)
        assert np.array_equal(back.state.stages[name].top_value, s.top_value)
    assert back._repr_html_() == res._repr_html_()
    with pytest.raises(ConvlensError, match="no atlas.json"):
        load(tmp_path)
    (tmp_path / "atlas.json").write_text('{"format": 99}')
    with pytest.raises(ConvlensError, match="atlas format 99"):
        load(tmp_path)


def test_the_preprocessing_flags_reach_the_atlas(toy_folder, tmp_path):
    # 0..255 input: channel 0 (the pixel's grey level) responds 255x as much, exactly the
    # hand-worked values; the CLI's --scale reaches it too
    exp0, _ = _expected_toy(5)
    res = atlas(toy_folder, _toy_model(), stages="conv1", k=5, progress=False,
                preprocess={"scale": 255.0})
    got = res.data["stages"][0]["channels"][0]["top"]
    np.testing.assert_allclose([e["value"] for e in got], [255 * v for _, v, _ in exp0], rtol=1e-6)
    from convlens.atlas.engine import ModelSpec, load_spec

    spec = ModelSpec(model="zoo:lenet", preprocess=(("preset", "keras-mobilenet"),))
    _, pre = load_spec(spec)
    assert (pre.size, pre.grayscale, pre.scale, pre.mean) == ((32, 32), True, 2.0, (1.0,))
    assert "keras-mobilenet" in spec.describe()  # a checkpoint of another preprocessing is not resumed
