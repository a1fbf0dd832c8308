"""Hardening (issue 14): model archives checked before loading, NaN and Inf counted in
every picture, security headers and meta on every page."""
from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens.capture import archive
from convlens.errors import ModelError


# -- model archives -------------------------------------------------------------------
def zip_bomb(path, name="model.weights.h5", size=1 << 30, chunk=1 << 24):
    """A real deflated zip whose one member inflates to ``size`` zero bytes (about 1 MB
    for 1 GiB): the same compressed block, flushed so that it stands alone, repeated."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(chunk)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush(zlib.Z_FINISH)
    n = size // chunk
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    packed = len(block) * n + len(tail)
    fn = name.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, packed, size,
                            len(fn), 0) + fn)
        for _ in range(n):
            f.write(block)
        f.write(tail)
        start = f.tell()
        cd = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, packed, size,
                         len(fn), 0, 0, 0, 0, 0, 0) + fn
        f.write(cd)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), start, 0))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.keras")
    assert path.stat().st_size < 1_100_000
    with zipfile.ZipFile(path) as zf:  # a real archive: Python's zipfile inflates it
        assert zf.infolist()[0].file_size == 1 << 30
        with zf.open("model.weights.h5") as m:
            assert m.read(1 << 20) == bytes(1 << 20)
    return path


def _cli(tmp_path, *args):
    """Run the convlens CLI in a child process under /usr/bin/time (a child forked from
    pytest would inherit pytest's peak in its own ru_maxrss); returns (status, stderr,
    peak RSS in MB)."""
    peak = tmp_path / "peak.txt"
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), sys.executable, "-c",
                        "import sys; from convlens.cli import main; sys.exit(main())",
                        *map(str, args)], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr, int(peak.read_text().split()[-1]) / 1024


def test_a_zip_bomb_is_refused_in_one_line_with_little_memory(bomb, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    status, err, peak_mb = _cli(tmp_path, "run", "--model", bomb, "-o", tmp_path / "out", img)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "inflate to 1.00 GiB" in err and "zip bomb" in err and "MAX_RATIO" in err
    assert 20 < peak_mb < 300
    assert not (tmp_path / "out").exists()


def test_the_same_bomb_as_torchscript_is_refused(bomb, tmp_path, monkeypatch):
    pt = tmp_path / "bomb.pt"
    pt.write_bytes(bomb.read_bytes())
    with pytest.raises(ModelError, match=r"bomb.pt: cannot load this TorchScript model: .* "
                                         r"\(1,028 times"):
        convlens.load_model(pt)
    monkeypatch.setattr(archive, "MAX_RATIO", 2000)  # raised by a user who trusts it:
    assert archive.check_archive(bomb) == 1 << 30     # the next limit is 4 GiB


def test_archive_limits(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:  # stored: no compression, ratio 1
        for k in range(5):
            zf.writestr(f"f{k}", bytes(1000))
    assert archive.check_archive(path) == 5000
    monkeypatch.setattr(archive, "MAX_MEMBERS", 4)
    with pytest.raises(ModelError, match="holds 5 files; the limit is 4 — if you trust"):
        archive.check_archive(path)
    monkeypatch.setattr(archive, "MAX_MEMBERS", 5)
    monkeypatch.setattr(archive, "MAX_UNCOMPRESSED_BYTES", 4999)
    with pytest.raises(ModelError, match="MAX_UNCOMPRESSED_BYTES"):
        convlens.load_model(path)
    monkeypatch.undo()
    # a highly compressible archive below RATIO_FLOOR is fine (small models compress)
    small = tmp_path / "small.keras"
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w", bytes(1 << 20))
    assert archive.check_archive(small) == 1 << 20


keras = pytest.importorskip("keras")


def test_a_truncated_keras_file_says_so(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)])
    model.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut.keras: cannot load this Keras model: the file "
                                         r"is truncated or corrupt") as err:
        convlens.load_model(cut)
    assert "not found" not in str(err.value).lower()
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    with pytest.raises(ModelError, match="truncated or corrupt .a .keras file is a zip"):
        convlens.load_model(text)

def test_a_truncated_torchscript_file_says_so(tmp_path):
    import torch
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1))).save(str(tmp_path / "t.pt"))
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match="cut.pt: cannot load this TorchScript model: the "
                                         "file is truncated or corrupt"):
        convlens.load_model(tmp_path / "cut.pt")


# -- security headers and meta --------------------------------------------------------
from convlens.report import security  # noqa: E402


def test_page_policy_hashes_the_style_block_and_names_no_source():
    doc = "<html><head><meta charset='utf-8'><style>b{color:red}</style></head><body></body>"
    digest = "'sha256-" + __import__("base64").b64encode(
        __import__("hashlib").sha256(b"b{color:red}").digest()).decode() + "'"
    assert security.style_hash("b{color:red}") == digest
    assert security.page_policy(doc) == (
        "default-src 'none'; base-uri 'none'; form-action 'none'; img-src 'self' data:; "
        f"style-src {digest}; frame-ancestors 'none'")
    with_attr = doc.replace("<body>", "<body><span class='x' style='width:3px'>")
    assert security.page_policy(with_attr).endswith(
        f"style-src {digest}; style-src-attr 'unsafe-inline'; frame-ancestors 'none'")
    hardened = security.harden_html(doc)
    assert hardened.startswith(
        "<html><head><meta charset='utf-8'><meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; base-uri 'none'; form-action 'none'; img-src 'self' "
        f"data:; style-src {digest}\"><meta name=\"referrer\" content=\"no-referrer\"><style>")
    for policy in (security.EXPLORER_POLICY, security.API_POLICY, security.page_policy(doc)):
        assert "http" not in policy and "*" not in policy and "unsafe-eval" not in policy
        assert policy.startswith("default-src 'none';") and "frame-ancestors 'none'" in policy


def test_every_written_page_carries_the_meta(tmp_path):
    from convlens.demo.report import write_demo_report
    from convlens.demo.tutorial import _html
    from convlens.report import write_report

    trace = convlens.make_trace(convlens.cat()[:24, :24], net="conv(2, 3x3) relu")
    pages = [write_report(trace, tmp_path / "r.html").read_text(),
             write_demo_report(tmp_path, [("S", [{"title": "t"}])]).read_text(),
             _html([("S", [dict(n=1, title="t", spec=None, result="a.png", note="n")])],
                   "torch", 0)]
    for doc in pages:
        head = doc[:doc.index("<title>")]
        assert head.count('<meta http-equiv="Content-Security-Policy"') == 1
        assert '<meta name="referrer" content="no-referrer">' in head
        policy = head.split('content="')[1].split('"')[0]
        assert policy == security.page_policy(doc).replace("; frame-ancestors 'none'", "")


fastapi = pytest.importorskip("fastapi")


def test_every_server_response_carries_the_headers():
    from fastapi.testclient import TestClient
    from convlens.server import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        tid_frame = c.post("/api/traces", json={"image": "digit-3", "model": "toy",
                                                "spec": "conv(2, 3x3) relu", "seed": 0})
        from convlens.server.encode import unpack
        tid = unpack(tid_frame.content)[0]["trace"]["id"]
        responses = {
            "page": c.get("/"), "module": c.get("/static/app.js"), "info": c.get("/api/info"),
            "frame": tid_frame, "png": c.get(f"/api/traces/{tid}/stages/0/png"),
            "svg": c.get(f"/api/traces/{tid}/architecture.svg"),
            "404": c.get("/api/traces/t999"), "422": c.post("/api/traces", json={"seed": "x"}),
            "docs": c.get("/docs"), "report": c.get(f"/api/traces/{tid}/report.html"),
        }
    assert responses["docs"].status_code == 404  # Swagger UI loads scripts from a CDN
    assert responses["422"].status_code == 422 and responses["404"].status_code == 404
    for name, r in responses.items():
        for k, v in security.HEADERS.items():
            assert r.headers[k] == v, name
        assert r.headers.get_list("content-security-policy") == [
            security.EXPLORER_POLICY if name == "page" else security.page_policy(r.text)
            if name == "report" else security.API_POLICY], name
    assert "script-src 'self'" in security.EXPLORER_POLICY
    assert '<meta http-equiv="Content-Security-Policy"' in responses["report"].text


def test_a_demo_index_opens_under_its_policy_in_chromium(tmp_path):
    """Pictures next to the page ('self' on file://) and its <style> (by hash) load; an
    inline script and a picture from elsewhere are refused."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from browser_csp import WATCH_CSP
    from convlens.demo.tutorial import _html

    Image.new("RGB", (4, 3), (10, 200, 30)).save(tmp_path / "01.png")
    doc = _html([("S", [dict(n=1, title="t", spec="conv(1, 3x3)", shape="2x2x1", note="n",
                             result="01.png", journey="01.png")])], "torch", 0)
    (tmp_path / "index.html").write_text(doc.replace(
        "</body>", "<script>window.__ran = 1</script><img src='http://127.0.0.2:9/x.png'>"
        "</body>"))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.add_init_script(WATCH_CSP)
        page.goto((tmp_path / "index.html").as_uri())
        got = page.evaluate("""async () => {
            document.querySelectorAll('details').forEach(d => d.open = true);
            const imgs = [...document.images].slice(0, 2);
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
            return [imgs.map(i => i.naturalWidth), getComputedStyle(document.body).maxWidth,
                    window.__ran === undefined, window.__csp.slice().sort()]; }""")
        browser.close()
    assert got == [[4, 4], "1100px", True, ["CSP: img-src http://127.0.0.2:9/x.png",
                                              "CSP: script-src-elem inline"]]


# -- the server under load: a bounded pool, 503 when full --------------------------------
def test_a_full_pool_answers_503_with_retry_after_and_light_routes_still_answer():
    import http.client
    import json
    import threading
    import time

    from convlens.server import create_app
    from convlens.server.background import BackgroundServer

    app = create_app(workers=1, queue=1)
    pool = app.state.pool
    gate = threading.Event()
    pool.hook = gate.wait  # every job blocks in its worker until the test lets it go
    body = json.dumps({"image": "digit-3", "model": "toy", "spec": "conv(2, 3x3) relu"})
    js = {"Content-Type": "application/json"}
    answers = []

    def ask():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("POST", "/api/traces", body, js)
        r = conn.getresponse()
        answers.append((r.status, r.read()[:4]))
        conn.close()

    with BackgroundServer(app) as url:
        host, port = url[len("http://"):-1].split(":")
        port = int(port)
        asking = [threading.Thread(target=ask) for _ in range(2)]
        for t in asking:
            t.start()
        end = time.monotonic() + 30  # until one job holds the worker and one waits
        while not (pool.pending == 2 and pool.running == 1):
            assert time.monotonic() < end, (pool.pending, pool.running)
            time.sleep(0.01)
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("POST", "/api/traces", body, js)
        busy = conn.getresponse()
        error = json.loads(busy.read())["error"]
        assert busy.status == 503 and int(busy.getheader("Retry-After")) >= 1
        assert error["type"] == "Busy" and error["message"].startswith(
            "the server is busy (2 requests in progress or waiting); try again in")
        assert busy.getheader("X-Content-Type-Options") == "nosniff"
        conn.request("GET", "/api/info")  # what computes nothing is not queued
        info = conn.getresponse()
        assert info.status == 200 and json.loads(info.read())["default_model"] == "toy"
        conn.close()
        assert answers == [] and pool.pending == 2
        gate.set()
        for t in asking:
            t.join(60)
    assert answers == [(200, b"CLv1")] * 2 and pool.pending == 0


def test_work_pool_arguments():
    from convlens.server.pool import WorkPool
    with pytest.raises(ValueError, match="workers >= 1 and queue >= 0; got 0 and 2"):
        WorkPool(0, 2)
    pool = WorkPool(2, 0)
    pool.seconds, pool.pending = 0.5, 3
    assert pool.retry_after() == 1  # ceil(0.5 s * 4 jobs / 2 workers)
    pool.seconds = 0.6
    assert pool.retry_after() == 2
    # a job is let in while the work ahead of it likely ends within max_wait
    import anyio
    from convlens.server.pool import Busy
    pool = WorkPool(2, 10, max_wait=0.1875)
    for pending, admitted in [(1, True), (4, True), (5, False), (12, False)]:
        pool.seconds, pool.pending = 0.125, pending  # (each job run updates the average)  # (4 jobs: 3 ahead of the new one: 0.1875 s on 2 workers)
        try:
            assert anyio.run(pool.run, lambda: "done") == "done" and admitted
        except Busy as exc:
            assert not admitted and str(exc).startswith(f"the server is busy ({pending} ")
        assert pool.pending == pending


# -- NaN and inf in every picture ---------------------------------------------------------
from convlens import render  # noqa: E402
from convlens.render.colorbar import legend  # noqa: E402
from convlens.render.colormaps import BAD_COLOR  # noqa: E402
from convlens.render.scaleset import ScaleSet  # noqa: E402
from convlens.trace import Stage, Trace  # noqa: E402

MAGENTA = tuple(int(v) for v in BAD_COLOR)


def mk(arr, name="s", kind="conv", index=0) -> Stage:
    return Stage(index, name, kind, "Op", np.asarray(arr, dtype=np.float32))


def px(fig, tile, row, col):
    z = int(tile["zoom"])
    x0, y0, _, _ = tile["box"]
    return tuple(int(v) for v in fig.to_array()[y0 + row * z + z // 2, x0 + col * z + z // 2])


def colour(cmap, index):
    return tuple(int(v) for v in render.lut(cmap)[index])


def drawn_at_bottom(fig, lines, width, margin=10):
    """The legend block of ``lines`` is the last thing drawn, at the left margin."""
    block = np.asarray(legend(lines, width).image.convert("RGB"))
    h, w = block.shape[:2]
    return np.array_equal(fig.to_array()[-margin - h:-margin, margin:margin + w], block)


def test_heatmap_counts_nan_and_inf_and_colours_the_rest_as_before():
    x = np.array([[[[np.nan, 1.0, 2.0], [np.inf, -np.inf, 0.0]]]])
    fig = render.heatmap(mk(x))
    p = fig.meta["panels"][0]
    t = p["tiles"][0]
    note = "magenta = NaN (1 of 6 values) · +inf 1, -inf 1 drawn as the end colours"
    assert (fig.meta["nan"], fig.meta["inf"], p["nan"], p["inf"]) == (1, 2, 1, 2)
    assert p["nonfinite"] == note and p["labels"] == ["0", "2"]  # the finite range
    # finite values exactly as without the NaN: 0 ... 2 on viridis, 1 -> row 128
    assert [px(fig, t, 0, c) for c in (1, 2)] == [colour("viridis", 128), colour("viridis", 255)]
    assert px(fig, t, 1, 2) == colour("viridis", 0)
    assert px(fig, t, 0, 0) == MAGENTA
    assert px(fig, t, 1, 0) == colour("viridis", 255) and px(fig, t, 1, 1) == colour("viridis", 0)
    assert drawn_at_bottom(fig, [note], 300)
    clean = render.heatmap(mk(np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=0.0)))
    assert (clean.meta["nan"], clean.meta["inf"]) == (0, 0)
    assert "nonfinite" not in clean.meta["panels"][0]
    assert clean.size[1] < fig.size[1]  # no line when there is nothing to name


def test_an_all_nan_map_is_never_constant_0():
    fig = render.heatmap(mk(np.full((1, 1, 2, 2), np.nan)))
    p = fig.meta["panels"][0]
    assert p["labels"] == ["no finite values"] and p["empty"] is True
    assert (fig.meta["nan"], fig.meta["inf"]) == (4, 0)
    assert p["nonfinite"] == "magenta = NaN (all 4 values)"
    assert px(fig, p["tiles"][0], 1, 1) == MAGENTA
    for norm in ("map", "stage", "standard"):
        s = render.Scale.for_data(np.full((3, 3), np.nan), norm)
        assert s.empty and s.describe() == "no finite values"
        assert all("constant" not in label for _, label in s.ticks())
    # all +inf: no finite value either; drawn as the top colour
    inf = render.heatmap(mk(np.full((1, 1, 2, 2), np.inf)))
    q = inf.meta["panels"][0]
    assert q["labels"] == ["no finite values"] and (inf.meta["nan"], inf.meta["inf"]) == (0, 4)
    assert px(inf, q["tiles"][0], 0, 0) == colour("viridis", 255)
    # an all-zero map still is "constant 0"
    assert render.heatmap(mk(np.zeros((1, 1, 2, 2)))).meta["panels"][0]["labels"] == \
        ["constant 0"]


def test_grid_labels_each_map_and_counts_all_of_them():
    x = np.zeros((1, 3, 2, 2), np.float32)
    x[0, 0] = np.nan                      # all NaN
    x[0, 1] = [[1.0, np.inf], [3.0, 4.0]]  # one +inf
    x[0, 2] = [[-1.0, 2.0], [np.nan, -np.inf]]
    fig = render.grid(mk(x), norm="map")
    p = fig.meta["panels"][0]
    assert (fig.meta["nan"], fig.meta["inf"], p["nan"], p["inf"]) == (5, 2, 5, 2)
    assert [t["labels"] for t in p["tiles"]] == [["#0", "no finite values"],
                                                  ["#1", "0 ... 4"], ["#2", "-2 ... 2"]]
    assert [t.get("empty", False) for t in p["tiles"]] == [True, False, False]
    assert p["nonfinite"] == ("magenta = NaN (5 of 12 values) · +inf 1, -inf 1 drawn as "
                              "the end colours")
    t0, t1, t2 = p["tiles"]
    assert px(fig, t0, 0, 0) == MAGENTA and px(fig, t2, 1, 0) == MAGENTA
    assert px(fig, t1, 0, 1) == colour("viridis", 255) and px(fig, t1, 0, 0) == colour("viridis", 64)
    assert px(fig, t2, 1, 1) == colour("RdBu_r", 0) and px(fig, t2, 0, 0) == colour("RdBu_r", 64)
    sset = ScaleSet.per_map(x[0])
    assert sset.describe() == [sset.scale(i).describe() for i in range(3)] == \
        ["no finite values", "0 ... 4", "-2 ... 2"]
    assert sset.compact() == ["no finite", "0..4", "±2"]
    assert sset.metas() == [sset.scale(i).as_meta() for i in range(3)]
    # the stage range ignores the NaN and the infs: -2 ... 4 -> a diverging -4 ... 4
    shared = render.grid(mk(x), norm="stage").meta["panels"][0]
    assert shared["labels"] == ["-4", "0", "4"] and shared["nan"] == 5


def test_rgb_bars_and_journey_panels_count_too():
    rgb = np.ones((1, 3, 2, 2), np.float32)
    rgb[0, 1, 0, 0] = np.nan
    fig = render.rgb(mk(rgb))
    p = fig.meta["panels"][0]
    assert (fig.meta["nan"], fig.meta["inf"]) == (1, 0) and p["notes"][-1] == p["nonfinite"]
    assert px(fig, p["tiles"][0], 0, 0) == MAGENTA
    assert px(fig, p["tiles"][0], 1, 1) == (255, 255, 255)
    vec = np.array([[0.5, np.nan, np.inf, 1.0]], np.float32)
    b = render.bars(mk(vec, "fc", "dense"))
    assert (b.meta["nan"], b.meta["inf"]) == (1, 1)
    assert b.meta["panels"][0]["nonfinite"] == ("magenta = NaN (1 of 4 values) · +inf 1, "
                                                "-inf 0 drawn as the end colours")
    conv = np.zeros((1, 2, 3, 3), np.float32)
    conv[0, 0] = np.nan
    trace = Trace([mk(conv, "conv1", "conv", 0), mk(vec, "fc", "dense", 1)],
                  np.zeros((1, 3, 3, 3), np.float32), "numpy", "toy")
    j = render.journey(trace)
    panels = {q["stage"]: q for q in j.meta["panels"]}
    assert (panels["conv1"]["nan"], panels["fc"]["nan"], panels["fc"]["inf"]) == (9, 1, 1)
    assert panels["conv1"]["nonfinite"] in panels["conv1"]["notes"]
    assert "nan" not in panels["input"] and (j.meta["nan"], j.meta["inf"]) == (10, 1)
