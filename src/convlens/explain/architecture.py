"""Architecture diagrams in the LeNet / AlexNet style, from a Trace or a spec.

Each spatial tensor is a box whose height, depth and thickness grow with its height,
width and channels (log scales), with the real shape written under it (55x55x96)
together with the step that made it (``conv 11x11 /4 pad 2 + relu``); flat tensors
are bars.  The boxes follow the network's graph (``Stage.sources``): the main path
left to right, side branches above and below it, an arrow from every input of every
merge (see :mod:`convlens.render.graphlayout`); each box's shape is the real output
of the stage it shows.  Long networks stay readable: a straight chain groups runs of
identical steps (x N) and elides the middle past ``max_boxes``; a branching one
collapses blocks of stages sharing a name prefix (``layer1.0``) into one box,
opened with ``expand=``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Sequence

from convlens.render.figure import Figure
from convlens.render.graphlayout import GraphLayout, layout_graph, place
from convlens.explain.canvas import Canvas, text_width
from convlens.explain.grid import PALETTE
from convlens.explain.layers import LayerInfo, Source, layer_infos, shape_of
from convlens.explain.shapes import FORMULA, step_formulas

__all__ = ["Block", "architecture_blocks", "architecture_diagram", "architecture_svg",
           "architecture_edges"]

_POINTWISE = ("activation", "norm", "dropout", "output")
Depth = "int | Literal['auto', 'full']"


@dataclass
class Block:
    """One box of the diagram: the step that made a tensor, plus the pointwise steps
    (activation, norm...) applied to it.  ``repeat`` > 1 for a grouped run;
    ``elided`` > 0 for the placeholder standing for that many hidden blocks;
    ``members`` the stages it stands for (a collapsed block: all of them, ``kind``
    ``"block"``); ``sources`` the boxes feeding it (positions in the list, 0: input)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    step: str
    extras: list[str] = field(default_factory=list)
    formulas: list[str] = field(default_factory=list)
    repeat: int = 1
    elided: int = 0
    members: list[str] = field(default_factory=list)
    sources: tuple[int, ...] = ()

    @property
    def signature(self) -> tuple:
        return (self.kind, self.shape, self.step, tuple(self.extras))


def _fold(infos: list[LayerInfo]) -> tuple[list[int], list[tuple[int, ...]]]:
    """Each step's box (pointwise steps join the box they read, when it feeds only them):
    ``(box of each step, the boxes feeding each box)``; box 0 is the input."""
    succ: dict[int, int] = Counter(s for i in infos for s in i.sources)
    box_of: list[int] = []
    first: list[int] = []  # first step of each box (box k + 1)
    for info in infos:
        src = info.sources
        if (info.kind in _POINTWISE and len(src) == 1 and src[0] != -1 and succ[src[0]] == 1
                and infos[src[0]].out_shape == info.out_shape):
            box_of.append(box_of[src[0]])
        else:
            first.append(info.position)
            box_of.append(len(first))
    preds: list[tuple[int, ...]] = [()]
    for b, pos in enumerate(first, 1):
        found = []
        for s in infos[pos].sources:
            k = 0 if s == -1 else box_of[s]
            if k != b and k not in found:
                found.append(k)
        preds.append(tuple(found))
    return box_of, preds


def _chain(preds: list[tuple[int, ...]]) -> bool:
    return all(p == (k - 1,) for k, p in enumerate(preds) if k)


def architecture_blocks(
    source: Source, in_shape: tuple[int, int, int] | None = None, max_boxes: int = 16, *,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
) -> list[Block]:
    """The boxes of the diagram, input first, grouped, collapsed and elided as drawn.

    A straight chain groups runs of identical boxes (x N) past ``max_boxes`` and then
    elides the middle.  A graph with branches collapses blocks (stages sharing a dotted
    name prefix) at the deepest ``depth`` that fits ``max_boxes`` (``"full"``: none;
    an int: that many name parts), ``expand`` opening named blocks."""
    return _blocks(source, in_shape, max_boxes, depth, expand)[0]


