"""What an atlas run leaves in OUT: ``atlas.json``, the crops, an HTML page per stage.

* ``atlas.json`` (:func:`atlas_data`): per stage and channel the top-k entries (image path
  relative to FOLDER, value, position of the maximum in the stage's output) and the
  statistics.  Everything that depends on the run rather than on the images and the
  model (times, engine, workers, host, the folder's absolute path, batch size) is under
  the ``"run"`` key only, so two runs compare as data with that key removed.
* ``crops/STAGE/cCCCC-R.png``: the receptive field of the maximum (rank ``R`` of channel
  ``CCCC``) cut from the image as the model saw it (after resizing), with some context
  around it and the field outlined; enlarged with nearest-neighbour pixels when small.
* ``maximize/STAGE/C.png`` (``maximize=True``): channel ``C``'s activation-maximisation
  image (:mod:`convlens.atlas.maximize`), listed per channel in ``atlas.json``
  (``"maximization"``) with its settings under the top-level ``"maximize"`` key.
* ``STAGE.html`` per stage and ``index.html``: offline and self-contained like the report
  (pictures as ``data:`` URIs, no script, no URL): per channel its top-k crops (and its
  maximisation image), a histogram of its responses and its dead fraction.
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from convlens.atlas.engine import Plan, read_images
from convlens.atlas.state import BINS, StageState, State

__all__ = ["atlas_data", "write_json", "write_pages", "write_crops", "make_crops", "crop_path",
           "crop_image", "slug", "DEAD"]

FORMAT = 1
DEAD = ("a channel is dead on an image when its maximum over all positions is <= 0 (after "
        "a ReLU: zero everywhere); dead = the fraction of images on which it is dead")
OUTLINE = (255, 60, 0)
CROP_PX = 96
"""Crops are enlarged (nearest neighbour) to about this many pixels on their longer side
when smaller, and shrunk to it when larger."""


def slug(name: str) -> str:
    """A stage name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stage"


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _channel(s: StageState, c: int, images: int) -> dict[str, Any]:
    top = []
    for r in range(s.k):
        if s.top_path[c, r] == "":
            break
        e: dict[str, Any] = {"image": str(s.top_path[c, r]), "value": _f(s.top_value[c, r])}
        if s.spatial:
            e["position"] = [int(s.top_pos[c, r, 0]), int(s.top_pos[c, r, 1])]
        top.append(e)
    n = int(s.count[c])
    std = s.std
    h = s.hist[c]
    return {
        "channel": c, "top": top,
        "mean": _f(s.mean[c]) if n else None, "std": _f(std[c]) if n else None,
        "dead": (int(s.dead[c]) / images) if images else None,
        "histogram": {"lo": float(s.lo[c]), "width": float(s.width[c]),
                      "counts": [int(v) for v in h[1:-1]], "below": int(h[0]),
                      "above": int(h[-1])},
    }


