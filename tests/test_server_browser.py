"""The explorer page in a real browser: Playwright driving Debian's Chromium, headless.

The server runs in a background thread on a free port; screenshots of each step are
saved under the test's tmp_path.  Chromium must be at /usr/bin/chromium (the project's
setup installs Debian's ``chromium`` package).
"""
import os
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import convlens  # noqa: E402
from browser_csp import WATCH_CSP, wait_js  # noqa: E402
from convlens import ops  # noqa: E402
from convlens.pipeline import trace_spec  # noqa: E402
from convlens.render.scale import Scale  # noqa: E402
from convlens.server import create_app  # noqa: E402
from convlens.server.background import BackgroundServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SPEC = "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)"

@pytest.fixture(scope="module")
def server():
    import torch
    threads = torch.get_num_threads()
    with BackgroundServer(create_app(torch_threads=1)) as url:
        yield url
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(apt-get install -y chromium)", pytrace=False)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, tmp_path):
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # the Content-Security-Policy header lets everything the page does through
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text
          else None)
    pg.add_init_script(WATCH_CSP)
    response = pg.goto(server)
    assert "script-src 'self';" in response.headers["content-security-policy"]
    wait_js(pg, "window.__convlens && window.__convlens.ready", timeout=60_000)
    pg.shot = lambda name: pg.screenshot(path=str(tmp_path / f"{name}.png"))
    pg.errors = errors
    yield pg
    errors += pg.evaluate("window.__csp")
    pg.close()
    assert errors == []


def renders(pg):
    return pg.evaluate("window.__convlens.renders.length")


def wait_render(pg, n):
    wait_js(pg, f"window.__convlens.renders.length > {n}", timeout=30_000)


def canvas_pixels(pg, selector):
    """The RGBA pixels of a canvas, as an (H, W, 4) array."""
    w, h, data = pg.eval_on_selector(selector, """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return [c.width, c.height, Array.from(d)]; }""")
    return np.array(data, dtype=np.uint8).reshape(h, w, 4)


def stage_item(pg, name):
    return pg.locator(".stage-item", has=pg.locator(".name", has_text=re.compile(f"^{name}$")))


def test_page_shows_the_cats_journey(page):
    ref = trace_spec(convlens.cat(), SPEC, seed=0)
    items = page.locator(".stage-item")
    assert items.count() == 1 + len(ref.stages)
    assert page.locator(".stage-item .name").all_inner_texts() == ["input"] + ref.names
    assert page.locator(".stage-item .shape").all_inner_texts() == \
        ["300x451x3"] + [s.shape_str for s in ref.stages]
    shown = canvas_pixels(page, ".stage-item[data-position='-1'] canvas")[..., :3]
    np.testing.assert_array_equal(shown, np.round(convlens.cat() * 255).astype(np.uint8))
    conv1 = canvas_pixels(page, ".stage-item[data-position='0'] canvas")
    assert conv1.shape[:2] == (69, 101)  # 2x2 mini-grid of 34x50 previews, 1 px apart
    # channel 1, coloured in the browser, is convlens' stage scale applied to the
    # 8-bit preview (9x9 block means of the real output)
    out = ref["conv1"].output[0]
    block = np.pad(out[1].astype(np.float64), ((0, 306 - 298), (0, 450 - 449)),
                   constant_values=np.nan)
    mean = np.nanmean(block.reshape(34, 9, 50, 9), axis=(1, 3))
    lo, hi = float(out[1].min()), float(out[1].max())
    sent = lo + np.rint((mean - lo) / ((hi - lo) / 255)) * (hi - lo) / 255
    expect = Scale.from_range(float(out.min()), float(out.max()), "stage").colorize(sent)
    got = conv1[:34, 51:101, :3]
    assert (got == expect).all(axis=-1).mean() > 0.99
    assert np.abs(got.astype(int) - expect).max() <= 8
    page.shot("journey")