def architecture_edges(
    source: Source, in_shape: tuple[int, int, int] | None = None, max_boxes: int = 16, *,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """The diagram's arrows as ``(from box, to box)`` names (``"input"``: the model input),
    exactly those drawn."""
    blocks = architecture_blocks(source, in_shape, max_boxes, depth=depth, expand=expand)
    return [(blocks[s].name, b.name) for b in blocks for s in b.sources]


def _blocks(source, in_shape, max_boxes, depth, expand) -> tuple[list[Block], GraphLayout | None]:
    shape0, infos = layer_infos(source, in_shape)
    box_of, preds = _fold(infos)
    boxes = [Block("input", "input", tuple(shape0), "")]
    for info in infos:
        k = box_of[info.position]
        if k < len(boxes):
            boxes[k].extras.append(info.function or info.kind)
            boxes[k].members.append(info.name)
            boxes[k].shape = tuple(info.out_shape)
        else:
            b = _block(info)
            b.members.append(info.name)
            boxes.append(b)
    if _chain(preds) and depth == "auto" and not expand:
        return _chain_blocks(boxes, max_boxes), None
    lay = layout_graph([b.name for b in boxes[1:]], [tuple(s - 1 for s in p) for p in preds[1:]],
                       depth=depth, expand=expand, max_nodes=max_boxes)
    out = [boxes[0]]
    for node in lay.nodes[1:]:
        mem = [boxes[k + 1] for k in node.members]
        if not node.block:
            b = mem[0]
        else:
            inner = [m for bx in mem for m in bx.members]
            kinds = Counter(bx.kind for bx in mem)
            shown = boxes[node.shows + 1]
            summary = ", ".join(f"{k} x{c}" if c > 1 else k for k, c in kinds.items())
            b = Block(node.name, "block", shown.shape, f"block: {summary}",
                      members=inner, extras=[])
        b.sources = lay.preds[len(out)]
        out.append(b)
    return out, lay


def _chain_blocks(blocks: list[Block], max_boxes: int) -> list[Block]:
    if len(blocks) > max_boxes:
        blocks = _group_runs(blocks)
    if len(blocks) > max_boxes:
        head = max_boxes // 2
        tail = max_boxes - head - 1
        hidden = blocks[head:len(blocks) - tail]
        count = sum(b.repeat for b in hidden)
        members = [m for b in hidden for m in b.members]
        blocks = blocks[:head] + [Block("...", "elided", (), "", elided=count, members=members)] + blocks[-tail:]
    for k, b in enumerate(blocks):
        b.sources = (k - 1,) if k else ()
    return blocks


def _block(info: LayerInfo) -> Block:
    if info.kind == "dense":
        step = "dense"
    elif info.kind == "flatten":
        step = "flatten"
    elif info.kind == "merge":
        step = _merge_text(info)
    else:
        step = info.step_text()
    formulas = []
    if info.windowed and info.in_shape[1:] != info.out_shape[1:]:
        formulas = step_formulas(info)
    return Block(info.name, info.kind, tuple(info.out_shape), step, formulas=formulas)


def _merge_text(info: LayerInfo) -> str:
    """``concat 4+6+4+2`` (channels from each input) or ``add`` / ``mul`` of n inputs."""
    offs = info.concat_offsets
    if offs is not None:
        return "concat " + "+".join(str(s[0]) for s in info.in_shapes)
    op = info.op.lower()
    word = next((w for w in ("add", "mul", "sub", "div", "cat", "stack") if w in op), "merge")
    return f"{word} of {len(info.sources)}" if len(info.sources) > 2 else word


def _group_runs(blocks: list[Block]) -> list[Block]:
    """Collapse runs of identical blocks (same step, shape and extras) into one, x N."""
    out: list[Block] = []
    for b in blocks:
        if out and out[-1].signature == b.signature and b.kind != "input":
            out[-1].repeat += 1
            out[-1].name = out[-1].name.split(" .. ")[0] + " .. " + b.name
            out[-1].members.extend(b.members)
        else:
            out.append(Block(b.name, b.kind, b.shape, b.step, list(b.extras), list(b.formulas),
                             members=list(b.members)))
    return out


# -- drawing -----------------------------------------------------------------------
def _scale(n: int, top: int, lo: float, hi: float) -> float:
    return lo + (hi - lo) * (math.log(max(n, 1)) / math.log(max(top, 2)))


def architecture_diagram(
    source: Source, in_shape: tuple[int, int, int] | None = None, *, title: str | None = None,
    max_boxes: int = 16, formulas: bool = True, row_width: int = 1500,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
) -> Figure:
    """The diagram as a :class:`Figure` (``meta["shapes"]``: the shape text of each box;
    ``meta["edges"]``: the arrows as ``[from, to]`` box names)."""
    cv, meta = _draw(source, in_shape, title, max_boxes, formulas, row_width, depth, expand)
    return cv.to_figure(meta)


def architecture_svg(
    source: Source, in_shape: tuple[int, int, int] | None = None, *, title: str | None = None,
    max_boxes: int = 16, formulas: bool = True, row_width: int = 1500,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
) -> str:
    """The same diagram as SVG text."""
    return _draw(source, in_shape, title, max_boxes, formulas, row_width, depth, expand)[0].to_svg()


def _texts(b: Block) -> list[tuple[str, int, str]]:
    if b.elided:
        return [(f"{b.elided} more", 13, PALETTE["ink"]), ("steps elided", 11, PALETTE["muted"])]
    lines = [(shape_of(b.shape), 14, PALETTE["ink"]), (b.name, 11, PALETTE["muted"])]
    if b.step:
        lines.append((b.step, 11, PALETTE["ink"] if b.kind != "block" else PALETTE["blue"]))
    if b.extras:
        lines.append(("+ " + " + ".join(b.extras), 11, PALETTE["green"]))
    if b.kind == "block":
        lines.append((f"{len(b.members)} stages collapsed", 11, PALETTE["blue"]))
    if b.repeat > 1:
        lines.append((f"x {b.repeat} (repeated)", 12, PALETTE["accent"]))
    return lines


def _draw(source, in_shape, title, max_boxes, formulas, row_width, depth="auto", expand=()):
    blocks, lay = _blocks(source, in_shape, max_boxes, depth, expand)
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
        cols.append((b, fh, t, d, max(t + d * 0.75, tw) + 10))
    up = max(fh / 2 + d * 0.55 for _, fh, _, d, _ in cols) + 6  # above the midline
    down = max(fh / 2 for _, fh, _, _, _ in cols) + 10           # below it
    box_zone = up + down
    text_zone = max(sum(z + 5 for _, z, _ in _texts(c[0])) for c in cols)
    m = 20
    head = 66
    graph = lay if lay is not None else _chain_layout(len(blocks))
    geo = place(graph, [(math.ceil(c[4]), math.ceil(box_zone + text_zone)) for c in cols],
                [up] * len(cols), gap_x=24, gap_y=16, max_width=row_width - 2 * m, left=m - 24,
                top=head - 10)
    formula_lines = [f"{b.name}: {f}" for b in blocks for f in b.formulas] if formulas else []
    height = int(geo.height + 6 + (18 * (len(formula_lines) + 1) + 10 if formula_lines else 0))
    width = int(max(geo.width, *(text_width(s, 12) + 2 * m for s in formula_lines), 480))
    cv = Canvas(width, height)
    cv.text(m, 12, title or "Architecture", 18, PALETTE["ink"])
    cv.text(m, 38, "boxes: height ~ H, depth ~ W, thickness ~ C (log scales); bars: flat vectors; "
            "shapes written H x W x C", 12, PALETTE["muted"])
    for (b, fh, t, d, cw), (x0, y0, x1, _) in zip(cols, geo.boxes):
        mid = y0 + up
        bx = x0 + (cw - (t + d * 0.75)) / 2
        _box(cv, b, bx, mid - fh / 2, fh, t, d)
        ty = y0 + box_zone + 4
        for s, z, colour in _texts(b):
            cv.text(x0 + cw / 2, ty, s, z, colour, "ma")
            ty += z + 5
    for s_, v, pts in geo.routes:
        # from the box's right face (not its column's edge) into the next box's front
        (b, fh, t, d, cw), (x0, y0, _, _) = cols[s_], geo.boxes[s_]
        start = x0 + (cw - (t + d * 0.75)) / 2 + t + d * 0.75 + 4
        (_, _, tt, td, tcw), (tx0, _, _, _) = cols[v], geo.boxes[v]
        end = tx0 + (tcw - (tt + td * 0.75)) / 2 - 4
        from_box = abs(pts[0][0] - geo.boxes[s_][2]) < 0.5  # else it enters from the row's start
        q = [(start, pts[0][1]) if from_box else pts[0], *pts[1:-1], (end, pts[-1][1])]
        cv.line(q, PALETTE["muted"], 2)
        ex, ey = q[-1]
        cv.polygon([(ex, ey), (ex - 7, ey - 4), (ex - 7, ey + 4)], PALETTE["muted"])
    for pts in geo.stubs:
        cv.line([(pts[0][0] - 6, pts[0][1]), pts[1]], PALETTE["muted"], 2)
    y0 = geo.height + 6
    if formula_lines:
        cv.text(m, y0, f"where a size changes, {FORMULA}:", 12, PALETTE["muted"])
        for k, line in enumerate(formula_lines):
            cv.text(m, y0 + 18 * (k + 1), line, 12, PALETTE["ink"])
    meta = {"explanation": "architecture", "shapes": [shape_of(b.shape) if not b.elided else "..." for b in blocks],
            "names": [b.name for b in blocks], "formulas": formula_lines,
            "edges": [[blocks[s].name, b.name] for b in blocks for s in b.sources],
            "collapsed": [{"block": b.name, "stages": len(b.members)} for b in blocks if b.kind == "block"]}
    return cv, meta


def _chain_layout(n: int) -> GraphLayout:
    """A straight chain of ``n`` boxes as a layout (what a spec gives)."""
    return layout_graph([f"#{k}" for k in range(1, n)], [(k - 1,) for k in range(n - 1)], depth="full")


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
    if b.kind == "block":  # a collapsed block: a dashed frame around its output's box
        cv.rect(x - 4, top + dy - 4, x + t + dx + 4, top + fh + 4, outline=PALETTE["blue"], dash=True)
