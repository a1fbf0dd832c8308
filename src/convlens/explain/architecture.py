"""Architecture diagrams in the LeNet / AlexNet style, from a Trace or a spec.

Each spatial tensor is a box whose height, depth and thickness grow with its height,
width and channels (log scales), with the real shape written under it (55x55x96)
together with the step that made it (``conv 11x11 /4 pad 2 + relu``); flat tensors
are bars.  Long networks stay readable: runs of identical steps are grouped (x N) and,
past ``max_boxes``, the middle is elided with a count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..render.figure import Figure
from .canvas import Canvas, text_width
from .grid import PALETTE
from .layers import LayerInfo, Source, layer_infos, shape_of
from .shapes import FORMULA, step_formulas

__all__ = ["Block", "architecture_blocks", "architecture_diagram", "architecture_svg"]

_POINTWISE = ("activation", "norm", "dropout", "output")


@dataclass
class Block:
    """One box of the diagram: the step that made a tensor, plus the pointwise steps
    (activation, norm...) applied to it.  ``repeat`` > 1 for a grouped run;
    ``elided`` > 0 for the placeholder standing for that many hidden blocks."""

    name: str
    kind: str
    shape: tuple[int, ...]
    step: str
    extras: list[str] = field(default_factory=list)
    formulas: list[str] = field(default_factory=list)
    repeat: int = 1
    elided: int = 0

    @property
    def signature(self) -> tuple:
        return (self.kind, self.shape, self.step, tuple(self.extras))


def architecture_blocks(
    source: Source, in_shape: tuple[int, int, int] | None = None, max_boxes: int = 16
) -> list[Block]:
    """The boxes of the diagram, input first, grouped and elided as drawn."""
    shape0, infos = layer_infos(source, in_shape)
    blocks = [Block("input", "input", tuple(shape0), "")]
    for info in infos:
        if info.kind in _POINTWISE and len(blocks) > 1 and info.out_shape == blocks[-1].shape:
            blocks[-1].extras.append(info.function or info.kind)
            continue
        blocks.append(_block(info))
    if len(blocks) > max_boxes:
        blocks = _group_runs(blocks)
    if len(blocks) > max_boxes:
        head = max_boxes // 2
        tail = max_boxes - head - 1
        hidden = blocks[head:len(blocks) - tail]
        count = sum(b.repeat for b in hidden)
        blocks = blocks[:head] + [Block("...", "elided", (), "", elided=count)] + blocks[-tail:]
    return blocks


def _block(info: LayerInfo) -> Block:
    if info.kind == "dense":
        step = "dense"
    elif info.kind == "flatten":
        step = "flatten"
    else:
        step = info.step_text()
    formulas = []
    if info.windowed and info.in_shape[1:] != info.out_shape[1:]:
        formulas = step_formulas(info)
    return Block(info.name, info.kind, tuple(info.out_shape), step, formulas=formulas)


def _group_runs(blocks: list[Block]) -> list[Block]:
    """Collapse runs of identical blocks (same step, shape and extras) into one, x N."""
    out: list[Block] = []
    for b in blocks:
        if out and out[-1].signature == b.signature and b.kind != "input":
            out[-1].repeat += 1
            out[-1].name = out[-1].name.split(" .. ")[0] + " .. " + b.name
        else:
            out.append(Block(b.name, b.kind, b.shape, b.step, list(b.extras), list(b.formulas)))
    return out


# -- drawing -----------------------------------------------------------------------
def _scale(n: int, top: int, lo: float, hi: float) -> float:
    return lo + (hi - lo) * (math.log(max(n, 1)) / math.log(max(top, 2)))


def architecture_diagram(
    source: Source, in_shape: tuple[int, int, int] | None = None, *, title: str | None = None,
    max_boxes: int = 16, formulas: bool = True, row_width: int = 1500,
) -> Figure:
    """The diagram as a :class:`Figure` (``meta["shapes"]``: the shape text of each box)."""
    cv, meta = _draw(source, in_shape, title, max_boxes, formulas, row_width)
    return cv.to_figure(meta)


def architecture_svg(
    source: Source, in_shape: tuple[int, int, int] | None = None, *, title: str | None = None,
    max_boxes: int = 16, formulas: bool = True, row_width: int = 1500,
) -> str:
    """The same diagram as SVG text."""
    return _draw(source, in_shape, title, max_boxes, formulas, row_width)[0].to_svg()


def _texts(b: Block) -> list[tuple[str, int, str]]:
    if b.elided:
        return [(f"{b.elided} more", 13, PALETTE["ink"]), ("steps elided", 11, PALETTE["muted"])]
    lines = [(shape_of(b.shape), 14, PALETTE["ink"]), (b.name, 11, PALETTE["muted"])]
    if b.step:
        lines.append((b.step, 11, PALETTE["ink"]))
    if b.extras:
        lines.append(("+ " + " + ".join(b.extras), 11, PALETTE["green"]))
    if b.repeat > 1:
        lines.append((f"x {b.repeat} (repeated)", 12, PALETTE["accent"]))
    return lines


def _draw(source, in_shape, title, max_boxes, formulas, row_width):
    blocks = architecture_blocks(source, in_shape, max_boxes)
    spatial = [b for b in blocks if len(b.shape) == 3]
    flat = [b for b in blocks if len(b.shape) == 1]
    hmax = max([max(b.shape[1], b.shape[2]) for b in spatial] + [2])
    cmax = max([b.shape[0] for b in spatial] + [2])
    nmax = max([b.shape[0] for b in flat] + [2])

    def geometry(b: Block) -> tuple[float, float, float]:  # front height, thickness, depth
        if b.elided:
            return 60.0, 30.0, 0.0
        if len(b.shape) == 3:
            c, h, w = b.shape
            return _scale(h, hmax, 14, 130), _scale(c, cmax, 3, 40), _scale(w, hmax, 8, 80) * 0.7
        return _scale(b.shape[0], nmax, 20, 170), 12.0, 0.0

    cols = []
    for b in blocks:
        fh, t, d = geometry(b)
        tw = max(text_width(s, z) for s, z, _ in _texts(b))
        cols.append((b, fh, t, d, max(t + d * 0.75, tw) + 30))
    up = max(fh / 2 + d * 0.55 for _, fh, _, d, _ in cols) + 6  # above the midline
    down = max(fh / 2 for _, fh, _, _, _ in cols) + 10           # below it
    box_zone = up + down
    text_zone = max(sum(z + 5 for _, z, _ in _texts(c[0])) for c in cols)
    m = 20
    # flow the columns into rows
    rows, cur, x = [], [], m
    for col in cols:
        if cur and x + col[4] > row_width - m:
            rows.append(cur)
            cur, x = [], m
        cur.append(col)
        x += col[4]
    rows.append(cur)
    width = int(max(sum(c[4] for c in r) for r in rows) + 2 * m)
    formula_lines = [f"{b.name}: {f}" for b in blocks for f in b.formulas] if formulas else []
    head = 66
    height = int(head + len(rows) * (box_zone + text_zone + 16) + (18 * (len(formula_lines) + 1) + 10 if formula_lines else 0))
    width = int(max(width, *(text_width(s, 12) + 2 * m for s in formula_lines), 480))
    cv = Canvas(width, height)
    cv.text(m, 12, title or "Architecture", 18, PALETTE["ink"])
    cv.text(m, 38, "boxes: height ~ H, depth ~ W, thickness ~ C (log scales); bars: flat vectors; "
            "shapes written H x W x C", 12, PALETTE["muted"])
    y0 = head
    prev_right: tuple[float, float] | None = None
    for r in rows:
        mid = y0 + up
        x = float(m)
        for n, (b, fh, t, d, cw) in enumerate(r):
            bx = x + (cw - (t + d * 0.75)) / 2
            top = mid - fh / 2
            _box(cv, b, bx, top, fh, t, d)
            if prev_right is not None and n > 0:
                cv.line([prev_right, (bx - 4, mid)], PALETTE["muted"], 2)
                cv.polygon([(bx - 4, mid), (bx - 11, mid - 4), (bx - 11, mid + 4)], PALETTE["muted"])
            prev_right = (bx + t + d * 0.75 + 4, mid)
            ty = y0 + box_zone + 4
            for s, z, colour in _texts(b):
                cv.text(x + cw / 2, ty, s, z, colour, "ma")
                ty += z + 5
            x += cw
        y0 += box_zone + text_zone + 16
        prev_right = None
    if formula_lines:
        cv.text(m, y0, f"where a size changes, {FORMULA}:", 12, PALETTE["muted"])
        for k, line in enumerate(formula_lines):
            cv.text(m, y0 + 18 * (k + 1), line, 12, PALETTE["ink"])
    meta = {"explanation": "architecture", "shapes": [shape_of(b.shape) if not b.elided else "..." for b in blocks],
            "names": [b.name for b in blocks], "formulas": formula_lines}
    return cv, meta


def _box(cv: Canvas, b: Block, x: float, top: float, fh: float, t: float, d: float) -> None:
    if b.elided:
        cv.rect(x, top, x + t, top + fh, outline=PALETTE["muted"], dash=True)
        cv.text(x + t / 2, top + fh / 2, "...", 16, PALETTE["muted"], "mm")
        return
    if len(b.shape) == 1:
        fill, edge = (PALETTE["dense"], PALETTE["dense_edge"]) if b.kind != "flatten" else ("#e5e7eb", PALETTE["muted"])
        cv.rect(x, top, x + t, top + fh, fill=fill, outline=edge)
        return
    fill, edge = (PALETTE["box"], PALETTE["box_edge"]) if b.kind != "input" else ("#e5e7eb", PALETTE["muted"])
    dx, dy = d * 0.75, -d * 0.55
    cv.polygon([(x, top), (x + t, top), (x + t + dx, top + dy), (x + dx, top + dy)], "#dbe7fb", edge)
    cv.polygon([(x + t, top), (x + t + dx, top + dy), (x + t + dx, top + fh + dy), (x + t, top + fh)],
               "#8fb3e8" if b.kind != "input" else "#c5c9d0", edge)
    cv.rect(x, top, x + t, top + fh, fill=fill, outline=edge)
