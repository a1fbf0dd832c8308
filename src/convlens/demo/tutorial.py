"""``convlens demo``: every experiment of the 2017 cat tutorial, on the bundled cat (or
the user's own picture, ``image=``).

Writes one PNG of each experiment's result, its journey, and an ``index.html``
showing each with its network spec, output shape and a sentence (computed from
the real numbers) of what changed.  Sections whose extras are not installed are
skipped, named in one line at the end (see :mod:`convlens.demo.extras`).
"""
from __future__ import annotations

import html
import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np
from PIL import Image

from convlens import render
from convlens.demo.extras import MissingExtra, is_skipped
from convlens.images import cat, load_image
from convlens.analysis.narrate import describe_stage
from convlens.pipeline import trace_spec
from convlens.render.figure import Figure, save_png
from convlens.trace import Trace

__all__ = ["EXPERIMENTS", "Experiment", "run_demo"]


@dataclass(frozen=True)
class Experiment:
    title: str
    spec: str | None  # None: the original image
    view: str  # "rgb", "heatmap" or "image"
    note: str


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("The original image", None, "image",
               "Chelsea the cat, 300x451 RGB, values scaled to [0, 1]."),
    Experiment("Convolution: 3 filters of 3x3, shown as RGB", "conv(3, 3x3)", "rgb",
               "Three random 3x3 filters make three new channels, shown as red, green and blue."),
    Experiment("Convolution: 3 filters of 10x10, shown as RGB", "conv(3, 10x10)", "rgb",
               "Bigger filters average over more pixels: the cat gets blurrier."),
    Experiment("Convolution: 1 filter of 3x3, heatmap", "conv(1, 3x3)", "heatmap",
               "One filter gives one channel, drawn as a heatmap."),
    Experiment("Convolution: 1 filter of 15x15, heatmap", "conv(1, 15x15)", "heatmap",
               "A 15x15 filter sees a wide neighbourhood: edges smear out."),
    Experiment("Convolution + ReLU", "conv(1, 3x3) relu", "heatmap",
               "ReLU keeps positives and sets negatives to zero."),
    Experiment("Convolution + max pooling 2x2", "conv(1, 3x3) maxpool(2)", "heatmap",
               "Max pooling keeps the largest value of each 2x2 window: half the size per side."),
    Experiment("Convolution + max pooling 5x5", "conv(1, 3x3) maxpool(5)", "heatmap",
               "A 5x5 pool keeps one value in 25: one fifth of the size per side."),
    Experiment("Convolution + ReLU + max pooling 5x5", "conv(1, 3x3) relu maxpool(5)", "heatmap",
               "The whole conv-ReLU-pool block of a CNN."),
    Experiment("LeNet cat: filters (1, 1), pools (3, 3)",
               "conv(1, 3x3) relu maxpool(3) conv(1, 3x3) relu maxpool(3)", "heatmap",
               "Two conv-ReLU-pool blocks, as in LeNet, one filter each."),
    Experiment("LeNet cat: filters (3, 1), pools (3, 2)",
               "conv(3, 3x3) relu maxpool(3) conv(1, 3x3) relu maxpool(2)", "heatmap",
               "Three filters in the first block, one in the second."),
    Experiment("LeNet cat: filters (3, 3), pools (3, 2), RGB",
               "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)", "rgb",
               "Three filters in both blocks, the result shown as RGB."),
    Experiment("3 filters + ReLU, RGB", "conv(3, 3x3) relu", "rgb",
               "Three channels after ReLU."),
    Experiment("3 filters + max pooling 5x5, RGB", "conv(3, 3x3) maxpool(5)", "rgb",
               "Three channels after a 5x5 max pool."),
    Experiment("3 filters + ReLU + max pooling 5x5, RGB", "conv(3, 3x3) relu maxpool(5)", "rgb",
               "Three channels after ReLU and a 5x5 max pool."),
)


def _result_figure(trace: Trace, view: str) -> Figure:
    last = trace.stages[-1]
    if view == "rgb":
        return render.rgb(last)
    return render.heatmap(last)


