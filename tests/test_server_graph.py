"""The explorer on a Trace that branches and merges (hand-made, no framework): every
operand of a merge at a position, concatenations mapped back to their inputs, the graph
in the journey frame, narrate's sentences, and clicking through the graph in Chromium."""
import os
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's notice about its httpx-based client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from convlens.analysis.narrate import describe_stage  # noqa: E402
from convlens.server import create_app  # noqa: E402
from convlens.server.encode import unpack  # noqa: E402
from convlens.trace import Stage, Trace  # noqa: E402

HOSTILE = 'x<img src=x onerror="window.__xss=1">'  # a stage name is text, never HTML
GAP = 3  # stage indices are 10, 13, 16...: a selection, never equal to positions


def idx(pos):
    return -1 if pos == -1 else 10 + GAP * pos


def make_trace(framework="torch"):
    """input -> a, b (convs) -> a + b -> c; a + b + c; cat(a, d, add); SE on the cat;
    x * 0.5; x * gamma; b - a; and a flat branch: mean, two dense, their add and cat."""
    rng = np.random.default_rng(5)
    f32 = np.float32
    img = rng.random((1, 6, 7, 3), dtype=f32)
    x = np.ascontiguousarray(img.transpose(0, 3, 1, 2))
    spec = []  # (name, kind, op, output, params, weights, source positions)

    def add(name, kind, op, out, params=None, weights=None, src=(-1,)):
        spec.append((name, kind, op, np.asarray(out, f32), params or {}, weights or {}, src))
        return len(spec) - 1, spec[-1][3]

    def r(*shape):
        return rng.standard_normal((1, *shape)).astype(f32)

    pa, a = add("a.conv", "conv", "Conv2d", r(4, 6, 7))
    pb, b = add("b.conv", "conv", "Conv2d", r(4, 6, 7))
    padd, s = add("add", "merge", "add", a + b, {"operation": "add"}, src=(pa, pb))
    pc, c = add("c.conv", "conv", "Conv2d", r(4, 6, 7), src=(padd,))
    p3, s3 = add("add3", "merge", "Add", (a + b) + c, src=(pa, pb, pc))
    pd, d = add("d.conv", "conv", "Conv2d", r(2, 6, 7), src=(padd,))
    pcat, cat = add("cat", "merge", "cat", np.concatenate([a, d, s], axis=1),
                    {"operation": "cat", "dim": 1}, src=(pa, pd, padd))
    pp, pooled = add("se.pool", "pool", "adaptive_avg_pool2d", cat.mean(axis=(2, 3), keepdims=True),
                     {"mode": "avg"}, src=(pcat,))
    pg, gate = add("se.gate", "activation", "sigmoid", 1 / (1 + np.exp(-pooled)),
                   {"function": "sigmoid"}, src=(pp,))
    pse, se = add("se.mul", "merge", "mul", cat * gate, {"operation": "mul"}, src=(pcat, pg))
    phalf, half = add("half", "merge", "mul", se * f32(0.5), {"operation": "mul", "scalar": 0.5},
                      src=(pse,))
    gamma = rng.standard_normal((10, 1, 1)).astype(f32)
    pls, ls = add("layer_scale", "merge", "mul", half * gamma, {"operation": "mul"},
                  {"operand1": gamma}, src=(phalf,))
    psub, _ = add("sub", "merge", "sub", b - a, {"operation": "sub"}, src=(pb, pa))
    pm, m = add("mean", "pool", "mean", ls.mean(axis=(2, 3)), {"mode": "avg"}, src=(pls,))
    pf1, f1 = add("fc1", "dense", "Linear", r(5), src=(pm,))
    pf2, f2 = add("fc2", "dense", "Linear", r(3), src=(pm,))
    pf3, f3 = add("fc3", "dense", "Linear", r(5), src=(pm,))
    add("flat_add", "merge", "add", f1 + f3, {"operation": "add"}, src=(pf1, pf3))
    add("flat_cat", "merge", "cat", np.concatenate([f1, f2], axis=1),
        {"operation": "cat", "dim": 1}, src=(pf1, pf2))
    add("one_minus", "merge", "sub", f32(1) - gate,
        {"operation": "sub", "scalar": 1.0, "reflected": True}, src=(pg,))
    add(HOSTILE, "other", "custom_op", a * b, src=(pa, pb))  # two inputs, not a merge
    stages = [Stage(index=idx(p), name=n, kind=k, op=o, output=out, params=pr, weights=w,
                    sources=tuple(idx(q) for q in src))
              for p, (n, k, o, out, pr, w, src) in enumerate(spec)]
    return Trace(stages=stages, input=img, framework=framework, model_name="branches",
                 model_input=x)


