"""Two traces side by side, stage by stage: random vs trained weights, or two images
through one network.

    a, b = random_vs_trained(convlens.cat(), "efficientnet-lite0")
    compare(a, b, layers="stem.act,blocks.*.add,head.act,fc,softmax").save("cmp.png")
    compare(trace_of_cat, trace_of_dog)          # same network, two images

Stages are matched **by name**: a row for every stage of ``trace_a`` (in its order) that
``trace_b`` also has; the names found in only one trace are listed under the figure.
Both panels of a row share **one colour range**: the minimum and maximum over the two
drawn outputs (widened to include 0 for RGB, symmetric when signed), stated under each
panel as "row range".  When the two outputs have the same shape, the row also states the
mean absolute difference.  The column labels say what differs (the weights, the network
or the input image), read from the traces (``meta["weights"]``, the model names, the
inputs) unless ``labels`` are given.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from convlens.errors import RenderError
from convlens.images import as_batch
from convlens.render.figure import Figure
from convlens.render.layout import Block, hstack, pad, vstack
from convlens.render.panel import MIN_TILE, finish, network_input_panel, short_titles, stage_panel
from convlens.render.predictionsview import predictions_panel
from convlens.render.resolve import check_image, check_int, check_options
from convlens.render.text import INK, LABEL, MUTED, SMALL, TITLE, fmt, text_image, wrap_text
from convlens.trace import Trace, select_stages

__all__ = ["compare", "difference", "random_vs_trained", "zoo_trace"]

ROW_RANGE = "row range (A and B)"


def zoo_trace(images: Any, name: str, weights: str = "trained", backend: str = "torch",
              seed: int = 0, layers: str | Sequence[str] | None = None) -> Trace:
    """A zoo network (``"lenet"``, ``"efficientnet-lite0"``, ``zoo:`` prefix allowed) with
    ``weights`` ``"trained"`` or ``"random"`` (from ``seed``), captured on ``images``.
    ``meta`` records ``zoo``, ``weights`` (and ``seed`` when random), ``class_names`` and
    the top-5 ``predictions``.  The first image picks the preprocessing (LeNet: whether
    to invert a light background)."""
    from convlens.capture import capture
    from convlens.nets import zoo
    from convlens.analysis.predictions import with_predictions

    zm = zoo.load(name, backend=backend, weights=weights, seed=seed)  # type: ignore[arg-type]
    batch = as_batch(images)
    meta: dict[str, Any] = {"zoo": zm.name, "weights": zm.weights}
    if zm.weights == "random":
        meta["seed"] = int(seed)
    if zm.class_names is not None:
        meta["class_names"] = list(zm.class_names)
    trace = capture(zm.model, batch, layers, preprocess=zm.preprocess_for(batch[0]),
                    name=f"zoo:{zm.name}", meta=meta)
    return with_predictions(trace)


def random_vs_trained(images: Any, name: str, backend: str = "torch", seed: int = 0,
                      layers: str | Sequence[str] | None = None) -> tuple[Trace, Trace]:
    """The same zoo architecture on the same images, with random weights (``seed``) and
    with its trained weights: ``(random_trace, trained_trace)``."""
    return (zoo_trace(images, name, "random", backend, seed, layers),
            zoo_trace(images, name, "trained", backend, seed, layers))


def difference(a: Trace, b: Trace, image_a: int = 0, image_b: int = 0
               ) -> tuple[str, str, str]:
    """``(label_a, label_b, what_differs)`` read from the two traces."""
    wa, wb = a.meta.get("weights"), b.meta.get("weights")
    if wa != wb and (wa or wb):
        def lab(t: Trace, w: Any) -> str:
            text = f"{w or 'unknown'} weights"
            return text + (f" (seed {t.meta['seed']})" if w == "random" and "seed" in t.meta else "")
        return lab(a, wa), lab(b, wb), "weights"
    if a.model_name != b.model_name:
        return a.model_name, b.model_name, "network"
    xa, xb = a.input[image_a], b.input[image_b]
    if xa.shape != xb.shape or not np.array_equal(xa, xb):
        def img(t: Trace, i: int) -> str:
            name = t.meta.get("image")
            if isinstance(name, (list, tuple)):
                name = name[i] if i < len(name) else None
            h, w = t.input.shape[1:3]
            return f"{name} ({h}x{w})" if name else f"image {i} ({h}x{w})"
        la, lb = img(a, image_a), img(b, image_b)
        if la == lb:  # e.g. image 0 of two traces: say which is which
            la, lb = f"first {la}", f"second {lb}"
        return la, lb, "input image"
    return "A", "B", "nothing (same network, weights and input)"


def _row_range(sa, sb, ia: int, ib: int) -> tuple[float, float] | None:
    ranges = [r for r in (_image_range(sa, ia), _image_range(sb, ib)) if r is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _image_range(stage, image: int) -> tuple[float, float] | None:
    """Finite min and max of one image's output of ``stage``."""
    from convlens.render.scale import finite_range

    return finite_range(stage.output[image])


def _note(lines: list[str], width: int = 150) -> Block:
    wrapped = [w for t in lines for w in wrap_text(t, width, SMALL)]
    return vstack([text_image(t, SMALL, MUTED, width=width) for t in wrapped], gap=1)