def test_the_policy_allows_the_dialog_and_refuses_inline_scripts(page):
    page.locator("#arch-btn").click()  # a same-origin SVG in an <img>
    wait_js(page, "(i => i && i.complete && i.naturalWidth > 0)"
                           "(document.querySelector('#arch-body img'))")
    page.locator("#arch-dialog button").click()  # <form method=dialog> under form-action
    wait_js(page, "!document.querySelector('#arch-dialog').open")
    assert page.evaluate("window.__csp") == []
    # what the page never does is refused: the watcher sees it (then forget it)
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__ran = 1'; document.body.append(s);
        const i = new Image(); i.src = 'http://127.0.0.2:9/x.png'; }""")
    wait_js(page, "window.__csp.length == 2")
    assert sorted(page.evaluate("window.__csp.splice(0)")) == [
        "CSP: img-src http://127.0.0.2:9/x.png", "CSP: script-src-elem inline"]
    assert page.evaluate("window.__ran") is None
    page.wait_for_timeout(200)  # the two console lines that go with them
    assert len(page.errors) == 2 and all("Content Security Policy" in e for e in page.errors)
    page.errors.clear()


def test_changing_the_kernel_size_changes_the_stage_images(page):
    before = canvas_pixels(page, ".stage-item[data-position='0'] canvas")
    n = renders(page)
    page.get_by_label("conv1 kernel size").fill("7")
    wait_render(page, n)
    assert stage_item(page, "conv1").locator(".shape").inner_text() == "294x445x3"
    assert page.locator("#spec-text").inner_text().startswith("conv(3, 7x7) relu")
    after = canvas_pixels(page, ".stage-item[data-position='0'] canvas")
    assert before.shape[:2] == (69, 101) and after.shape[:2] == (75, 113)  # 37x56 previews
    assert np.abs(after[:34, :50].astype(int) - before[:34, :50]).mean() > 5
    page.shot("kernel7")


def test_clicking_a_stage_and_a_channel_opens_them(page):
    stage_item(page, "maxpool1").click()
    assert page.locator("#stage-title").inner_text() == "maxpool1 · pool · 99x149x3"
    wait_js(page, "document.querySelectorAll('#grid .tile[data-painted]').length == 3")
    page.locator("#grid .tile").nth(2).click()
    page.wait_for_selector("#arithmetic[data-stage='maxpool1'][data-channel='2'] #arith-value")
    assert page.locator("#channel-title").inner_text().startswith("maxpool1 · channel 2 of 3")
    assert "max = " in page.locator("#arithmetic").inner_text()
    # the download links work
    trace = page.request.get(page.eval_on_selector("#dl-trace", "a => a.href"))
    assert trace.ok and trace.body()[:2] == b"PK"  # a .npz is a zip
    png = page.request.get(page.eval_on_selector("#dl-stage", "a => a.href"))
    assert png.ok and png.body()[:8] == b"\x89PNG\r\n\x1a\n"
    # keyboard: right arrow in the journey moves to the next stage
    stage_item(page, "maxpool1").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#stage-title").inner_text().startswith("conv2 · conv")
    page.shot("stage-channel")


def _hover(page, row, col):
    """Point at about (row, col) of the channel; returns the (row, col) the page
    explained and the value it shows (mouse positions are whole CSS pixels)."""
    box = page.locator("#channel-canvas").bounding_box()
    h, w = page.eval_on_selector("#channel-canvas", "c => [c.height, c.width]")
    before = page.locator("#channel-canvas").get_attribute("aria-valuetext")
    page.mouse.move(box["x"] + (col + 0.5) * box["width"] / w,
                    box["y"] + (row + 0.5) * box["height"] / h)
    wait_js(page, """before => {
        const c = document.querySelector('#channel-canvas');
        const a = document.querySelector('#arithmetic');
        const now = c.getAttribute('aria-valuetext');
        return now !== before && now === `row ${a.dataset.row}, col ${a.dataset.col}`
            && document.querySelector('#arith-value'); }""", arg=before)
    a = page.locator("#arithmetic")
    r, c = int(a.get_attribute("data-row")), int(a.get_attribute("data-col"))
    assert abs(r - row) <= 2 and abs(c - col) <= 2
    return r, c, float(page.locator("#arith-value").get_attribute("data-value"))


def test_hovering_shows_the_arithmetic_that_convlens_ops_computes(page):
    ref = trace_spec(convlens.cat(), SPEC, seed=0)
    stage_item(page, "conv1").click()
    page.locator("#grid .tile").nth(1).click()
    page.wait_for_selector("#arithmetic[data-stage='conv1'][data-channel='1'] #arith-value")
    w, b = ref["conv1"].weights["weight"], ref["conv1"].weights["bias"]
    x = ref.model_input[0]
    for row, col in [(100, 200), (7, 3)]:
        r, c, value = _hover(page, row, col)
        assert value == ops.conv2d_at(x, w, b, 1, r, c)["value"]
    text = page.locator("#arithmetic").inner_text()
    assert "3x3 window of input × kernel, summed over 3 input channels" in text
    assert f"receptive field: input rows {r}..{r + 2}, cols {c}..{c + 2}" in text
    assert page.locator("#input-overlay").get_attribute("data-rf") == f"{r},{r + 2},{c},{c + 2}"
    # the arrow keys move the probe one value at a time
    page.locator("#channel-canvas").focus()
    page.keyboard.press("ArrowDown")
    wait_js(page, f"document.querySelector('#arithmetic').dataset.row == '{r + 1}'")
    assert float(page.locator("#arith-value").get_attribute("data-value")) == \
        ops.conv2d_at(x, w, b, 1, r + 1, c)["value"]
    page.shot("conv-arithmetic")
    stage_item(page, "maxpool2").click()
    page.wait_for_selector("#arithmetic[data-stage='maxpool2'][data-channel='1'] #arith-value")
    r, c, value = _hover(page, 10, 20)
    assert value == ops.pool2d_at(ref["relu2"].output[0], 2, 1, r, c)["value"]


def test_colour_changes_repaint_without_asking_the_server(page):
    before = canvas_pixels(page, ".stage-item[data-position='0'] canvas")
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.select_option("#cmap-select", "magma")
    page.select_option("#norm-select", "map")
    after = canvas_pixels(page, ".stage-item[data-position='0'] canvas")
    assert asked == [] and np.abs(after.astype(int) - before).mean() > 5
    assert page.locator("#stage-sub").inner_text().endswith("(hover a map to read it)")


def test_uploading_a_png_works(page, tmp_path):
    yy, xx = np.mgrid[0:40, 0:60]
    arr = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)
    path = tmp_path / "gradient.png"
    Image.fromarray(arr).save(path)
    n = renders(page)
    page.set_input_files("#upload-input", str(path))
    wait_render(page, n)
    assert page.locator("#image-select option:checked").inner_text() == "gradient.png (40x60)"
    shown = canvas_pixels(page, ".stage-item[data-position='-1'] canvas")[..., :3]
    np.testing.assert_array_equal(shown, arr)
    assert stage_item(page, "conv1").locator(".shape").inner_text() == "38x58x3"
    page.shot("upload")


def test_a_bad_upload_shows_a_readable_error_and_the_page_keeps_working(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    page.set_input_files("#upload-input", str(path))
    page.wait_for_selector("#error:not([hidden])")
    text = page.locator("#error-text").inner_text()
    assert text.startswith("notes.png: not an image file Pillow can read")
    page.shot("bad-upload")
    n = renders(page)
    page.get_by_label("weight seed").fill("3")
    wait_render(page, n)
    assert page.locator("#error").is_hidden()
    assert page.locator("#spec-text").inner_text() == SPEC
    stage_item(page, "relu2").click()
    assert page.locator("#stage-title").inner_text() == "relu2 · activation · 97x147x3"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A small ONNX model the page may load, and a TorchScript file it must refuse."""
    import warnings

    import torch
    root = tmp_path_factory.mktemp("model-files")
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(4, 2, 3)).eval()
    x = torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():  # (the TorchScript-based exporter's deprecation notice)
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(root / "tiny.onnx"), dynamo=False,
                          input_names=["image"], dynamic_axes={"image": {2: "h", 3: "w"}})
    torch.jit.script(net).save(str(root / "tiny.pt"))
    return root