def make_keras_trace():
    """Keras merge layers: Add of two, Concatenate (axis -1, channels-last), Multiply."""
    rng = np.random.default_rng(9)
    img = rng.random((1, 5, 4, 3), dtype=np.float32)
    x = np.ascontiguousarray(img.transpose(0, 3, 1, 2))
    a = rng.standard_normal((1, 3, 5, 4)).astype(np.float32)
    b = rng.standard_normal((1, 2, 5, 4)).astype(np.float32)
    b3 = rng.standard_normal((1, 3, 5, 4)).astype(np.float32)
    stages = [
        Stage(0, "conv_a", "conv", "Conv2D", a, sources=(-1,)),
        Stage(1, "conv_b", "conv", "Conv2D", b, sources=(-1,)),
        Stage(2, "conv_c", "conv", "Conv2D", b3, sources=(-1,)),
        Stage(3, "add", "merge", "Add", a + b3, sources=(0, 2)),
        Stage(4, "concatenate", "merge", "Concatenate", np.concatenate([a, b], axis=1),
              params={"axis": -1}, sources=(0, 1)),
        Stage(5, "multiply", "merge", "Multiply", a * b3, sources=(0, 2)),
    ]
    return Trace(stages=stages, input=img, framework="keras", model_name="keras-branches",
                 model_input=x)


@pytest.fixture(scope="module")
def trace():
    return make_trace()


@pytest.fixture(scope="module")
def client(trace):
    app = create_app(traces={"branches": trace, "keras": make_keras_trace()})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def explain(client, pos, channel=0, row=0, col=0, tid="t1"):
    r = client.get(f"/api/traces/{tid}/stages/{pos}/explain",
                   params={"channel": channel, "row": row, "col": col})
    assert r.status_code == 200, r.text
    return r.json()


def out(trace, name, *at):
    return float(trace[name].output[(0, *at)])


# -- the graph in the frame ------------------------------------------------------------
def test_info_offers_the_held_traces_and_the_frame_carries_the_graph(client, trace):
    info = client.get("/api/info").json()
    assert info["traces"] == [{"id": "t1", "label": "branches"}, {"id": "t2", "label": "keras"}]
    header, _ = unpack(client.get("/api/traces/t1").content)
    recs = {s["name"]: s for s in header["stages"]}
    assert header["trace"]["model_id"] == "held" and not header["features"]["gradcam"]
    assert recs["a.conv"]["inputs"] == [-1] and recs["a.conv"]["sources"] == [-1]
    assert recs["add3"]["inputs"] == [0, 1, 3] and recs["add3"]["sources"] == [10, 13, 19]
    assert recs["add3"]["merge"] == "add" and recs["cat"]["merge"] == "cat"
    assert recs["a.conv"]["consumers"] == [2, 4, 6, 12, 20]
    assert recs[HOSTILE]["inputs"] == [0, 1] and recs[HOSTILE]["merge"] is None
    assert recs["add"]["consumers"] == [3, 5, 6]
    assert recs["fc3"]["consumers"] == [17] and recs["flat_cat"]["consumers"] == []
    assert recs["se.gate"]["consumers"] == [9, 19] and recs["one_minus"]["inputs"] == [8]
    assert client.get("/api/traces/t9").status_code == 404
    assert client.get("/api/traces/t1x").status_code == 422
    assert client.get("/api/traces/..%2Ft1").status_code in (404, 422)


def test_a_stage_with_two_inputs_that_is_not_a_merge_shows_its_first(client, trace):
    a = explain(client, 20, channel=1, row=2, col=2)
    assert [i["name"] for i in a["inputs"]] == ["a.conv", "b.conv"]
    assert a["arithmetic"]["type"] == "elementwise"
    assert a["arithmetic"]["x"] == out(trace, "a.conv", 1, 2, 2)