def compare(
    trace_a: Trace,
    trace_b: Trace | None = None,
    labels: tuple[str, str] | None = None,
    layers: str | Sequence[str] | None = None,
    image_a: int = 0,
    image_b: int | None = None,
    tile: int = 128,
    max_channels: int = 16,
    cmap: str | None = None,
    top: int = 3,
) -> Figure:
    """``trace_a`` (left) and ``trace_b`` (right) stage by stage, one shared colour range
    per row (see the module docs).  ``trace_b=None`` compares two images of one trace
    (``image_a`` and ``image_b``, default 0 and 1).  ``layers`` selects stages of
    ``trace_a`` by name, kind or glob.  Classifier traces end with their ``top`` classes
    (0: none)."""
    if not isinstance(trace_a, Trace) or not isinstance(trace_b, (Trace, type(None))):
        raise RenderError(f"compare needs two convlens Traces; got "
                          f"{type(trace_a).__name__} and {type(trace_b).__name__}")
    if trace_b is None:
        trace_b = trace_a
        image_b = 1 if image_b is None else image_b
        if trace_a.batch_size < 2 and image_b == 1:
            raise RenderError("compare with one trace compares two of its images, but it holds "
                              "1; pass a second trace, or a trace of two images")
    image_b = 0 if image_b is None else image_b
    _, cmap = check_options("global", cmap)
    tile_px = check_int(tile, "tile", MIN_TILE)
    max_channels = check_int(max_channels, "max_channels", 1)
    top = check_int(top, "top", 0)
    if trace_a.stages:
        check_image(trace_a.stages[0], image_a)
    if trace_b.stages:
        check_image(trace_b.stages[0], image_b)
    la, lb, what = difference(trace_a, trace_b, image_a, image_b)
    if labels is not None:
        if not isinstance(labels, (tuple, list)) or len(labels) != 2:
            raise RenderError(f"labels must be two strings (left, right); got {labels!r}")
        la, lb = str(labels[0]), str(labels[1])

    stages_a = trace_a.select(layers) if layers is not None else list(trace_a.stages)
    names_b = set(trace_b.names)
    pairs = [(s, trace_b[s.name]) for s in stages_a if s.name in names_b]
    if not pairs:
        raise RenderError(
            f"the two traces share no stage name; expected the same network (left: "
            f"{', '.join(trace_a.names[:6]) or 'none'}; right: "
            f"{', '.join(trace_b.names[:6]) or 'none'})")
    matched = {s.name for s, _ in pairs}
    only_a = [s.name for s in stages_a if s.name not in matched]
    kept_b = select_stages([(t.name, t.kind) for t in trace_b.stages], layers, strict=False)
    only_b = [n for n in trace_b.names if n in kept_b and n not in matched]

    width = max(tile_px, 120)
    grid: list[list[Block]] = [[Block(text_image(f"A: {la}", TITLE, INK)),
                                Block(text_image(f"B: {lb}", TITLE, INK))]]
    # the inputs as the networks saw them (LeNet: 32x32, greyscale, inverted)
    grid.append([network_input_panel(trace_a, image_a, tile_px),
                 network_input_panel(trace_b, image_b, tile_px)])
    records = []
    titles = short_titles([s.name for s, _ in pairs], width)
    for sa, sb in pairs:
        rng = _row_range(sa, sb, image_a, image_b)
        pa = stage_panel(sa, image_a, "global", tile_px, max_channels, cmap, rng, ROW_RANGE,
                         title=titles[sa.name])
        pb = stage_panel(sb, image_b, "global", tile_px, max_channels, cmap, rng, ROW_RANGE,
                         title=titles[sa.name])
        note = [f"row range {fmt(rng[0])} ... {fmt(rng[1])}" if rng else "no finite values"]
        for tag, st, i in (("A", sa, image_a), ("B", sb, image_b)):
            own = _image_range(st, i)
            note.append(f"{tag}: {fmt(own[0])} ... {fmt(own[1])}" if own else f"{tag}: no values")
        diff = None
        if sa.output.shape[1:] == sb.output.shape[1:]:
            d = np.abs(sa.output[image_a].astype(np.float64) - sb.output[image_b])
            diff = float(np.nanmean(d)) if d.size else 0.0
            note.append(f"mean |A - B| {fmt(diff)}")
        else:
            note.append(f"shapes differ: {sa.shape_str} vs {sb.shape_str}")
        grid.append([pa, pb, _note(note)])
        records.append({"stage": sa.name, "range": list(rng) if rng else None,
                        "mean_abs_diff": diff})
    if top:
        from convlens.analysis.predictions import is_classifier

        if is_classifier(trace_a) and is_classifier(trace_b):
            pw = max(width, 200)
            grid.append([
                predictions_panel(t.predictions(top)[i], pw, f"top {top}",
                                  f"from {t.stages[-1].name}", image=i)
                for t, i in ((trace_a, image_a), (trace_b, image_b))])
    cols = [max(r[c].width for r in grid if len(r) > c) for c in range(2)]
    rows = [hstack([pad(b, right=cols[c] - b.width) if c < 2 else b for c, b in enumerate(r)],
                   gap=24) for r in grid]
    foot = []
    if only_a:
        foot.append(f"only in A: {', '.join(only_a)}")
    if only_b:
        foot.append(f"only in B: {', '.join(only_b)}")
    head = (f"compare · what differs: {what} · {len(pairs)} stages matched by name · "
            "one colour range per row")
    parts: list[Block | Any] = [text_image(head, LABEL, MUTED), *rows]
    if foot:
        parts.append(_note(foot, max(r.width for r in rows)))
    body = vstack(parts, gap=12)
    meta = {"view": "compare", "labels": [la, lb], "differs": what,
            "models": [trace_a.model_name, trace_b.model_name], "images": [image_a, image_b],
            "rows": records, "only_a": only_a, "only_b": only_b}
    return finish(body, meta)

