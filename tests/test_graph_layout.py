"""Drawings tell the truth: the journey and the architecture diagram lay out the Trace's
graph (edges as data, not pixels), channel counts are the stages' own, long networks
collapse into blocks, pictures are deterministic."""
from __future__ import annotations

import numpy as np
import pytest
from graph_traces import ALL, Builder, basic_block, graph_edges, inception, long_resnet, residual

from convlens import render
from convlens.errors import RenderError
from convlens.explain.architecture import architecture_blocks, architecture_diagram, architecture_edges
from convlens.explain.receptive import receptive_field
from convlens.render.graphlayout import block_keys, block_ranges, layout_graph, place, restrict, stage_graph
from convlens.render.journeyview import journey_layout

KINDS = sorted(ALL)


def _contract(trace, blocks) -> set[tuple[str, str]]:
    """The graph's edges with every box's member stages merged into the box."""
    box = {"input": "input"}
    for b in blocks:
        for m in b.members:
            box[m] = b.name
    return {(box[a], box[b]) for a, b in graph_edges(trace) if box[a] != box[b]}


@pytest.mark.parametrize("kind", KINDS)
def test_journey_edges_are_the_graphs(kind):
    t = ALL[kind]()
    lay, _ = journey_layout(t, depth="full")
    assert sorted(lay.edges) == sorted(graph_edges(t))
    assert [n.name for n in lay.nodes[1:]] == sorted(t.names, key=t.names.index)  # execution order


@pytest.mark.parametrize("kind", KINDS)
def test_every_merge_gets_an_arrow_from_each_source(kind):
    t = ALL[kind]()
    lay, _ = journey_layout(t, depth="full")
    geo = place(lay, [(100, 80)] * len(lay.nodes))
    names = [n.name for n in lay.nodes]
    arrows = [(names[s], names[v]) for s, v, _ in geo.routes]
    assert sorted(arrows) == sorted(graph_edges(t))
    for s, v, pts in geo.routes:  # each ends on its target's left side, inside its height
        x0, y0, _, y1 = geo.boxes[v]
        assert pts[-1][0] == x0 and y0 <= pts[-1][1] <= y1
        if pts[0][0] == geo.boxes[s][2]:  # same row: leaves from its source's right side
            assert geo.boxes[s][1] <= pts[0][1] <= geo.boxes[s][3]
    for st in t.stages:
        if st.kind == "merge":
            assert sum(1 for a, b in arrows if b == st.name) == len(st.sources) >= 2


def _segments_cross_box(pts, box, margin=1) -> bool:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in zip(pts, pts[1:]):
        lo_x, hi_x, lo_y, hi_y = min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)
        if lo_x < x1 - margin and hi_x > x0 + margin and lo_y < y1 - margin and hi_y > y0 + margin:
            return True
    return False


@pytest.mark.parametrize("kind", KINDS)
def test_no_arrow_runs_through_a_box(kind):
    t = ALL[kind]()
    lay, _ = journey_layout(t, depth="full")
    geo = place(lay, [(100, 80)] * len(lay.nodes), per_row=5)
    for s, v, pts in geo.routes:
        for k, box in enumerate(geo.boxes):
            if k not in (s, v):
                assert not _segments_cross_box(pts, box), (lay.nodes[s].name, lay.nodes[v].name, k)


@pytest.mark.parametrize("kind", KINDS)
def test_architecture_edges_are_the_graphs_contracted_into_its_boxes(kind):
    t = ALL[kind]()
    blocks = architecture_blocks(t)
    assert set(architecture_edges(t)) == _contract(t, blocks)
    fig = architecture_diagram(t)
    assert sorted(map(tuple, fig.meta["edges"])) == sorted(architecture_edges(t))
    # every stage is in exactly one box
    members = [m for b in blocks for m in b.members]
    assert sorted(members) == sorted(t.names)


@pytest.mark.parametrize("kind", KINDS)
def test_channel_counts_are_the_stages_own(kind):
    t = ALL[kind]()
    fig = render.journey(t, tile=64, depth="full", top=0)
    for p in fig.meta["panels"][1:]:
        assert p["shape"] == t[p["stage"]].shape_str
    blocks = architecture_blocks(t)
    for b in blocks[1:]:
        assert b.shape == t[b.members[-1]].shape
        if b.kind in ("pool", "activation", "norm") and len(b.sources) == 1 and b.sources[0] > 0:
            # nothing that keeps channels is drawn changing them
            assert b.shape[0] == blocks[b.sources[0]].shape[0]