# -- elementwise merges --------------------------------------------------------------
def test_add_of_two_shows_both_operands(client, trace):
    a = explain(client, 2, channel=3, row=4, col=5)
    ar = a["arithmetic"]
    assert ar["type"] == "merge" and ar["operation"] == "add" and ar["symbol"] == "+"
    assert [(o["name"], o["position"]) for o in ar["operands"]] == [("a.conv", 0), ("b.conv", 1)]
    assert [o["value"] for o in ar["operands"]] == [out(trace, "a.conv", 3, 4, 5),
                                                      out(trace, "b.conv", 3, 4, 5)]
    assert all(o["index"] == [3, 4, 5] and not o["broadcast"] for o in ar["operands"])
    assert ar["value"] == a["captured"] == out(trace, "add", 3, 4, 5)
    assert [i["name"] for i in a["inputs"]] == ["a.conv", "b.conv"]


def test_add_of_three_in_argument_order(client, trace):
    ar = explain(client, 4, channel=1, row=0, col=6)["arithmetic"]
    assert [o["name"] for o in ar["operands"]] == ["a.conv", "b.conv", "c.conv"]
    assert [o["value"] for o in ar["operands"]] == [out(trace, n, 1, 0, 6)
                                                      for n in ("a.conv", "b.conv", "c.conv")]
    assert ar["value"] == out(trace, "add3", 1, 0, 6)


def test_subtraction_keeps_the_order(client, trace):
    ar = explain(client, 12, channel=0, row=1, col=1)["arithmetic"]
    assert ar["symbol"] == "−" and [o["name"] for o in ar["operands"]] == ["b.conv", "a.conv"]
    assert ar["value"] == out(trace, "sub", 0, 1, 1) == \
        np.float32(out(trace, "b.conv", 0, 1, 1)) - np.float32(out(trace, "a.conv", 0, 1, 1))


def test_squeeze_excitation_multiply_broadcasts_the_scale(client, trace):
    ar = explain(client, 9, channel=7, row=2, col=3)["arithmetic"]
    x, s = ar["operands"]
    assert (x["name"], x["index"], x["broadcast"]) == ("cat", [7, 2, 3], False)
    assert (s["name"], s["index"], s["shape"], s["broadcast"]) == \
        ("se.gate", [7, 0, 0], [10, 1, 1], True)
    assert x["value"] == out(trace, "cat", 7, 2, 3) and s["value"] == out(trace, "se.gate", 7, 0, 0)
    assert ar["operation"] == "mul" and ar["value"] == out(trace, "se.mul", 7, 2, 3)


def test_scalar_and_constant_operands(client, trace):
    ar = explain(client, 10, channel=2, row=5, col=6)["arithmetic"]
    assert [(o["name"], o["constant"]) for o in ar["operands"]] == [("se.mul", False),
                                                                    ("0.5", True)]
    assert ar["operands"][1]["value"] == 0.5
    assert ar["value"] == out(trace, "half", 2, 5, 6)
    ar = explain(client, 11, channel=9, row=0, col=0)["arithmetic"]
    g = ar["operands"][1]
    assert (g["name"], g["constant"], g["shape"], g["index"]) == ("operand1", True, [10, 1, 1],
                                                                  [9, 0, 0])
    assert g["value"] == float(trace["layer_scale"].weights["operand1"][9, 0, 0])
    assert ar["value"] == out(trace, "layer_scale", 9, 0, 0)


def test_reflected_subtraction_puts_the_scalar_first(client, trace):
    ar = explain(client, 19, channel=4)["arithmetic"]
    assert [(o["name"], o["value"]) for o in ar["operands"]] == [
        ("1", 1.0), ("se.gate", out(trace, "se.gate", 4, 0, 0))]
    assert ar["value"] == out(trace, "one_minus", 4, 0, 0)


def test_flat_add(client, trace):
    ar = explain(client, 17, col=4)["arithmetic"]
    assert [(o["name"], o["index"], o["value"]) for o in ar["operands"]] == [
        ("fc1", [4], out(trace, "fc1", 4)), ("fc3", [4], out(trace, "fc3", 4))]
    assert ar["value"] == out(trace, "flat_add", 4)


