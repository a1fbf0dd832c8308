"""Receptive fields: which input pixels can influence one output position of a stage.

Worked out exactly from the chain of windows (kernel, stride, padding, dilation)
between the input and the stage: the bounding box (``rows``, ``cols``, which may reach
into the padding) and the exact set of pixels (``mask``; with dilation or a stride
larger than the kernel it has holes).  A flat stage (flatten, dense) sees everything
its spatial input could see.  The field is carried back along the Trace's graph
(``Stage.sources``): through every input of an add or multiply, and through a channel
concatenation only into the input a channel came from (``channel=``), so the field of
a concat channel follows its own branch.  A broadcast input (a squeeze-excitation
scale, ``(C, 1, 1)``) sees everything its own path sees for any position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from convlens.errors import RenderError
from convlens.images import resize
from convlens.render.figure import Figure
from convlens.trace import Trace, nearest_names
from convlens.explain.canvas import Canvas, text_width
from convlens.explain.grid import PALETTE, fmt
from convlens.explain.layers import LayerInfo, Source, layer_infos, shape_of

__all__ = ["ReceptiveField", "receptive_field", "receptive_field_growth",
           "receptive_field_figure", "receptive_field_growth_figure"]


@dataclass(frozen=True)
class ReceptiveField:
    """The input region one output position of ``stage`` depends on.

    ``rows`` and ``cols`` are inclusive input index ranges, not clipped to the image
    (negative or past the edge where the window reaches into padding); ``mask`` is the
    exact ``(H, W)`` set of input pixels that can change the output; ``jump`` is the
    input distance between neighbouring output positions (the product of strides).
    """

    stage: str
    position: tuple[int, int] | None
    rows: tuple[int, int]
    cols: tuple[int, int]
    mask: np.ndarray
    jump: tuple[int, int]
    channel: int | None = None
    """The output channel asked about (None: any channel)."""
    through: tuple[str, ...] = ()
    """The stages the field was carried back through (those that can influence the
    position), in execution order."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the unclipped region."""
        return self.rows[1] - self.rows[0] + 1, self.cols[1] - self.cols[0] + 1

    @property
    def clipped(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(rows, cols)``: the tight box, inside the image, of the pixels in ``mask``.

        Smaller than ``rows`` / ``cols`` clipped to the image where padding on an inner
        stage hides input pixels.  A window lying wholly in padding sees no pixel; then
        the box is empty (start > stop)."""
        if self.mask.any():
            r, c = np.nonzero(self.mask)
            return (int(r.min()), int(r.max())), (int(c.min()), int(c.max()))
        h, w = self.mask.shape
        return ((max(self.rows[0], 0), min(self.rows[1], h - 1)),
                (max(self.cols[0], 0), min(self.cols[1], w - 1)))


def _chain(infos: list[LayerInfo], target: int) -> list[LayerInfo]:
    """Steps from the input to ``target`` along the sources, input side first."""
    out = []
    pos = target
    while pos != -1:
        out.append(infos[pos])
        pos = infos[pos].source
    return out[::-1]


def _target(infos: list[LayerInfo], stage: int | str) -> int:
    if isinstance(stage, (int, np.integer)):
        if not -len(infos) <= stage < len(infos):
            raise RenderError(f"stage {stage} is out of range; there are {len(infos)} stages")
        return int(stage) % len(infos)
    for info in infos:
        if info.name == stage:
            return info.position
    raise RenderError(f"no stage named {stage!r}; "
                      f"{nearest_names(stage, [i.name for i in infos])}")


def _back_mask(info: LayerInfo, m: np.ndarray) -> np.ndarray:
    """Input pixels that any True output position of ``m`` reads through this window."""
    (pt, pb), (pl, pr) = info.padding
    kh, kw = info.kernel  # type: ignore[misc]
    (sh, sw), (dh, dw) = info.stride, info.dilation
    hi, wi = info.in_shape[1:]
    oh, ow = m.shape
    big = np.zeros((max(hi + pt + pb, (oh - 1) * sh + dh * (kh - 1) + 1),
                    max(wi + pl + pr, (ow - 1) * sw + dw * (kw - 1) + 1)), dtype=bool)
    for a in range(kh):
        for b in range(kw):
            big[a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw] |= m
    return big[pt:pt + hi, pl:pl + wi]


Carried = tuple[np.ndarray, tuple[int, int], tuple[int, int], "frozenset[int] | None"]


def _union(a: Carried | None, b: Carried) -> Carried:
    if a is None:
        return b
    chans = None if a[3] is None or b[3] is None else a[3] | b[3]
    return (a[0] | b[0], (min(a[1][0], b[1][0]), max(a[1][1], b[1][1])),
            (min(a[2][0], b[2][0]), max(a[2][1], b[2][1])), chans)


def _to_input(info: LayerInfo, k: int, m: np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
              chans: frozenset[int] | None) -> Carried | None:
    """What the ``k``-th input of ``info`` must provide: the positions and channels of it
    that reach the output positions ``m`` / channels ``chans`` (None: it reaches none)."""
    shape = info.in_shapes[k] if k < len(info.in_shapes) else info.in_shape
    offs = info.concat_offsets
    in_chans: frozenset[int] | None = None
    if offs is not None:  # a concat: channel c of the output is channel c - off of one input
        lo, hi = offs[k], offs[k] + shape[0]
        if chans is not None:
            in_chans = frozenset(c - lo for c in chans if lo <= c < hi)
            if not in_chans:
                return None
    elif info.kind == "conv":
        if chans is not None and info.groups > 1 and len(shape) == 3 and len(info.out_shape) == 3:
            per_out, per_in = info.out_shape[0] // info.groups, shape[0] // info.groups
            in_chans = frozenset(c for o in chans for c in range((o // per_out) * per_in,
                                                                 (o // per_out + 1) * per_in))
    elif (chans is not None and info.kind in _CHANNELWISE and len(shape) == 3
          and shape[0] == info.out_shape[0]):
        in_chans = chans
    elif chans is not None and len(shape) == 3 and shape[0] == 1:
        in_chans = frozenset({0})  # broadcast over channels
    if len(shape) == 3 and len(info.out_shape) == 3 and shape[1:] != m.shape and not info.windowed:
        # broadcast over positions (a (C, 1, 1) scale): one cell reaches them all
        h, w = shape[1:]
        if (h, w) == (1, 1) or h == 1 or w == 1:
            mm = np.zeros((h, w), dtype=bool)
            mm[:] = m.any(axis=0, keepdims=True).any(axis=1, keepdims=True) if (h, w) == (1, 1) else (
                m.any(axis=0, keepdims=True) if h == 1 else m.any(axis=1, keepdims=True))
            return mm, (0, h - 1), (0, w - 1), in_chans
    return m, rows, cols, in_chans


_CHANNELWISE = ("activation", "norm", "pool", "dropout", "merge", "output")


def _walk_back(infos: list[LayerInfo], start: int, m: np.ndarray, rows: tuple[int, int],
               cols: tuple[int, int], chans: frozenset[int] | None = None,
               ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[int]]:
    """Carry the output mask of step ``start`` back to the input along every path.

    Steps are in execution order, so every source comes before the step it feeds:
    walking positions downwards, each step's mask is complete (the union over every
    step it feeds) before it is pushed on to its own sources.  An add or multiply
    passes its mask to all of its inputs; a concat passes each input only the
    channels that came from it (``chans``: the channels asked about, None: all).
    Returns the input mask, its box and the steps passed through.
    """
    masks: dict[int, Carried] = {start: (m, rows, cols, chans)}
    result: Carried | None = None
    through: list[int] = []
    for pos in range(start, -1, -1):
        if pos not in masks:
            continue
        m, rows, cols, chans = masks.pop(pos)
        through.append(pos)
        info = infos[pos]
        _check_spatial(info)
        if info.windowed:
            (pt, _), (pl, _) = info.padding
            (sh, sw), (dh, dw) = info.stride, info.dilation
            kh, kw = info.kernel  # type: ignore[misc]
            rows = (rows[0] * sh - pt, rows[1] * sh - pt + dh * (kh - 1))
            cols = (cols[0] * sw - pl, cols[1] * sw - pl + dw * (kw - 1))
            m = _back_mask(info, m)
        for k, src in enumerate(info.sources):
            got = _to_input(info, k, m, rows, cols, chans)
            if got is None:
                continue
            if src == -1:
                result = _union(result, got)
            else:
                masks[src] = _union(masks.get(src), got)
    assert result is not None  # every path ends at the input; a channel comes from one
    return result[0], result[1], result[2], through[::-1]


def _check_spatial(info: LayerInfo) -> None:
    broadcast = len(info.sources) > 1 and any(
        len(s) == 3 and s[1:] == info.out_shape[1:] for s in info.in_shapes)
    if (len(info.in_shape) == 3 and len(info.out_shape) == 3 and info.in_shape[1:] != info.out_shape[1:]
            and not info.windowed and not broadcast):
        raise RenderError(
            f"cannot follow the receptive field through {info.name!r} ({info.kind}, {info.op}): "
            f"it changes {shape_of(info.in_shape)} to {shape_of(info.out_shape)} without a "
            "known window; expected conv, pool, activation, norm, flatten or dense steps"
        )


def receptive_field(
    source: Source, stage: int | str, position: tuple[int, int] | None = None,
    in_shape: tuple[int, int, int] | None = None, channel: int | None = None,
) -> ReceptiveField:
    """The receptive field of output ``position`` (row, col) of ``stage`` (name or index).

    ``position`` defaults to the centre of a spatial stage's output; it is ignored for
    a flat stage (flatten, dense), whose every unit can see the whole reachable input.
    ``channel`` narrows it to one output channel: through a concatenation only the
    branch that channel came from counts (None: any channel, every branch).
    """
    shape0, infos = layer_infos(source, in_shape)
    t = _target(infos, stage)
    chain = _chain(infos, t)
    for info in chain:
        _check_spatial(info)
    target = infos[t]
    # find where the spatial part of the chain ends
    last_spatial = max((k for k, i in enumerate(chain) if len(i.out_shape) == 3), default=-1)
    if last_spatial == len(chain) - 1:
        oh, ow = target.out_shape[1:]
        if position is None:
            position = ((oh - 1) // 2, (ow - 1) // 2)
        r, c = int(position[0]), int(position[1])
        if not (0 <= r < oh and 0 <= c < ow):
            raise RenderError(
                f"position ({r}, {c}) is outside {target.name}'s {oh}x{ow} output; "
                f"expected row 0..{oh - 1}, col 0..{ow - 1}"
            )
        m = np.zeros((oh, ow), dtype=bool)
        m[r, c] = True
        rows, cols = (r, r), (c, c)
        steps = chain
    else:  # a flat stage: everything the last spatial map holds
        position = None
        if last_spatial == -1:
            h, w = shape0[1:] if len(shape0) == 3 else (1, 1)
            return ReceptiveField(target.name, None, (0, h - 1), (0, w - 1),
                                  np.ones((h, w), dtype=bool), (1, 1))
        oh, ow = chain[last_spatial].out_shape[1:]
        m = np.ones((oh, ow), dtype=bool)
        rows, cols = (0, oh - 1), (0, ow - 1)
        steps = chain[:last_spatial + 1]
    jump = [1, 1]
    for info in steps:
        if info.windowed:
            jump[0] *= info.stride[0]
            jump[1] *= info.stride[1]
    chans = None
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not (
                len(target.out_shape) == 3 and 0 <= channel < target.out_shape[0]):
            n = target.out_shape[0] if len(target.out_shape) == 3 else 0
            raise RenderError(f"channel {channel!r} is not a channel of {target.name}'s "
                              f"{shape_of(target.out_shape)} output; expected 0..{n - 1}"
                              if n else f"channel= needs a spatial stage; {target.name} is flat")
        chans = frozenset({int(channel)})
    m, rows, cols, through = _walk_back(infos, steps[-1].position, m, rows, cols, chans)
    if last_spatial != len(chain) - 1:
        through = through + [k for k in range(steps[-1].position + 1, t + 1) if k in {i.position for i in chain}]
    return ReceptiveField(target.name, position, rows, cols, m, (jump[0], jump[1]),
                          int(channel) if channel is not None else None,
                          tuple(infos[k].name for k in through))


def receptive_field_growth(
    source: Source, in_shape: tuple[int, int, int] | None = None,
) -> list[dict]:
    """Receptive-field size and jump after every spatial stage:
    ``[{"name", "size": (h, w), "jump": (h, w), "shape"}]`` (size of one output
    position's field, unclipped, which does not depend on the position)."""
    _, infos = layer_infos(source, in_shape)
    out = []
    for info in infos:
        if len(info.out_shape) != 3:
            continue
        rf = receptive_field(source if not isinstance(source, Trace) else source, info.position,
                             (0, 0), in_shape)
        out.append({"name": info.name, "size": rf.size, "jump": rf.jump,
                    "shape": shape_of(info.out_shape), "windowed": info.windowed})
    return out


def _display_image(source: Source, image: int | np.ndarray | None,
                   hw: tuple[int, int]) -> tuple[np.ndarray, str]:
    """``(the (h, w, 3) picture under the field, a note on where it came from)``."""
    note = ""
    if isinstance(image, np.ndarray):
        pic = np.asarray(image, dtype=np.float64)
        if pic.ndim not in (2, 3) or (pic.ndim == 3 and pic.shape[-1] not in (1, 3, 4)):
            raise RenderError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                              f"got shape {pic.shape}")
        if pic.shape[:2] != hw:  # the user's picture, at the network's input size
            ph, pw = pic.shape[:2]
            # the centre crop of the input's aspect ratio, so nothing is squashed
            ch, cw = min(ph, round(pw * hw[0] / hw[1])), min(pw, round(ph * hw[1] / hw[0]))
            t, l = (ph - ch) // 2, (pw - cw) // 2
            crop = "" if (ch, cw) == (ph, pw) else f", its centre {ch}x{cw} cut out,"
            note = f"your image ({ph}x{pw}){crop} resized to the network input ({hw[0]}x{hw[1]})"
            pic = np.asarray(resize(pic[t:t + ch, l:l + cw].astype(np.float32), hw),
                             dtype=np.float64)
    elif isinstance(source, Trace):
        i = image or 0
        if source.input.shape[1:3] == hw:
            pic = source.input[i]
        else:  # what the model saw, rescaled to [0, 1]
            x = np.moveaxis(np.asarray(source.model_input[i], dtype=np.float64), 0, -1)
            pic = (x - x.min()) / (np.ptp(x) or 1.0)
            note = "the preprocessed input the network saw, rescaled to [0, 1]"
    else:
        yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
        pic = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 0.93, 0.86) * np.ones(3)
        note = "no image given: a checkerboard stands in for the input"
    if pic.ndim == 2:
        pic = pic[..., None]
    if pic.shape[-1] == 1:
        pic = np.repeat(pic, 3, axis=-1)
    return np.clip(pic[..., :3], 0, 1), note