def test_a_concat_branch_is_beside_the_main_path_not_inline():
    t = inception()
    lay, _ = journey_layout(t, depth="full")
    lane = {n.name: lay.lane[k] for k, n in enumerate(lay.nodes)}
    col = {n.name: lay.column[k] for k, n in enumerate(lay.nodes)}
    spine = [lay.nodes[k].name for k in lay.spine]
    assert spine == ["input", "stem.conv", "stem.relu", "mixed.b3dbl_1", "mixed.b3dbl_2",
                     "mixed.b3dbl_3", "mixed.cat"]
    # branches before the main one in the concat go above it, the one after below
    assert lane["mixed.b1x1"] < 0 and lane["mixed.b3x3"] < 0 and lane["mixed.bpool"] > 0
    assert lane["mixed.b3x3_1"] == lane["mixed.b3x3"]  # a branch keeps its lane
    assert lane["mixed.b1x1"] != lane["mixed.b3x3"]
    assert col["mixed.b1x1"] == col["mixed.cat"] - 1  # each branch ends by the concat
    blocks = architecture_blocks(t)
    cat = next(b for b in blocks if b.name == "mixed.cat")
    assert cat.step == "concat 4+6+4+2" and cat.shape == (16, 12, 12)
    assert sorted(blocks[s].name for s in cat.sources) == sorted(
        ["mixed.b1x1", "mixed.b3x3", "mixed.b3dbl_3", "mixed.bpool"])


def test_residual_shortcut_and_downsample():
    t = residual()
    lay, _ = journey_layout(t, depth="full")
    lane = {n.name: lay.lane[k] for k, n in enumerate(lay.nodes)}
    assert lane["layer2.0.downsample.0"] == lane["layer2.0.downsample.1"] == 1  # below
    assert all(lane[n] == 0 for n in ("layer1.0.add", "layer2.0.add", "fc"))
    assert ("relu", "layer1.0.add") in lay.edges  # the identity shortcut


def _big() -> object:
    return long_resnet((3, 4, 23, 3))  # ResNet-101-shaped


def test_a_long_network_collapses_into_blocks_that_open():
    t = _big()
    assert len(t.stages) >= 200
    fig = render.journey(t, tile=64, max_channels=4, top=0)
    nodes = fig.meta["nodes"]
    assert 10 <= len(nodes) <= 48
    cap = fig.meta["caption"]
    assert cap.startswith(f"showing {len(nodes)} of {len(t.stages)} stages")
    assert "layer1.0-layer1.2" in cap and "layer3.0-layer3.22" in cap and "expand=" in cap
    # the collapsed graph is the real one, contracted
    lay, _ = journey_layout(t)
    box = {t.names[p]: n.name for n in lay.nodes[1:] for p in n.members}
    box["input"] = "input"
    assert sorted(lay.edges) == sorted({(box[a], box[b]) for a, b in graph_edges(t) if box[a] != box[b]})
    assert {c["block"] for c in fig.meta["collapsed"]} >= {"layer1.0", "layer3.22"}
    # open one block: its stages appear, with the shortcut into its add
    opened = journey_layout(t, expand=["layer1.0"])[0]
    names = [n.name for n in opened.nodes]
    assert "layer1.0.conv1" in names and "layer1.0" not in names and "layer1.1" in names
    assert ("maxpool", "layer1.0.add") in opened.edges
    # the architecture diagram stays small
    blocks = architecture_blocks(t)
    assert len(blocks) <= 16 and any(b.kind == "block" for b in blocks)
    assert set(architecture_edges(t)) == _contract(t, blocks)


def test_depth_and_errors():
    t = long_resnet((2, 2, 2, 2))
    d1 = [n.name for n in journey_layout(t, depth=1)[0].nodes]
    assert "layer1" in d1 and "layer1.0" not in d1
    full = journey_layout(t, depth="full")[0]
    assert len(full.nodes) == len(t.stages) + 1
    with pytest.raises(RenderError, match="did you mean .*layer1.0"):
        journey_layout(t, expand=["layer1.O"])
    with pytest.raises(RenderError, match="depth"):
        journey_layout(t, depth=0)