def test_an_input_left_out_of_the_trace_is_named_not_guessed(trace):
    kept = [st for st in trace.stages if st.name not in ("b.conv", "d.conv")]
    part = Trace(stages=kept, input=trace.input, framework="torch", model_name="part",
                 model_input=trace.model_input)
    with TestClient(create_app(traces=[part]), raise_server_exceptions=False) as c:
        header, _ = unpack(c.get("/api/traces/t1").content)
        rec = next(r for r in header["stages"] if r["name"] == "add3")
        assert rec["inputs"] == [0, None, 2] and rec["sources"] == [10, 13, 19]
        pos = rec["position"]
        ar = c.get(f"/api/traces/t1/stages/{pos}/explain", params={"channel": 1}).json()
        ar = ar["arithmetic"]
        assert [(o["name"], o["value"]) for o in ar["operands"]] == [
            ("a.conv", out(trace, "a.conv", 1, 0, 0)), ("stage 13", None),
            ("c.conv", out(trace, "c.conv", 1, 0, 0))]
        assert "value" not in ar and "missing" in ar["note"]
        pos = next(r["position"] for r in header["stages"] if r["name"] == "cat")
        ar = c.get(f"/api/traces/t1/stages/{pos}/explain").json()["arithmetic"]
        assert ar["type"] == "none" and "not held" in ar["note"]


# -- concatenation -------------------------------------------------------------------
@pytest.mark.parametrize("channel, name, position, at", [
    (0, "a.conv", 0, 0), (3, "a.conv", 0, 3), (4, "d.conv", 5, 0), (5, "d.conv", 5, 1),
    (6, "add", 2, 0), (9, "add", 2, 3)])
def test_concat_channel_maps_to_its_branch(client, trace, channel, name, position, at):
    ar = explain(client, 6, channel=channel, row=2, col=1)["arithmetic"]
    assert ar["type"] == "concat" and ar["axis"] == "channel" and ar["dim"] == 1
    assert ar["at"] == channel
    assert [(p["name"], p["start"], p["stop"]) for p in ar["parts"]] == [
        ("a.conv", 0, 4), ("d.conv", 4, 6), ("add", 6, 10)]
    src = ar["source"]
    assert (src["name"], src["position"], src["at"], src["index"]) == (name, position, at,
                                                                       [at, 2, 1])
    assert src["value"] == ar["value"] == out(trace, name, at, 2, 1) == out(trace, "cat",
                                                                            channel, 2, 1)


def test_flat_concat_maps_units(client, trace):
    ar = explain(client, 18, col=6)["arithmetic"]
    assert (ar["axis"], ar["source"]["name"], ar["source"]["at"]) == ("unit", "fc2", 1)
    assert ar["value"] == out(trace, "fc2", 1)


# -- Keras merge layers ----------------------------------------------------------------
def test_keras_add_concatenate_multiply_show_every_input(client):
    k = make_keras_trace()
    ar = explain(client, 3, channel=2, row=4, col=3, tid="t2")["arithmetic"]
    assert ar["operation"] == "add" and [o["name"] for o in ar["operands"]] == ["conv_a", "conv_c"]
    assert ar["value"] == float(k["add"].output[0, 2, 4, 3])
    ar = explain(client, 4, channel=4, row=1, col=2, tid="t2")["arithmetic"]
    assert (ar["dim"], ar["source"]["name"], ar["source"]["at"]) == (1, "conv_b", 1)
    assert ar["value"] == float(k["conv_b"].output[0, 1, 1, 2])
    ar = explain(client, 5, channel=0, row=0, col=0, tid="t2")["arithmetic"]
    assert ar["symbol"] == "×" and len(ar["operands"]) == 2
    assert ar["value"] == float(k["multiply"].output[0, 0, 0, 0])


# -- narrate ---------------------------------------------------------------------------
def test_narrate_names_every_input_of_a_merge(trace):
    text = describe_stage(trace, trace["add3"])
    assert "a.conv" in text and "b.conv" in text and "c.conv" in text
    assert re.search(r"add", text, re.I)
    cat = describe_stage(trace, trace["cat"])
    assert "a.conv (4)" in cat and "d.conv (2)" in cat and "add (4)" in cat
    se = describe_stage(trace, trace["se.mul"])
    assert "cat" in se and "se.gate" in se and "broadcast" in se
    assert "0.5" in describe_stage(trace, trace["half"])
    # a non-merge stage fed by a stage that is not the one before it names its input
    assert "add" in describe_stage(trace, trace["d.conv"])