def test_loading_a_model_file_shows_its_stages_and_refuses_torchscript(page, model_files):
    path = model_files / "tiny.onnx"
    ref = convlens.capture(convlens.load_model(path).model, convlens.cat())
    n = renders(page)
    page.set_input_files("#model-input", str(path))
    wait_render(page, n)
    assert page.locator("#model-select option:checked").inner_text() == "tiny.onnx (uploaded)"
    assert page.locator(".stage-item .name").all_inner_texts() == ["input"] + ref.names
    assert page.locator(".stage-item .shape").all_inner_texts()[1:] == \
        [s.shape_str for s in ref.stages]
    assert page.locator("#preprocess-line").inner_text() == \
        "input preprocessing (the model's own): none"
    assert page.locator("#model-text").inner_text().startswith("tiny.onnx (onnx), 4 stages.")
    wait_js(page, "document.querySelectorAll('#grid .tile[data-painted]').length == 4")
    page.shot("model-file")
    n = renders(page)
    page.select_option("#preprocess-select", "caffe")
    wait_render(page, n)
    assert page.locator("#preprocess-line").inner_text().startswith(
        "input preprocessing (preset caffe): RGB -> BGR · scale x255 · normalize mean (103.939")
    page.set_input_files("#model-input", str(model_files / "tiny.pt"))
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error-text").inner_text().startswith(
        "tiny.pt: a TorchScript archive or a torch.save pickle, which can run code when loaded; "
        "the page loads only .h5, .keras, .onnx, .pt2 files")
    assert page.locator("#model-select").input_value() == "m1"  # the page keeps the model
    page.shot("model-refused")