def test_block_keys_and_ranges():
    names = ["conv1", "layer1.0.conv1", "layer1.0.add", "layer1.1.conv1", "layer2.0.downsample.0"]
    assert block_keys(names, 2) == ["conv1", "layer1.0", "layer1.0", "layer1.1", "layer2.0"]
    assert block_keys(names, 1, ["layer1.0"]) == ["conv1", "layer1.0.conv1", "layer1.0.add",
                                                  "layer1.1", "layer2"]
    assert block_ranges(["layer1.0", "layer1.1", "layer1.2", "layer2.0", "fc"]) == [
        "layer1.0-layer1.2", "layer2.0", "fc"]


def test_names_that_do_not_follow_the_graph_stay_open():
    # a.x -> b.y -> a.z: collapsing "a" would draw a cycle
    names = ["a.x", "b.y", "a.z"]
    lay = layout_graph(names, [(-1,), (0,), (1,)], depth=1, max_nodes=2)
    assert [n.name for n in lay.nodes] == ["input", "a.x", "b.y", "a.z"]


def test_a_selection_keeps_the_graph_through_dropped_stages():
    t = residual()
    preds = stage_graph(t.stages)
    keep = [k for k, s in enumerate(t.stages) if s.kind in ("conv", "merge")]
    sub = restrict(preds, keep)
    names = [t.stages[k].name for k in keep]
    edges = {("input" if s == -1 else names[s], names[v]) for v, ps in enumerate(sub) for s in ps}
    assert ("conv1", "layer1.0.add") in edges  # through the dropped relu
    assert ("layer1.0.add", "layer2.0.downsample.0") in edges  # through relu_1
    fig = render.journey(t, layers="conv,merge", tile=64, top=0)
    assert sorted(map(tuple, fig.meta["edges"])) == sorted(edges)
    assert fig.meta["caption"].startswith(f"showing {len(keep)} of {len(t.stages)} stages")


def test_stages_without_sources_are_a_chain():
    b = Builder(3, 8, 8)
    b.conv("c1", -1, 4)
    b.relu("r1", 0)
    t = b.trace()
    for s in t.stages:
        s.sources, s.source = (), None
    assert journey_layout(t)[0].edges == [("input", "c1"), ("c1", "r1")]


@pytest.mark.parametrize("kind", ["inception", "residual"])
def test_pictures_are_deterministic(kind):
    t = ALL[kind]()
    a = render.journey(t, tile=64, max_channels=4, top=0).to_png_bytes()
    assert a == render.journey(ALL[kind](), tile=64, max_channels=4, top=0).to_png_bytes()
    assert architecture_diagram(t).to_png_bytes() == architecture_diagram(ALL[kind]()).to_png_bytes()
    big = _big()
    assert architecture_diagram(big).to_png_bytes() == architecture_diagram(_big()).to_png_bytes()


# -- receptive fields along the graph ---------------------------------------------------
def test_receptive_field_follows_each_path():
    t = inception()
    # stem 3x3 then: 1x1 | 1x1, 3x3 | 1x1, 3x3, 3x3 | avgpool 3x3, 1x1
    sizes = {0: 3, 3: 3, 4: 5, 9: 5, 10: 7, 13: 7, 14: 5, 15: 5}
    for ch, size in sizes.items():
        rf = receptive_field(t, "mixed.cat", (6, 6), channel=ch)
        assert rf.size == (size, size) and rf.channel == ch
    rf = receptive_field(t, "mixed.cat", (6, 6), channel=0)
    assert "mixed.b1x1" in rf.through and "mixed.b3dbl_3" not in rf.through
    assert receptive_field(t, "mixed.cat", (6, 6)).size == (7, 7)  # any channel: every branch
    with pytest.raises(RenderError, match="0..15"):
        receptive_field(t, "mixed.cat", (6, 6), channel=16)


def test_receptive_field_through_squeeze_excitation_and_residuals():
    t = ALL["se"]()
    rf = receptive_field(t, "se.mul", (0, 0))
    assert rf.mask.all() and "se.mean" in rf.through  # the scale saw the whole image
    direct = receptive_field(t, "conv.relu", (0, 0))
    assert direct.size == (3, 3)
    t = residual()
    a = receptive_field(t, "layer2.0.add", (2, 2))
    main = receptive_field(t, "layer2.0.bn2", (2, 2))
    short = receptive_field(t, "layer2.0.downsample.1", (2, 2))
    assert np.array_equal(a.mask, main.mask | short.mask)
    assert set(a.through) >= {"layer2.0.conv1", "layer2.0.downsample.0", "layer1.0.add", "conv1"}