# -- the page --------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_browser_clicks_from_a_merge_to_each_input(trace, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(apt-get install -y chromium)", pytrace=False)
    from convlens.server.background import BackgroundServer
    from browser_csp import WATCH_CSP, wait_js

    errors = []
    app = create_app(traces={"branches": trace})
    with BackgroundServer(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 800})
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.add_init_script(WATCH_CSP)
            pg.goto(url)
            wait_js(pg, "window.__convlens && window.__convlens.ready", timeout=60_000)
            title = pg.locator("#stage-title")
            item = lambda pos: pg.locator(f".stage-item[data-position='{pos}']")  # noqa: E731
            # the journey marks merges with their inputs and branches with theirs
            assert item(4).locator(".from").inner_text() == "+ a.conv, b.conv, c.conv"
            assert item(6).locator(".from").inner_text() == "⧺ a.conv, d.conv, add"
            assert item(5).locator(".from").inner_text() == "↳ add"
            assert item(1).locator(".from").inner_text() == "↳ input"  # beside a.conv
            assert item(0).locator(".from").count() == 0 and item(3).locator(".from").count() == 0
            item(4).click()
            assert title.inner_text() == "add3 · merge · 6x7x4"
            links = pg.locator("#stage-links .inputs .stage-link")
            assert links.all_inner_texts() == ["a.conv", "b.conv", "c.conv"]
            assert pg.locator("#stage-links .consumers").inner_text().endswith("nothing (an output)")
            pg.screenshot(path=str(tmp_path / "merge.png"))
            for k, name in enumerate(["a.conv", "b.conv", "c.conv"]):
                pg.locator("#stage-links .inputs .stage-link").nth(k).click()
                assert title.inner_text().startswith(f"{name} · conv")
                back = pg.locator("#stage-links .consumers .stage-link",
                                  has_text=re.compile("^add3$"))
                back.click()
                assert title.inner_text().startswith("add3 · merge")
            # the arithmetic of one value: every operand with its value
            wait_js(pg, "document.querySelectorAll('#grid .tile[data-painted]').length == 4")
            pg.locator("#grid .tile").nth(2).click()
            pg.wait_for_selector("#arithmetic[data-stage='add3'][data-channel='2'] #arith-value")
            r = int(pg.locator("#arithmetic").get_attribute("data-row"))
            c = int(pg.locator("#arithmetic").get_attribute("data-col"))
            shown = [float(v) for v in pg.locator("#arithmetic table.operands td.num")
                     .evaluate_all("tds => tds.map(td => td.dataset.value)")]
            assert shown == [out(trace, n, 2, r, c) for n in ("a.conv", "b.conv", "c.conv")]
            assert float(pg.locator("#arith-value").get_attribute("data-value")) == \
                out(trace, "add3", 2, r, c)
            pg.screenshot(path=str(tmp_path / "add3-arithmetic.png"))
            # a concatenation names the channel of the branch; its link opens that channel
            item(6).click()
            pg.locator("#grid .tile").nth(5).click()
            pg.wait_for_selector("#arithmetic[data-stage='cat'][data-channel='5'] #arith-value")
            text = pg.locator("#arithmetic .join").inner_text()
            assert text.startswith("channel 5 is channel 1 of d.conv")
            pg.screenshot(path=str(tmp_path / "concat.png"))
            pg.locator("#arithmetic .join .stage-link").click()
            pg.wait_for_selector("#arithmetic[data-stage='d.conv'][data-channel='1']")
            assert title.inner_text() == "d.conv · conv · 6x7x2"
            # names are text: a stage named like HTML is shown as it is, never run
            assert item(20).locator(".from").inner_text() == "⋈ a.conv, b.conv"
            item(0).click()
            pg.locator("#stage-links .consumers .stage-link").last.click()
            assert title.inner_text() == f"{HOSTILE} · other · 6x7x4"
            assert pg.evaluate("window.__xss") is None
            assert pg.locator("img").count() == 0
            assert pg.evaluate("window.__csp") == []
        finally:
            browser.close()
    assert errors == []