def atlas_data(state: State, plan: Plan, run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``atlas.json`` (see the module docs)."""
    return {
        "format": FORMAT,
        "model": plan.model,
        "files": len(plan.paths),
        "images": state.images,
        "k": plan.k,
        "size": list(plan.size),
        "bins": BINS,
        "value": "a channel's response to an image: its maximum over all positions (spatial "
                 "stages) or its value (flat stages); top-k by response, ties by image path",
        "dead": DEAD,
        "skipped": [{"image": p, "reason": r} for p, r in state.skipped],
        "stages": [{"name": s.name, "shape": list(s.shape),
                    "channels": [_channel(s, c, state.images) for c in range(s.channels)]}
                   for s in state.stages.values()],
        "run": dict(run or {}),
    }


def write_json(data: Mapping[str, Any], out: str | Path) -> Path:
    import json

    path = Path(out, "atlas.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


# -- crops --------------------------------------------------------------------------------
def crop_image(image: np.ndarray, rows: tuple[int, int] | None, cols: tuple[int, int] | None,
               px: int = CROP_PX) -> Image.Image:
    """The box ``rows`` x ``cols`` (inclusive, clipped to the image) of ``image`` (H, W, 3)
    in [0, 1] with half its size of context on each side and the box outlined; the whole
    image, unmarked, when ``rows`` is None (a flat stage sees everything)."""
    h, w = image.shape[:2]
    if rows is None or cols is None:
        r0, r1, c0, c1 = 0, h - 1, 0, w - 1
        box = None
    else:
        r0, r1 = max(0, rows[0]), min(h - 1, rows[1])
        c0, c1 = max(0, cols[0]), min(w - 1, cols[1])
        if r0 > r1 or c0 > c1:  # the field lies in padding only
            r0, r1, c0, c1 = 0, h - 1, 0, w - 1
            box = None
        else:
            box = (r0, r1, c0, c1)
            mr, mc = max(1, (r1 - r0 + 1) // 2), max(1, (c1 - c0 + 1) // 2)
            r0, r1 = max(0, r0 - mr), min(h - 1, r1 + mr)
            c0, c1 = max(0, c0 - mc), min(w - 1, c1 + mc)
    crop = np.clip(image[r0:r1 + 1, c0:c1 + 1], 0.0, 1.0)
    ch, cw = crop.shape[:2]
    pic = Image.fromarray((crop * 255.0 + 0.5).astype(np.uint8))
    if max(ch, cw) < px:
        f = max(1, px // max(ch, cw))
        pic = pic.resize((cw * f, ch * f), Image.Resampling.NEAREST)
    else:
        f = px / max(ch, cw)
        pic = pic.resize((max(1, round(cw * f)), max(1, round(ch * f))), Image.Resampling.BILINEAR)
    if box is not None:
        sy, sx = pic.height / ch, pic.width / cw
        br0, br1, bc0, bc1 = box
        rect = ((bc0 - c0) * sx, (br0 - r0) * sy, (bc1 - c0 + 1) * sx - 1, (br1 - r0 + 1) * sy - 1)
        ImageDraw.Draw(pic).rectangle([round(v) for v in rect], outline=OUTLINE,
                                      width=max(2, round(min(pic.size) / 40)))
    return pic


class _Fields:
    """Receptive-field boxes of stage positions, in the frame of the images fed
    (``plan.size``), from one full capture; computed once per (stage, position)."""

    def __init__(self, model: Any, preprocess: Any, plan: Plan, image: np.ndarray) -> None:
        from convlens.capture import capture

        self.trace = capture(model, image[None], preprocess=preprocess, weights="none")
        mh, mw = self.trace.model_input.shape[2:]
        self.sy, self.sx = plan.size[0] / mh, plan.size[1] / mw
        self.concat = any(s.kind == "merge" and any(w in str(s.op).lower() for w in ("cat", "stack"))
                          for s in self.trace.stages)
        self.cache: dict[tuple[str, int, int, int | None], Any] = {}

    def box(self, stage: str, pos: Sequence[int], channel: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
        from convlens.errors import ConvlensError
        from convlens.explain.receptive import receptive_field

        key = (stage, int(pos[0]), int(pos[1]), channel if self.concat else None)
        if key not in self.cache:
            try:
                rf = receptive_field(self.trace, stage, (int(pos[0]), int(pos[1])),
                                     channel=key[3])
                rows = (math.floor(rf.rows[0] * self.sy), math.ceil((rf.rows[1] + 1) * self.sy) - 1)
                cols = (math.floor(rf.cols[0] * self.sx), math.ceil((rf.cols[1] + 1) * self.sx) - 1)
                self.cache[key] = (rows, cols)
            except ConvlensError:  # a stage the field cannot be followed through
                self.cache[key] = None
        return self.cache[key]


def crop_path(stage: str, channel: int, rank: int) -> str:
    """Where the crop of rank ``rank`` (0-based) of a channel lies, relative to OUT."""
    return f"crops/{slug(stage)}/c{int(channel):04d}-{int(rank) + 1}.png"


def make_crops(state: State, plan: Plan, model: Any, preprocess: Any,
               channels: int | None = None) -> Iterator[tuple[tuple[str, int, int], Image.Image]]:
    """``((stage, channel, rank), crop)`` for every top-k entry of channels ``0 ..
    channels - 1`` of each stage (all when None), the images read in chunks."""
    wanted: dict[str, list[tuple[str, int, int]]] = {}
    for s in state.stages.values():
        for c in range(s.channels if channels is None else min(channels, s.channels)):
            for r in range(s.k):
                p = str(s.top_path[c, r])
                if p:
                    wanted.setdefault(p, []).append((s.name, c, r))
    if not wanted:
        return
    paths = sorted(wanted)
    first, _, _ = read_images(plan.root, paths[:1], plan.size)
    fields = _Fields(model, preprocess, plan, first[0]) if first is not None else None
    for i in range(0, len(paths), 64):  # read the images in chunks
        chunk = paths[i:i + 64]
        images, good, _ = read_images(plan.root, chunk, plan.size)
        for j, p in enumerate(good):
            for name, c, r in wanted[p]:
                s = state.stages[name]
                box = fields.box(name, s.top_pos[c, r], c) if (s.spatial and fields) else None
                yield (name, c, r), crop_image(images[j], *(box if box else (None, None)))  # type: ignore[index]


def write_crops(state: State, plan: Plan, model: Any, preprocess: Any, out: str | Path,
                channels: int | None = None) -> dict[tuple[str, int, int], Path]:
    """Every shown top-k entry's crop as a PNG under ``out/crops``; returns their paths by
    (stage, channel, rank)."""
    from convlens.display.embed import png_bytes

    written: dict[tuple[str, int, int], Path] = {}
    for key, pic in make_crops(state, plan, model, preprocess, channels):
        path = Path(out, crop_path(*key))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(pic))
        written[key] = path
    return written


# -- pages --------------------------------------------------------------------------------
_CSS = """
.at-ch{border-top:1px solid #e4e4e4;padding:.5em 0;display:flex;gap:14px;align-items:flex-start}
.at-info{width:190px;flex:none;font-size:13px}.at-info b{font-size:15px}
.at-crops{display:flex;flex-wrap:wrap;gap:6px}.at-crops figure{margin:0;text-align:center;
 font-size:11px;color:#555}.at-crops img{display:block;image-rendering:pixelated;
 border:1px solid #ccc}.at-dead{color:#b00}
.at-crops figure.at-max{margin-left:10px;padding-left:10px;border-left:1px dashed #bbb}
.at-note{color:#666;font-style:italic}
"""


def _histogram_svg(ch: Mapping[str, Any]) -> str:
    h = ch["histogram"]
    counts = [h["below"], *h["counts"], h["above"]]
    top = max(max(counts), 1)
    w, hh, bw = 180, 44, 180 / len(counts)
    bars = []
    for i, n in enumerate(counts):
        if not n:
            continue
        bh = max(1.0, (hh - 12) * n / top)
        colour = "#999" if i in (0, len(counts) - 1) else "#1a5fb4"
        bars.append(f"<rect x='{i * bw:.1f}' y='{hh - 12 - bh:.1f}' width='{bw - 0.6:.1f}' "
                    f"height='{bh:.1f}' fill='{colour}'/>")
    lo, width = h["lo"], h["width"]
    hi = lo + width * len(h["counts"])
    zero = ""
    if lo < 0 < hi:
        x = bw * (1 + (0 - lo) / width)
        zero = f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{hh - 12}' stroke='#b00' stroke-width='1'/>"
    label = (f"<text x='0' y='{hh - 1}' font-size='9'>{lo:.3g}</text>"
             f"<text x='{w}' y='{hh - 1}' font-size='9' text-anchor='end'>{hi:.3g}</text>")
    title = (f"responses of the channel, one per image: {h['below']} below {lo:.3g}, "
             f"{h['above']} above {hi:.3g} (grey); the red line is 0")
    return (f"<svg width='{w}' height='{hh}' role='img'><title>{html.escape(title)}</title>"
            f"{''.join(bars)}{zero}{label}</svg>")


def maximize_note(data: Mapping[str, Any]) -> str:
    """The page's one line about activation maximisation ("" when not asked for)."""
    mx = data.get("maximize")
    if not mx:
        return ""
    if mx.get("note"):
        return f"<p class='at-note'>{html.escape(mx['note'])}.</p>"
    st = mx["settings"]
    size = "x".join(map(str, st["size"])) if st.get("size") else ""
    notes = "".join(f"<br>{html.escape(n['stage'])}: {html.escape(n['note'])}"
                    for n in mx.get("notes", []))
    return (f"<p class='at-note'>Beside the crops: each channel's activation maximisation "
            f"(dashed line), an input synthesised from noise by {st['steps']} steps of "
            f"gradient ascent on {html.escape(st['objective'])}; {size} px, seed "
            f"{st['seed']}.{notes}</p>")


def maximization_figure(ch: Mapping[str, Any], png: bytes | None, width: int | None = None) -> str:
    """The ``<figure>`` of a channel's maximisation image ("" when it has none)."""
    from convlens.display.embed import data_uri, img_tag

    mx = ch.get("maximization")
    if not mx or png is None:
        return ""
    tip = (f"activation maximisation of channel {ch['channel']}: the channel's objective "
           f"{mx['start']:.4g} on the start image, {mx['final']:.4g} on this one")
    alt = f"activation maximisation of channel {ch['channel']}"
    return (f"<figure class='at-max'>{img_tag(data_uri(png), alt, width=width, title=tip)}"
            "<figcaption>maximised</figcaption></figure>")


def _stage_page(data: Mapping[str, Any], stage: Mapping[str, Any], crops: Mapping[tuple[str, int, int], Path],
                channels: int | None, nav: str, out: Path | None = None) -> str:
    from convlens.display.embed import data_uri, img_tag
    from convlens.report.page import page

    name = stage["name"]
    shown = stage["channels"] if channels is None else stage["channels"][:channels]
    rows = []
    for ch in shown:
        c = ch["channel"]
        figs = []
        for r, e in enumerate(ch["top"]):
            path = crops.get((name, c, r))
            if path is None:
                continue
            pos = f" at {tuple(e['position'])}" if "position" in e else ""
            tip = f"{e['image']}: {e['value']:.4g}{pos}"
            figs.append(f"<figure>{img_tag(data_uri(path.read_bytes()), e['image'], title=tip)}"
                        f"<figcaption>{e['value']:.3g}</figcaption></figure>")
        mx = ch.get("maximization")
        if mx and out is not None and Path(out, mx["image"]).is_file():
            figs.append(maximization_figure(ch, Path(out, mx["image"]).read_bytes(),
                                            width=CROP_PX))
        dead = ch["dead"]
        dead_txt = "" if dead is None else (
            f"<span class='{'at-dead' if dead > 0.5 else ''}'>dead on {100 * dead:.1f}% of "
            "images</span>")
        mean = "" if ch["mean"] is None else (f"mean {ch['mean']:.3g}, std {ch['std']:.3g} "
                                              "(all positions)<br>")
        rows.append(f"<div class='at-ch' id='c{c}'><div class='at-info'><b>channel {c}</b><br>"
                    f"{mean}{dead_txt}<br>{_histogram_svg(ch)}<br>"
                    "<small>each image's response (its maximum)</small></div>"
                    f"<div class='at-crops'>{''.join(figs)}</div></div>")
    more = ""
    if len(shown) < len(stage["channels"]):
        more = (f"<p>{len(shown)} of {len(stage['channels'])} channels shown; atlas.json holds "
                "every channel.</p>")
    head = (f"<h1>{html.escape(name)}</h1><p>{html.escape(data['model'])}, output "
            f"{' x '.join(map(str, stage['shape']))} per image; top {data['k']} of "
            f"{data['images']} images per channel by its response (the maximum over "
            "positions), each cut to the receptive field of that maximum (outlined) with some "
            f"context. {html.escape(DEAD)}.</p>")
    body = head + maximize_note(data) + more + "".join(rows)
    return page(f"atlas: {name}", nav, body, css=_CSS)


def write_pages(data: Mapping[str, Any], crops: Mapping[tuple[str, int, int], Path], out: str | Path,
                channels: int | None = None) -> list[Path]:
    """``index.html`` and one page per stage under ``out``."""
    out = Path(out)
    names = [s["name"] for s in data["stages"]]
    nav = "<b>Atlas</b><ul><li><a href='index.html'>index</a></li>" + "".join(
        f"<li><a href='{slug(n)}.html'>{html.escape(n)}</a></li>" for n in names) + "</ul>"
    written = []
    for stage in data["stages"]:
        path = out / f"{slug(stage['name'])}.html"
        path.write_text(_stage_page(data, stage, crops, channels, nav, out), encoding="utf-8")
        written.append(path)
    from convlens.report.page import page

    items = "".join(f"<li><a href='{slug(s['name'])}.html'>{html.escape(s['name'])}</a> "
                    f"({' x '.join(map(str, s['shape']))}, {len(s['channels'])} channels)</li>"
                    for s in data["stages"])
    skipped = ""
    if data["skipped"]:
        skipped = ("<h2>Files not read</h2><ul>" + "".join(
            f"<li>{html.escape(s['image'])}: {html.escape(s['reason'])}</li>"
            for s in data["skipped"]) + "</ul>")
    body = (f"<h1>Atlas of {html.escape(data['model'])}</h1><p>{data['images']} images "
            f"({data['files']} files), top {data['k']} per channel.</p>{maximize_note(data)}"
            f"<ul>{items}</ul>{skipped}")
    index = out / "index.html"
    index.write_text(page("convlens atlas", nav, body), encoding="utf-8")
    return [index, *written]