def receptive_field_figure(
    source: Source, stage: int | str, position: tuple[int, int] | None = None, *,
    image: int | np.ndarray | None = None, in_shape: tuple[int, int, int] | None = None,
    size: int = 420,
) -> Figure:
    """The receptive field drawn on the input image: pixels outside it washed out, the
    clipped box solid red, the full (unclipped, into the padding) box dashed."""
    rf = receptive_field(source, stage, position, in_shape)
    h, w = rf.mask.shape
    pic, note = _display_image(source, image, (h, w))
    shown = np.where(rf.mask[..., None], pic, 0.3 * pic + 0.7)
    scale = size / max(h, w)
    im = Image.fromarray(np.round(shown * 255).astype(np.uint8))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    im = im.resize((sw, sh), Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)
    pad, m, top = 40, 16, 64
    (cr, cc) = rf.clipped
    zoom = (cr[1] - cr[0] + 1) * 4 <= h and (cc[1] - cc[0] + 1) * 4 <= w and rf.mask.any()
    inset = 240 if zoom else 0
    cv = Canvas(sw + 2 * pad + 2 * m + (inset + 24 if zoom else 0),
                top + sh + 2 * pad + 92 + (20 if note else 0))
    _, infos = layer_infos(source, in_shape)
    info = infos[_target(infos, stage)]
    where = f" at ({rf.position[0]}, {rf.position[1]})" if rf.position is not None else " (every unit)"
    cv.text(m, 10, f"Receptive field of {info.name}{where}", 17, PALETTE["ink"])
    cv.text(m, 34, f"{info.name} output {shape_of(info.out_shape)}; input {h}x{w}; "
            f"pixels that cannot change it are washed out", 12, PALETTE["muted"])
    ox, oy = m + pad, top + pad
    cv.rect(ox - pad, oy - pad, ox + sw + pad, oy + sh + pad, fill="#f3f4f6")
    cv.image(ox, oy, im)

    def box(rows, cols):
        x0 = max(ox + cols[0] * scale, ox - pad + 2)
        x1 = min(ox + (cols[1] + 1) * scale, ox + sw + pad - 2)
        y0 = max(oy + rows[0] * scale, oy - pad + 2)
        y1 = min(oy + (rows[1] + 1) * scale, oy + sh + pad - 2)
        return x0, y0, x1, y1

    cv.rect(*box(rf.rows, rf.cols), outline=PALETTE["accent"], width=1, dash=True)
    cv.rect(*box(cr, cc), outline=PALETTE["accent"], width=2)
    if zoom:  # the field enlarged, with a margin of context around it
        ctx = max(2, (max(cr[1] - cr[0], cc[1] - cc[0]) + 1) // 2)
        r0, r1 = max(cr[0] - ctx, 0), min(cr[1] + ctx, h - 1)
        c0, c1 = max(cc[0] - ctx, 0), min(cc[1] + ctx, w - 1)
        crop = shown[r0:r1 + 1, c0:c1 + 1]
        z = inset / max(crop.shape[:2])
        zw, zh = max(1, round(crop.shape[1] * z)), max(1, round(crop.shape[0] * z))
        zim = Image.fromarray(np.round(crop * 255).astype(np.uint8)).resize(
            (zw, zh), Image.Resampling.NEAREST)
        zx, zy = ox + sw + pad + 24, oy - pad + 20
        cv.text(zx, zy - 16, f"zoom: rows {r0}..{r1}, cols {c0}..{c1}", 12, PALETTE["muted"])
        cv.image(zx, zy, zim)
        cv.rect(zx, zy, zx + zw, zy + zh, outline=PALETTE["line"])
        cv.rect(zx + (cc[0] - c0) * z, zy + (cr[0] - r0) * z, zx + (cc[1] + 1 - c0) * z,
                zy + (cr[1] + 1 - r0) * z, outline=PALETTE["accent"], width=2)
    y = oy + sh + pad + 10
    cv.text(m, y, f"input rows {rf.rows[0]}..{rf.rows[1]}, cols {rf.cols[0]}..{rf.cols[1]}: "
            f"{rf.size[0]}x{rf.size[1]} pixels (dashed: including padding)", 13, PALETTE["ink"])
    cv.text(m, y + 20, f"inside the image: rows {cr[0]}..{cr[1]}, cols {cc[0]}..{cc[1]} (solid); "
            f"{int(rf.mask.sum()):,} pixels can influence it", 13, PALETTE["ink"])
    cv.text(m, y + 40, f"neighbouring outputs are {rf.jump[0]}x{rf.jump[1]} input pixels apart "
            "(product of the strides)", 12, PALETTE["muted"])
    if note:
        cv.text(m, y + 60, note, 12, PALETTE["muted"])
    return cv.to_figure({"explanation": "receptive_field", "stage": info.name,
                         "position": rf.position, "rows": rf.rows, "cols": rf.cols,
                         "size": rf.size, "jump": rf.jump, "pixels": int(rf.mask.sum())})


def receptive_field_growth_figure(
    source: Source, in_shape: tuple[int, int, int] | None = None, title: str | None = None,
) -> Figure:
    """A small plot: receptive-field height (pixels) after each conv and pool stage."""
    growth = [g for g in receptive_field_growth(source, in_shape) if g["windowed"]]
    if not growth:
        raise RenderError("this network has no spatial stages; nothing to plot")
    shape0, _ = layer_infos(source, in_shape)
    n = len(growth)
    m, left, pw, ph, top = 16, 60, max(360, 34 * n), 220, 64
    label_h = max(40, int(max(len(g["name"]) for g in growth) * 6.5) + 14)
    sub = "input rows one output position sees, after each conv / pool (pixels, padding included)"
    cv = Canvas(int(max(left + pw + 40, text_width(sub, 12) + 2 * m)), top + ph + label_h + 12)
    cv.text(m, 10, title or "Receptive field growth", 17, PALETTE["ink"])
    cv.text(m, 34, sub, 12, PALETTE["muted"])
    sizes = [g["size"][0] for g in growth]
    ymax = max(max(sizes), shape0[1] if len(shape0) == 3 else 1) * 1.1
    x0, y0 = left, top

    def px(k: int) -> float:
        return x0 + (k + 0.5) * pw / n

    def py(v: float) -> float:
        return y0 + ph - v / ymax * ph

    cv.rect(x0, y0, x0 + pw, y0 + ph, fill="#fbfbfc", outline=PALETTE["pad"])
    for v in (0, ymax / 1.1 / 2, ymax / 1.1):
        cv.line([(x0 - 4, py(v)), (x0, py(v))], PALETTE["muted"])
        cv.text(x0 - 6, py(v), fmt(round(v)), 11, PALETTE["muted"], "rm")
    if len(shape0) == 3:
        cv.line([(x0, py(shape0[1])), (x0 + pw, py(shape0[1]))], PALETTE["muted"], 1, dash=True)
        cv.text(x0 + pw - 4, py(shape0[1]) - 3, f"input height {shape0[1]}", 11, PALETTE["muted"], "rs")
    cv.line([(px(k), py(v)) for k, v in enumerate(sizes)], PALETTE["blue"], 2)
    for k, (g, v) in enumerate(zip(growth, sizes)):
        cv.circle(px(k), py(v), 3.5, PALETTE["blue"])
        if k == 0 or sizes[k - 1] != v:
            cv.text(px(k), py(v) - 6, str(v), 11, PALETTE["ink"], "ms")
        cv.text(px(k), y0 + ph + 6, g["name"], 11, PALETTE["ink"], "rm", vertical=True)
    return cv.to_figure({"explanation": "receptive_field_growth", "growth": growth})
