"""What a classifier predicted: the top classes with their probabilities as bars.

``predictions_panel`` is the compact panel the journey ends with; ``predictions`` a
Figure of each image with its top ``k``.  A bar's length is the probability on a fixed
0 ... 1 axis (the light track is 1), so bars of different images compare directly.
"""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from convlens.errors import RenderError, TraceError
from convlens.trace import Trace
from convlens.render.figure import Figure
from convlens.render.layout import Block, hstack, vstack
from convlens.render.panel import MIN_TILE, finish, header, input_panel
from convlens.render.resolve import check_images, check_int
from convlens.render.text import INK, LABEL, MUTED, SMALL, fit, font, text_image, text_width

__all__ = ["predictions_panel", "predictions", "TRACK", "BAR"]

TRACK = (228, 228, 228)
"""The bar's background: the full 0 ... 1 range."""
BAR = (60, 110, 170)


def _bar(p: float, width: int, height: int = 6) -> Image.Image:
    img = Image.new("RGB", (width, height), TRACK)
    n = int(round(min(max(p, 0.0), 1.0) * width))
    if n:
        ImageDraw.Draw(img).rectangle([0, 0, n - 1, height - 1], fill=BAR)
    return img


def predictions_panel(preds: Sequence, width: int = 200, title: str | None = None,
                      source: str | None = None, image: int | None = None) -> Block:
    """Ranked ``(index, name, probability)`` rows (``Prediction`` tuples or dicts), each a
    line of text over a bar of length ``probability * width``."""
    width = max(int(width), 120)
    rows = []
    lines: list[Block | Image.Image] = [
        header(title or f"top {len(preds)}", source or "class probabilities", width)]
    for rank, p in enumerate(preds, 1):
        index, name, prob = (p["index"], p["name"], p["probability"]) if isinstance(p, dict) \
            else (p[0], p[1], p[2])
        num = f"{float(prob):.3f}"
        named = f"class {index}" if str(name) == str(index) else f"{name} ({index})"
        label = fit(f"{rank}. {named}", width - text_width(num, SMALL) - 6, SMALL)
        line = Image.new("RGB", (width, text_image(label, SMALL).height), (255, 255, 255))
        d = ImageDraw.Draw(line)
        d.text((0, 0), label, font=font(SMALL), fill=INK)
        d.text((width - text_width(num, SMALL), 0), num, font=font(SMALL), fill=INK)
        lines += [line, _bar(float(prob), width)]
        rows.append({"rank": rank, "index": int(index), "name": str(name),
                     "probability": float(prob)})
    lines.append(text_image("bar: probability 0 ... 1", SMALL, MUTED, width=width))
    body = vstack(lines, gap=2)
    rec = {"stage": "predictions", "kind": "predictions", "view": "predictions",
           "image": image, "predictions": rows, "box": (0, 0, body.width, body.height)}
    return Block(body.image, [rec])


def predictions(trace: Trace, k: int = 5, images: int | Sequence[int] | None = None,
                tile: int = 160, class_names: Sequence[str] | None = None) -> Figure:
    """Each image of a classifier trace (as the user gave it) beside its top ``k``
    classes.  Predictions come from :meth:`Trace.predictions`."""
    if not isinstance(trace, Trace):
        raise RenderError(f"render.predictions needs a convlens Trace; got "
                          f"{type(trace).__name__}")
    k = check_int(k, "k", 1)
    tile_px = check_int(tile, "tile", MIN_TILE)
    chosen = check_images(trace.batch_size, images, "the trace")
    from convlens.analysis.predictions import class_probabilities

    try:
        preds = trace.predictions(k, class_names)
        _, source = class_probabilities(trace)
    except TraceError as exc:
        raise RenderError(f"render.predictions: {exc}") from None
    rows = []
    for i in chosen:
        panel = predictions_panel(preds[i], max(220, tile_px + 40), f"top {len(preds[i])}",
                                  f"{source} of {trace.stages[-1].name}", image=i)
        rows.append(hstack([input_panel(trace.input, i, tile_px), panel], gap=16, align="top"))
    head = text_image(f"{trace.model_name} · {trace.framework} · predictions", LABEL, MUTED)
    body = vstack([head, *rows], gap=12)
    meta = {"view": "predictions", "model": trace.model_name, "images": chosen, "k": k,
            "source": source, "top": [[p._asdict() for p in preds[i]] for i in chosen]}
    return finish(body, meta)

