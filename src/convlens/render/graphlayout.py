"""The graph of a Trace laid out for drawing: blocks collapsed, columns, lanes, edge routes.

Framework-free and drawing-free: the journey (panels) and the architecture diagram
(boxes) both ask it where things go, then draw with their own tools.

* **The graph** is read from ``Stage.sources`` (-1 = the model input), never from the
  list order; a stage that records no sources (an older trace) reads the one before it.
* **Blocks.** Stages whose names share a dotted prefix (``layer1.0.conv1``,
  ``layer1.0.add`` -> ``layer1.0``) collapse into one node at a ``depth`` (number of
  name parts kept); ``expand`` opens named blocks.  A block that would make a cycle
  (names that do not follow the graph) is left open.
* **Layers.** Columns are longest-path layers from the input, so the main path (the
  longest path to the last stage; first argument on ties) is one straight row,
  ``lane`` 0.  Side nodes sit beside it (lanes +1, -1, +2...), as late as their
  successors allow, a branch keeping its lane where it can.
* **Routes.** An edge between neighbouring columns is a straight line or an elbow in
  the gap between them; a longer edge runs in the channel between lanes, so no line
  crosses a box.  Rows wrap only after a column that every later edge leaves from
  (a cut), so a wrapped picture keeps every edge.
* Deterministic: same graph and sizes, same numbers.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal, Sequence

from convlens.errors import RenderError, nearest

__all__ = ["GraphNode", "GraphLayout", "Geometry", "stage_graph", "restrict", "block_keys",
           "layout_graph", "place", "block_ranges", "INPUT", "Depth"]

INPUT = "input"
Depth = "int | Literal['auto', 'full']"
Point = tuple[float, float]


@dataclass(frozen=True)
class GraphNode:
    """One drawn node: a stage, a collapsed block of stages, or the model input.

    ``members`` are the positions (in the stage list given) of the stages it stands
    for (empty for the input); ``shows`` is the one whose output stands for the node
    (the block's last stage that feeds something outside it; -1: the input)."""

    name: str
    members: tuple[int, ...]
    shows: int

    @property
    def block(self) -> bool:
        return len(self.members) > 1


@dataclass
class GraphLayout:
    """Nodes in topological order (node 0 is the input), their sources (node ids, in
    argument order), columns, lanes and the main path (``spine``)."""

    nodes: list[GraphNode]
    preds: list[tuple[int, ...]]
    column: list[int]
    lane: list[int]
    spine: list[int]
    stages: int
    depth: int | None = None
    succs: list[list[int]] = field(default_factory=list)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every edge drawn, as ``(from name, to name)`` pairs (``"input"``: the model input)."""
        return [(self.nodes[s].name, self.nodes[d].name) for d, ps in enumerate(self.preds) for s in ps]

    @property
    def blocks(self) -> list[GraphNode]:
        """The collapsed blocks, in order."""
        return [n for n in self.nodes if n.block]

    @property
    def columns(self) -> int:
        return max(self.column) + 1


# -- the graph ---------------------------------------------------------------------------
def stage_graph(stages: Sequence) -> list[tuple[int, ...]]:
    """Per stage (list position), the positions of the stages feeding it, in argument
    order without repeats (-1: the model input).  A stage with no recorded sources, or
    whose sources this list does not hold, reads the stage before it."""
    where = {s.index: p for p, s in enumerate(stages)}
    out: list[tuple[int, ...]] = []
    for p, s in enumerate(stages):
        srcs = tuple(s.sources) or ((s.source,) if s.source is not None else ())
        found = [-1 if i == -1 else where[i] for i in srcs if i == -1 or (i in where and where[i] < p)]
        out.append(tuple(dict.fromkeys(found)) or (p - 1,))
    return out


def restrict(preds: Sequence[tuple[int, ...]], keep: Sequence[int]) -> list[tuple[int, ...]]:
    """The graph on the kept positions only: each kept stage's sources are its nearest
    kept ancestors (through every path over dropped stages), in the order met; returned
    as positions in ``keep`` (-1: the input)."""
    new = {p: k for k, p in enumerate(keep)}
    reach: dict[int, tuple[int, ...]] = {-1: (-1,)}  # dropped stage -> kept ancestors
    out: list[tuple[int, ...]] = []
    for p in range(len(preds)):
        found: list[int] = []
        for s in preds[p]:
            found.extend((new[s],) if s in new else reach[s])
        found_t = tuple(dict.fromkeys(found))
        if p in new:
            out.append(found_t)
        else:
            reach[p] = found_t
    return out


def block_keys(names: Sequence[str], depth: int | None, expand: Sequence[str] = ()) -> list[str]:
    """The node each stage is drawn in: its name cut to ``depth`` dotted parts (None:
    no cut), deeper inside and beside the ``expand``-ed blocks."""
    ex = [e.split(".") for e in expand]
    keys = []
    for name in names:
        parts = name.split(".")
        if depth is None:
            keys.append(name)
            continue
        d = depth
        for e in ex:
            k = 0
            while k < min(len(e), len(parts)) and e[k] == parts[k]:
                k += 1
            if k:
                d = max(d, k + 1)
        keys.append(".".join(parts[:d]) if len(parts) > d else name)
    return keys


def _check_expand(names: Sequence[str], expand: Sequence[str]) -> None:
    prefixes = {".".join(n.split(".")[:k]) for n in names for k in range(1, n.count(".") + 1)}
    for e in expand:
        if e not in prefixes:
            close = nearest(e, sorted(prefixes))
            hint = f"; did you mean {', '.join(close)}?" if close else (
                f"; blocks are: {', '.join(sorted(prefixes)[:12])}" if prefixes else
                "; no stage name has a dotted prefix, so there are no blocks")
            raise RenderError(f"expand: no block named {e!r}{hint}")


def _collapse(names: Sequence[str], preds: Sequence[tuple[int, ...]], keys: list[str]
              ) -> tuple[list[GraphNode], list[tuple[int, ...]]]:
    n = len(names)
    while True:
        groups: dict[str, list[int]] = {}
        for p, k in enumerate(keys):
            groups.setdefault(k, []).append(p)
        gid = {k: g for g, k in enumerate(groups)}  # in order of first member
        of = [gid[k] for k in keys]
        gpreds: list[list[int]] = [[] for _ in groups]
        for p in range(n):
            for s in preds[p]:
                g = -1 if s == -1 else of[s]
                if g != of[p] and g not in gpreds[of[p]]:
                    gpreds[of[p]].append(g)
        order = _topo(gpreds)
        if len(order) == len(groups):
            break
        stuck = set(range(len(groups))) - set(order)
        names_stuck = {k for k, g in gid.items() if g in stuck}
        keys = [names[p] if keys[p] in names_stuck else keys[p] for p in range(n)]
    members = list(groups.values())
    succ_out = [False] * n  # does the stage feed a stage of another group?
    for p in range(n):
        for s in preds[p]:
            if s != -1 and of[s] != of[p]:
                succ_out[s] = True
    nodes = [GraphNode(INPUT, (), -1)]
    new_id = {-1: 0}
    for g in order:
        mem = tuple(members[g])
        outs = [p for p in mem if succ_out[p]]
        name = list(groups)[g] if len(mem) > 1 else names[mem[0]]
        new_id[g] = len(nodes)
        nodes.append(GraphNode(name, mem, (outs or list(mem))[-1]))
    npreds = [()] + [tuple(new_id[s] for s in gpreds[g]) for g in order]
    return nodes, npreds


def _topo(preds: Sequence[Sequence[int]]) -> list[int]:
    """Kahn's order, the lowest id first among the ready (ids: list order; -1 = input)."""
    count = [sum(1 for s in ps if s != -1) for ps in preds]
    succ: list[list[int]] = [[] for _ in preds]
    for v, ps in enumerate(preds):
        for s in ps:
            if s != -1:
                succ[s].append(v)
    ready = [v for v, c in enumerate(count) if c == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        v = heapq.heappop(ready)
        out.append(v)
        for w in succ[v]:
            count[w] -= 1
            if count[w] == 0:
                heapq.heappush(ready, w)
    return out


def _max_depth(names: Sequence[str]) -> int:
    return max((n.count(".") for n in names), default=0)


def layout_graph(
    names: Sequence[str], preds: Sequence[tuple[int, ...]], *,
    depth: int | Literal["auto", "full"] = "auto", expand: Sequence[str] = (),
    max_nodes: int = 40,
) -> GraphLayout:
    """Collapse, order and place the graph of stages ``names`` fed by ``preds``.

    ``depth``: ``"full"`` draws every stage; an int keeps that many dotted name parts
    (``1``: ``layer1``; ``2``: ``layer1.0``); ``"auto"`` draws every stage when they
    fit in ``max_nodes``, else the deepest depth that fits (else depth 1).  ``expand``
    names blocks to open (and implies ``"auto"`` -> depth 1 at least)."""
    expand = [e for e in ([expand] if isinstance(expand, str) else list(expand)) if e]
    _check_expand(names, expand)
    if depth == "full":
        d: int | None = None
    elif depth == "auto":
        d = None
        if len(names) > max_nodes or expand:
            top = _max_depth(names)
            d = 1
            for cand in range(top, 0, -1):
                if len(set(block_keys(names, cand, expand))) <= max_nodes:
                    d = cand
                    break
            if len(set(block_keys(names, d, expand))) == len(names):
                d = None
    elif isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1:
        d = depth
    else:
        raise RenderError(f"depth {depth!r} is not valid; expected 'auto', 'full' or an int >= 1")
    keys = block_keys(names, d, expand)
    nodes, npreds = _collapse(names, preds, keys)
    lay = _place_lanes(nodes, npreds)
    lay.stages, lay.depth = len(names), d
    return lay


def _place_lanes(nodes: list[GraphNode], preds: list[tuple[int, ...]]) -> GraphLayout:
    n = len(nodes)
    succs: list[list[int]] = [[] for _ in range(n)]
    for v in range(n):
        for s in preds[v]:
            succs[s].append(v)
    col = [0] * n
    for v in range(1, n):
        col[v] = max((col[s] + 1 for s in preds[v]), default=1)
    end = max(range(1, n), key=lambda v: (max(nodes[v].members), 0)) if n > 1 else 0
    spine = [end]
    while spine[-1] != 0:
        v = spine[-1]
        spine.append(next(s for s in preds[v] if col[s] == col[v] - 1) if preds[v] else 0)
    spine.reverse()
    on_spine = set(spine)
    # side nodes as late as their successors allow (an inception branch ends by its concat)
    for v in range(n - 1, 0, -1):
        if v not in on_spine and succs[v]:
            col[v] = max(col[v], min(col[w] for w in succs[v]) - 1)
    lane = _lanes(preds, succs, col, on_spine)
    return GraphLayout(nodes, list(preds), col, lane, spine, 0, succs=succs)


def _lanes(preds: list[tuple[int, ...]], succs: list[list[int]], col: list[int],
           on_spine: set[int]) -> list[int]:
    """Lanes for the side nodes, one lane per branch (a chain of side nodes) where it
    fits: a branch feeding a merge before the main path's argument goes above it
    (negative lanes), after it below, the nearer argument the nearer lane."""
    n = len(preds)
    chain_of: dict[int, int] = {}
    chains: list[list[int]] = []
    for v in range(1, n):
        if v in on_spine:
            continue
        p = next((s for s in preds[v] if s not in on_spine and s in chain_of), None)
        if p is not None and chains[chain_of[p]][-1] == p and \
                next(w for w in succs[p] if w not in on_spine) == v:
            chain_of[v] = chain_of[p]
            chains[chain_of[v]].append(v)
        else:
            chain_of[v] = len(chains)
            chains.append([v])

    def side(ch: list[int]) -> tuple[int, int, int]:
        tail = ch[-1]
        for w in succs[tail]:
            mine = preds[w].index(tail)
            main = [k for k, s in enumerate(preds[w]) if s in on_spine]
            if main:
                return (-1 if mine < main[0] else 1), col[w], abs(mine - main[0])
            if w in chain_of:  # feeds another branch: keep to its side
                return 0, col[w], 0
        return 1, col[tail] + 1, 0

    sides = [side(ch) for ch in chains]
    lane = [0] * n
    used = {(col[v], 0) for v in on_spine}
    for k in sorted(range(len(chains)), key=lambda k: (sides[k][1], sides[k][2], k)):
        ch = chains[k]
        d = sides[k][0]
        if d == 0:  # with the branch it feeds, or below
            w = next(w for w in succs[ch[-1]] if w in chain_of)
            d = -1 if lane[w] < 0 else 1
        tries = [d * m for m in range(1, n + 2)]
        ln = next((t for t in tries if all((col[v], t) not in used for v in ch)), None)
        if ln is None:  # no lane holds the whole branch: node by node
            for v in ch:
                lane[v] = next(t for t in tries if (col[v], t) not in used)
                used.add((col[v], lane[v]))
            continue
        for v in ch:
            lane[v] = ln
            used.add((col[v], ln))
    return lane


def block_ranges(names: Sequence[str]) -> list[str]:
    """``["layer1.0", "layer1.1", "layer1.2", "layer2.0"]`` -> ``["layer1.0-layer1.2", "layer2.0"]``:
    runs of numbered siblings written as ranges, in the order given."""
    out: list[str] = []
    run: list[str] = []

    def split(n: str) -> tuple[str, int | None]:
        head, _, tail = n.rpartition(".")
        return (head, int(tail)) if head and tail.isdigit() else (n, None)

    for nm in names:
        if run:
            h0, i0 = split(run[-1])
            h1, i1 = split(nm)
            if i0 is not None and i1 is not None and h0 == h1 and i1 == i0 + 1:
                run.append(nm)
                continue
            out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [nm]
    if run:
        out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return out


# -- geometry ----------------------------------------------------------------------------
@dataclass
class Geometry:
    """Where everything goes, in pixels: ``boxes[v]`` ``(x0, y0, x1, y1)`` per node,
    ``routes`` ``(from node, to node, polyline)`` ending at the target's left side
    (draw an arrowhead there), ``rows`` the columns of each row, ``stubs`` short lines
    out of a node whose edges continue on the next row."""

    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]
    routes: list[tuple[int, int, list[Point]]]
    rows: list[list[int]]
    stubs: list[list[Point]]


def place(
    lay: GraphLayout, sizes: Sequence[tuple[int, int]], anchors: Sequence[float] | None = None, *,
    gap_x: int = 30, gap_y: int = 18, max_width: int | None = None, per_row: int | None = None,
    top: int = 0, left: int = 0,
) -> Geometry:
    """Pixel positions for ``lay`` with node ``sizes`` ``(w, h)``; ``anchors[v]``: the
    height (from the node's top) where its edges attach (default: the middle).  Rows
    hold at most ``per_row`` columns and ``max_width`` pixels where a cut allows."""
    n = len(lay.nodes)
    anchors = list(anchors) if anchors is not None else [h / 2 for _, h in sizes]
    ncol = lay.columns
    colw = [0] * ncol
    for v in range(n):
        colw[lay.column[v]] = max(colw[lay.column[v]], int(sizes[v][0]))
    # columns after which a row may break: one node there, every later edge leaves from it
    count = [0] * ncol
    for v in range(n):
        count[lay.column[v]] += 1
    first_after = [ncol] * (ncol + 1)  # min source column of the edges into columns > c
    lo = ncol
    min_src_into = [ncol] * ncol
    for v in range(n):
        for s in lay.preds[v]:
            min_src_into[lay.column[v]] = min(min_src_into[lay.column[v]], lay.column[s])
    for c in range(ncol - 1, -1, -1):
        first_after[c] = lo
        lo = min(lo, min_src_into[c])
    cut = [count[c] == 1 and first_after[c] >= c for c in range(ncol)]
    fan_out = [0] * n
    for v in range(n):
        for s_ in lay.preds[v]:
            fan_out[s_] += 1
    node_at = {lay.column[v]: v for v in range(n) if count[lay.column[v]] == 1}
    clean = [cut[c] and fan_out[node_at[c]] <= 1 for c in range(ncol)]

    def too_long(cols: list[int]) -> bool:
        return (per_row is not None and len(cols) > per_row) or (
            max_width is not None and sum(colw[k] + gap_x for k in cols) + gap_x > max_width)

    def long_enough(cols: list[int]) -> bool:
        return (per_row is None or 2 * len(cols) >= per_row) and (
            max_width is None or 2 * (sum(colw[k] + gap_x for k in cols) + gap_x) >= max_width)

    rows: list[list[int]] = []
    cur: list[int] = []
    pending = False  # too long with no good break yet: break at the next cut
    for c in range(ncol):
        cur.append(c)
        if pending and cut[c] and c < ncol - 1:
            rows.append(cur)
            cur, pending = [], False
            continue
        if not too_long(cur) or len(cur) == 1:
            continue
        breaks = [k for k in range(len(cur) - 1) if cut[cur[k]] and long_enough(cur[:k + 1])]
        good = [k for k in breaks if clean[cur[k]]]
        k = (good or breaks or [None])[-1]
        if k is None:
            pending = True
        else:
            rows.append(cur[:k + 1])
            cur = cur[k + 1:]
    if cur:
        rows.append(cur)
    row_of_col = {c: r for r, cols in enumerate(rows) for c in cols}
    colx = [0] * ncol
    for cols in rows:
        x = left + gap_x
        for c in cols:
            colx[c] = x
            x += colw[c] + gap_x
    row_w = [colx[cols[-1]] + colw[cols[-1]] + gap_x for cols in rows]
    # edges: which channel (between lanes) a long edge runs in, and its x extent
    edges = [(s, v) for v in range(n) for s in lay.preds[v]]
    chan: dict[int, tuple[int, float, float, float]] = {}  # edge -> (row, channel, x0, x1)
    for e, (s, v) in enumerate(edges):
        cs, cv = lay.column[s], lay.column[v]
        rs, rv = row_of_col[cs], row_of_col[cv]
        if rs == rv and cv == cs + 1:
            continue
        first = rows[rv][0]
        if rs != rv and cv == first:
            continue
        l1 = lay.lane[s] if rs == rv else 0
        l2 = lay.lane[v]
        if l1 < l2:
            b = l2 - 0.5
        elif l1 > l2:
            b = l2 + 0.5
        else:
            b = l2 - 0.5 if l2 <= 0 else l2 + 0.5
        x0 = colx[cs] + colw[cs] if rs == rv else colx[first] - gap_x
        chan[e] = (rv, b, x0, colx[cv])
    tracks: dict[int, int] = {}
    per_channel: dict[tuple[int, float], list[list[tuple[float, float]]]] = {}
    for e in sorted(chan, key=lambda e: (chan[e][2], chan[e][3], e)):
        r, b, x0, x1 = chan[e]
        tl = per_channel.setdefault((r, b), [])
        for t, spans in enumerate(tl):
            if all(x1 <= a or x0 >= z for a, z in spans):
                spans.append((x0, x1))
                tracks[e] = t
                break
        else:
            tl.append([(x0, x1)])
            tracks[e] = len(tl) - 1
    step = 5
    # vertical layout of each row: a channel above, between and below its lanes
    boxes: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * n
    chan_y: dict[tuple[int, float], float] = {}
    y = top
    for r, cols in enumerate(rows):
        in_row = [v for v in range(n) if row_of_col[lay.column[v]] == r]
        lanes = [lay.lane[v] for v in in_row]
        lo_l, hi_l = min(lanes), max(lanes)
        lane_h = {ln: 0 for ln in range(lo_l, hi_l + 1)}
        for v in in_row:
            lane_h[lay.lane[v]] = max(lane_h[lay.lane[v]], int(sizes[v][1]))
        lane_top = {}
        for ln in range(lo_l, hi_l + 1):
            k = len(per_channel.get((r, ln - 0.5), []))
            g = max(gap_y, step * k + 10)
            chan_y[(r, ln - 0.5)] = y + g / 2 - step * (k - 1) / 2 if k else y + g / 2
            y += g
            lane_top[ln] = y
            y += lane_h[ln]
        k = len(per_channel.get((r, hi_l + 0.5), []))
        g = max(gap_y, step * k + 10)
        chan_y[(r, hi_l + 0.5)] = y + g / 2 - step * (k - 1) / 2 if k else y + g / 2
        y += g
        for v in in_row:
            c = lay.column[v]
            w, h = int(sizes[v][0]), int(sizes[v][1])
            x0 = colx[c] + (colw[c] - w) // 2
            y0 = lane_top[lay.lane[v]]
            boxes[v] = (x0, y0, x0 + w, y0 + h)
    height = y
    # ports: the edges into a node spread over its left side, ordered by the height
    # they come from (no two cross there), argument order on ties
    eidx = {sv: e for e, sv in enumerate(edges)}

    def approach(s: int, v: int) -> float:
        e = eidx[(s, v)]
        if e in chan:
            return chan_y[(chan[e][0], chan[e][1])] + step * tracks[e]
        if row_of_col[lay.column[s]] != row_of_col[lay.column[v]]:
            return boxes[v][1] + anchors[v]
        return boxes[s][1] + anchors[s]

    rank: dict[tuple[int, int], int] = {}
    for v in range(n):
        order_in = sorted(range(len(lay.preds[v])), key=lambda i: (approach(lay.preds[v][i], v), i))
        for r_, i in enumerate(order_in):
            rank[(v, i)] = r_

    def port_in(v: int, i: int) -> float:
        k = len(lay.preds[v])
        h = boxes[v][3] - boxes[v][1]
        sp = min(10.0, 0.8 * h / (k - 1)) if k > 1 else 0.0
        return boxes[v][1] + anchors[v] + (rank[(v, i)] - (k - 1) / 2) * sp

    # vertical segments in each gap (after column c), spread apart
    vert: dict[int, list[int]] = {}  # gap after column g -> edges with a vertical there
    for e, (s, v) in enumerate(edges):
        cs, cv = lay.column[s], lay.column[v]
        same = row_of_col[cs] == row_of_col[cv]
        if same and (cv == cs + 1) and abs(boxes[s][1] + anchors[s] - port_in(v, lay.preds[v].index(s))) < 0.5:
            continue  # a straight line
        if same:
            vert.setdefault(cs, []).append(e)
        if e in chan and cv != rows[row_of_col[cv]][0]:
            vert.setdefault(cv - 1, []).append(e)

    def gap_x_of(c: int, side: str, e: int) -> float:
        g = c if side == "out" else c - 1
        group = vert[g]
        k = group.index(e)
        sp = min(6.0, (gap_x - 8) / max(len(group), 1))
        return colx[g] + colw[g] + gap_x / 2 + (k - (len(group) - 1) / 2) * sp

    routes: list[tuple[int, int, list[Point]]] = []
    stubs: list[list[Point]] = []
    stubbed: set[int] = set()
    for e, (s, v) in enumerate(edges):
        i = lay.preds[v].index(s)
        dx, dy = float(boxes[v][0]), port_in(v, i)
        cs, cv = lay.column[s], lay.column[v]
        rs, rv = row_of_col[cs], row_of_col[cv]
        sy = boxes[s][1] + anchors[s]
        if rs == rv:
            sx = float(boxes[s][2])
            if cv == cs + 1:
                if abs(sy - dy) < 0.5:
                    pts = [(sx, sy), (dx, dy)]
                else:
                    gx = gap_x_of(cs, "out", e)
                    pts = [(sx, sy), (gx, sy), (gx, dy), (dx, dy)]
            else:
                cy = chan_y[(rv, chan[e][1])] + step * tracks[e]
                gx1, gx2 = gap_x_of(cs, "out", e), gap_x_of(cv, "in", e)
                pts = [(sx, sy), (gx1, sy), (gx1, cy), (gx2, cy), (gx2, dy), (dx, dy)]
        else:
            if s not in stubbed:
                stubbed.add(s)
                stubs.append([(float(boxes[s][2]), sy), (float(boxes[s][2]) + gap_x / 2, sy)])
            x_in = float(colx[rows[rv][0]] - gap_x + 4)
            if cv == rows[rv][0]:
                pts = [(x_in, dy), (dx, dy)]
            else:
                cy = chan_y[(rv, chan[e][1])] + step * tracks[e]
                gx2 = gap_x_of(cv, "in", e)
                pts = [(x_in, cy), (gx2, cy), (gx2, dy), (dx, dy)]
        routes.append((s, v, pts))
    return Geometry(int(max(row_w)), int(height), boxes, routes, rows, stubs)