def _progress(out: TextIO, i: int, n: int, title: str) -> None:
    bar = "#" * (20 * i // n) + "-" * (20 - 20 * i // n)
    out.write(f"\r[{bar}] {i}/{n} {title[:50]:<50}")
    out.flush()


def explanations_section(outdir: Path, backend: str = "torch", seed: int = 0, *,
                         image: np.ndarray | None = None) -> tuple[str, list[dict]]:
    """The teaching figures (convlens.explain) made from the cat (or ``image``, an
    ``(H, W, 3)`` array in [0, 1]) and the demo's networks."""
    from convlens.demo.explain import demo_section

    subject = "the cat" if image is None else "your image"
    image = cat() if image is None else image
    items = demo_section(outdir, lambda spec: trace_spec(image, spec, backend=backend, seed=seed),
                         subject=subject)
    cards = [dict(n=f"E{k}", title=it["title"], note=it["caption"], result=it["file"])
             for k, it in enumerate(items, 1)]
    return "Explanations: convolution, pooling, activations, shapes", cards


SectionMaker = Callable[[Path, str, int], "tuple[str, list[dict]]"]
def trained_section(outdir: Path, backend: str = "torch", seed: int = 0) -> tuple[str, list[dict]]:
    """LeNet on a digit and EfficientNet-Lite0 on the cat (convlens.demo.trained)."""
    from convlens.demo.trained import trained_section as make

    return make(outdir, backend=backend, seed=seed)


def attention_section(outdir: Path, backend: str = "torch", seed: int = 0) -> tuple[str, list[dict]]:
    """Grad-CAM, saliency and activation maximization (convlens.attribute)."""
    from convlens.demo.attribute import attention_section as make

    return make(outdir, backend, seed)


SECTIONS: tuple[SectionMaker, ...] = (explanations_section, trained_section, attention_section)
"""Sections after the tutorial's experiments: each (outdir, backend, seed) -> (title, cards)."""


def _takes_image(make: Callable) -> bool:
    try:
        return "image" in inspect.signature(make).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def run_demo(outdir: str | Path, backend: str = "torch", seed: int = 0,
             progress: TextIO | None = sys.stderr,
             sections: Sequence[SectionMaker] | None = None,
             image: str | Path | np.ndarray | None = None) -> Path:
    """Run every experiment and write PNGs + ``index.html`` into ``outdir``; returns its path.

    ``sections`` default to :data:`SECTIONS` (explanations...); pass ``()`` for none.
    ``image`` (a path or an ``(H, W, 3)`` array in [0, 1]; default the bundled cat) is
    what the experiments, and the sections that take an ``image=``, run on.  A section,
    or a part of one, whose extra is not installed is skipped; ``progress`` gets one line
    naming what was skipped and the extras that bring it, and the index lists them.
    """
    outdir = Path(outdir)
    user_image = image is not None
    image = cat() if image is None else load_image(image)
    outdir.mkdir(parents=True, exist_ok=True)
    cards = []
    n = len(EXPERIMENTS)
    start = time.perf_counter()
    for i, exp in enumerate(EXPERIMENTS, 1):
        if progress is not None:
            _progress(progress, i - 1, n, exp.title)
        stem = f"{i:02d}"
        if exp.spec is None:
            save_png(Image.fromarray(np.round(image * 255).astype(np.uint8)),
                     outdir / f"{stem}_result.png")
            h, w = image.shape[:2]
            note = (f"Your image, {h}x{w} RGB, values scaled to [0, 1]." if user_image
                    else exp.note)
            cards.append(dict(n=i, title="Your image" if user_image else exp.title,
                              spec="(no network)", shape=f"{h}x{w}x3", note=note, said="",
                              result=f"{stem}_result.png", journey=None))
            continue
        trace = trace_spec(image, exp.spec, backend=backend, seed=seed)
        _result_figure(trace, exp.view).save(outdir / f"{stem}_result.png")
        render.journey(trace, tile=160).save(outdir / f"{stem}_journey.png")
        said = " ".join(describe_stage(trace, s) for s in trace.stages)
        cards.append(dict(n=i, title=exp.title, spec=exp.spec, shape=trace.stages[-1].shape_str,
                          note=exp.note, said=said, result=f"{stem}_result.png",
                          journey=f"{stem}_journey.png"))
    done = [("The 2017 tutorial's experiments", cards)]
    extra = SECTIONS if sections is None else sections
    skipped: list[str] = []
    for k, make in enumerate(extra, 1):
        name = getattr(make, "__name__", "section")
        if progress is not None:
            _progress(progress, n, n, f"section {k}/{len(extra)}: {name}")
        kwargs = {"image": image} if user_image and _takes_image(make) else {}
        try:
            title, made = make(outdir, backend, seed, **kwargs)
        except MissingExtra as exc:  # this install lacks what the whole section needs
            skipped.append(exc.short)
            continue
        skipped += [c["skipped"] for c in made if is_skipped(c)]
        made = [c for c in made if not is_skipped(c)]
        if made:
            done.append((title, made))
    if progress is not None:
        _progress(progress, n, n, "done")
        progress.write(f"\n{n} experiments and {len(done) - 1} more section(s) in {time.perf_counter() - start:.1f} s\n")
        if skipped:
            progress.write(f"skipped, extras not installed: {'; '.join(skipped)}\n")
    index = outdir / "index.html"
    index.write_text(_html(done, backend, seed, skipped, user_image), encoding="utf-8")
    from convlens.demo.report import write_demo_report

    write_demo_report(outdir, done)  # the same, as one self-contained file: report.html
    return index


def _html(sections: list, backend: str, seed: int, skipped: Sequence[str] = (),
          user_image: bool = False) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>convlens demo: the cat's journey</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "figure{margin:0 0 2.5em;padding:1em;border:1px solid #ddd;border-radius:6px}",
        "img{max-width:100%;image-rendering:pixelated}code{background:#f3f3f3;padding:0 .3em}",
        ".said{color:#444}</style></head><body>",
        "<h1>convlens demo: what a CNN does to "
        + ("your image" if user_image else "a cat") + "</h1>",
        f"<p>Random Glorot-uniform weights (seed {seed}), backend {e(backend)}, valid padding, "
        "as in the 2017 tutorial. Every number below is computed from the real outputs.</p>",
    ]
    for title, cards in sections:
        parts.append(f"<h2>{e(title)}</h2>")
        for c in cards:
            parts.append(f"<figure id='exp{c['n']}'><h3>{c['n']}. {e(c['title'])}</h3>")
            if c.get("spec"):
                parts.append(f"<p>Network: <code>{e(c['spec'])}</code> · output shape "
                             f"<b>{e(c['shape'])}</b></p>")
            parts.append(f"<img src='{e(c['result'])}' alt='{e(c['title'])}'>")
            parts.append(f"<p>{e(c['note'])}</p>")
            if c.get("said"):
                parts.append(f"<p class='said'>{e(c['said'])}</p>")
            if c.get("journey"):
                parts.append(f"<details><summary>The journey, stage by stage</summary>"
                             f"<img src='{e(c['journey'])}' alt='journey'></details>")
            parts.append("</figure>")
    if skipped:
        parts.append("<h2>Skipped</h2><p>Not installed here: "
                     + "; ".join(e(s) for s in skipped)
                     + ". <code>pip install 'convlens[all]'</code> brings every extra.</p>")
    if user_image:
        parts.append("<p><small>The experiments and explanations use your image; the trained "
                     "networks and attention sections, the bundled cat.</small></p>")
    parts.append("<p><small>Image: Chelsea the cat, CC0, by Stefan van der Walt "
                 "(scikit-image sample data).</small></p></body></html>")
    from convlens.report.security import harden_html  # CSP + referrer <meta> tags
    return harden_html("\n".join(parts))
