"""``convlens demo``: every experiment of the 2017 cat tutorial, on the bundled cat.

Writes one PNG of each experiment's result, its journey, and an ``index.html``
showing each with its network spec, output shape and a sentence (computed from
the real numbers) of what changed.
"""
from __future__ import annotations

import html
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np
from PIL import Image

from convlens import render
from convlens.images import cat
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


def explanations_section(outdir: Path, backend: str = "torch", seed: int = 0) -> tuple[str, list[dict]]:
    """The teaching figures (convlens.explain) made from the cat and the demo's networks."""
    from convlens.demo.explain import demo_section

    image = cat()
    items = demo_section(outdir, lambda spec: trace_spec(image, spec, backend=backend, seed=seed))
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


def run_demo(outdir: str | Path, backend: str = "torch", seed: int = 0,
             progress: TextIO | None = sys.stderr,
             sections: Sequence[SectionMaker] | None = None) -> Path:
    """Run every experiment and write PNGs + ``index.html`` into ``outdir``; returns its path.

    ``sections`` default to :data:`SECTIONS` (explanations...); pass ``()`` for none.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    image = cat()
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
            cards.append(dict(n=i, title=exp.title, spec="(no network)", shape="300x451x3",
                              note=exp.note, said="", result=f"{stem}_result.png", journey=None))
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
    for k, make in enumerate(extra, 1):
        if progress is not None:
            _progress(progress, n, n, f"section {k}/{len(extra)}: {make.__name__}")
        done.append(make(outdir, backend, seed))
    if progress is not None:
        _progress(progress, n, n, "done")
        progress.write(f"\n{n} experiments and {len(done) - 1} more section(s) in {time.perf_counter() - start:.1f} s\n")
    index = outdir / "index.html"
    index.write_text(_html(done, backend, seed), encoding="utf-8")
    from convlens.demo.report import write_demo_report

    write_demo_report(outdir, done)  # the same, as one self-contained file: report.html
    return index


def _html(sections: list, backend: str, seed: int) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>convlens demo: the cat's journey</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "figure{margin:0 0 2.5em;padding:1em;border:1px solid #ddd;border-radius:6px}",
        "img{max-width:100%;image-rendering:pixelated}code{background:#f3f3f3;padding:0 .3em}",
        ".said{color:#444}</style></head><body>",
        "<h1>convlens demo: what a CNN does to a cat</h1>",
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
    parts.append("<p><small>Image: Chelsea the cat, CC0, by Stefan van der Walt "
                 "(scikit-image sample data).</small></p></body></html>")
    from convlens.report.security import harden_html  # CSP + referrer <meta> tags
    return harden_html("\n".join(parts))
