"""The self-contained HTML report: no external URL, every picture decodes in Chromium."""
import re

import numpy as np
import pytest
from browser_csp import WATCH_CSP
from htmlcheck import Elements, rgb
from PIL import Image

import convlens
from convlens import cli
from convlens.demo.report import write_demo_report
from convlens.report import ReportOptions, report_html, write_report
from convlens.render.text import fmt

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def lenet_trace():
    return convlens.make_trace(convlens.cat(), model="zoo:lenet")


def check_self_contained(text: str) -> Elements:
    """Every src is a data: URI, every href an anchor on the page, no url() or http(s)."""
    doc = Elements(text)
    for tag, attrs, _ in doc.items:
        for key in ("src", "srcset", "poster", "data"):
            if key in attrs:
                assert attrs[key].startswith("data:image/"), f"<{tag} {key}> not embedded"
        if "href" in attrs:
            assert attrs["href"].startswith("#") and attrs["href"][1:] in doc.ids, attrs["href"]
        assert tag not in ("script", "link", "iframe", "object", "embed", "base")
    stripped = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(?i)(https?:|ftp:|file:|url\(|@import)", stripped)
    return doc


def test_report_is_self_contained_and_navigable(tmp_path, lenet_trace):
    path = lenet_trace.to_html(tmp_path / "r.html")
    doc = check_self_contained(path.read_text(encoding="utf-8"))
    for s in lenet_trace.stages:                           # every stage: anchor + TOC link
        assert f"stage-{s.index}" in doc.ids
        assert ("a", {"href": f"#stage-{s.index}", "title": s.shape_str}, 0) in doc.items
    for section in ("input", "architecture", "journey", "explanations", "statistics"):
        assert section in doc.ids
    text = doc.text
    top = lenet_trace.predictions(5)[0]
    assert f"1 {top[0].name} {100 * top[0].probability:.1f}%" in text
    for row in lenet_trace.stats():                        # table and per-stage rows
        assert text.count(f"{row['name']} {row['kind']} {row['op']} {row['shape']} "
                          f"{fmt(row['min'])} {fmt(row['max'])}") == 2
    # conv1 (6 maps of 28x28): 6 tiles stored at 28x28, the first 8 visible
    sec = text[text.index("0. conv1"):text.index("1. relu1")]
    assert "dilation=1x1" in sec and "6 filter(s) of 5x5" in sec


def test_channel_tiles_use_the_stage_scale(tmp_path, lenet_trace):
    html = report_html(lenet_trace, ReportOptions(layers="conv2", max_channels=3, first=2,
                                                  explanations=False))
    doc = check_self_contained(html)
    tiles = [(a, d) for a, d in doc.imgs() if a.get("class") == "cl-px"]
    assert [(a["alt"], d) for a, d in tiles] == [("#0", 0), ("#1", 0), ("#2", 1)]
    st = lenet_trace["conv2"]
    scale = convlens.render.Scale.from_range(float(st.output.min()), float(st.output.max()))
    for c, (a, _) in enumerate(tiles):
        assert np.array_equal(rgb(a["src"]), scale.colorize(st.output[0, c]))
    assert "channels 0..2 of 16 included (13 left out)" in doc.text
    assert "explanations" not in doc.ids and [i for i in doc.ids if i.startswith("stage-")] == \
        ["stage-3"]


def test_report_options_are_checked(tmp_path, lenet_trace):
    with pytest.raises(convlens.ConvlensError, match="thumb=2 is not valid"):
        write_report(lenet_trace, tmp_path / "r.html", thumb=2)
    with pytest.raises(convlens.ConvlensError, match="unknown report option.*max_chanels"):
        write_report(lenet_trace, tmp_path / "r.html", max_chanels=3)
    with pytest.raises(convlens.ConvlensError, match="needs a convlens Trace"):
        write_report(lenet_trace["conv1"], tmp_path / "r.html")
    with pytest.raises(convlens.TraceError, match="matches no stage"):
        write_report(lenet_trace, tmp_path / "r.html", layers="nope")


def test_report_opens_in_chromium_with_every_image_decoded(tmp_path, lenet_trace):
    from playwright.sync_api import sync_playwright

    path = write_report(lenet_trace, tmp_path / "r.html", max_channels=12)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        blocked = []  # the page's Content-Security-Policy <meta> lets everything through
        page.on("console", lambda m: blocked.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.add_init_script(WATCH_CSP)
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        sizes = page.evaluate("""async () => {
            document.querySelectorAll('details').forEach(d => d.open = true);
            const imgs = [...document.images];
            imgs.forEach(i => i.loading = 'eager');
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
            return imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
        }""")
        title = page.title()
        blocked += page.evaluate("window.__csp")
        styled = page.evaluate("""() => [getComputedStyle(document.querySelector(
            'nav#contents')).position, document.querySelector('.cl-pbar').offsetWidth,
            document.querySelector('.cl-pbar').getAttribute('style')]""")
        page.click("a[href='#stage-5']")
        assert page.evaluate("location.hash") == "#stage-5"
        browser.close()
    html = path.read_text(encoding="utf-8")
    assert len(sizes) == html.count("<img ") and len(sizes) > 40
    assert all(c and w > 0 and h > 0 for c, w, h in sizes)
    assert title == "convlens report: zoo:lenet"
    assert all(u.startswith(("file:", "data:")) for u in requests)
    assert blocked == []
    # the <style> block (allowed by its hash) and the bars' style attributes apply
    assert styled[0] == "sticky" and styled[2] == f"width:{styled[1]}px" and styled[1] > 0


def test_cli_report_with_a_toy_network(tmp_path, monkeypatch, capsys):
    img = tmp_path / "cat.png"
    Image.fromarray((convlens.cat()[:60, :80] * 255).round().astype(np.uint8)).save(img)
    out = tmp_path / "out" / "toy.html"
    rc = cli.main(["report", str(img), "--net", "conv(4, 3x3) relu maxpool(2)", "--seed", "1",
                   "--max-channels", "2", "--title", "toy", "-o", str(out)])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    doc = check_self_contained(out.read_text(encoding="utf-8"))
    assert {"stage-0", "stage-1", "stage-2"} <= doc.ids and "toy" in doc.text
    assert "No predictions" in doc.text
    rc = cli.main(["report", str(img), "--net", "conv(4, 3x3)", "--thumb", "1", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "thumb=1 is not valid" in err


def test_demo_report_embeds_the_demo_pictures(tmp_path):
    Image.new("RGB", (4, 3), (10, 200, 30)).save(tmp_path / "01_result.png")
    frames = [Image.new("P", (5, 5), k) for k in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    sections = [("Experiments", [dict(n=1, title="One", spec="conv(1, 3x3)", shape="3x4x1",
                                      note="a note", said="it said", result="01_result.png",
                                      journey=None)]),
                ("Explanations", [{"title": "Anim", "file": "anim.gif", "caption": "moving"}])]
    path = write_demo_report(tmp_path, sections)
    assert path == tmp_path / "report.html"
    doc = check_self_contained(path.read_text(encoding="utf-8"))
    srcs = [a["src"] for a, _ in doc.imgs()]
    assert [s.split(";")[0] for s in srcs] == ["data:image/png", "data:image/gif"]
    assert rgb(srcs[0])[0, 0].tolist() == [10, 200, 30]
    assert "1. One" in doc.text and "moving" in doc.text
    sections[1][1][0]["file"] = "missing.png"
    with pytest.raises(convlens.ConvlensError, match="missing.png: no such file"):
        write_demo_report(tmp_path, sections)


def test_same_trace_same_report_bytes(lenet_trace):
    opts = ReportOptions(layers="conv1,pool2", explanations=False)
    assert report_html(lenet_trace, opts) == report_html(lenet_trace, opts)
