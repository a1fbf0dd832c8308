"""The "explanations" section of ``convlens demo``: the teaching figures, made from the
built-in examples, the classic networks and the cat run through the demo's networks."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from convlens.trace import Trace
from convlens.explain.activations import activation_histogram, activation_table
from convlens.explain.architecture import architecture_diagram, architecture_svg
from convlens.explain.conv import conv_animation, conv_animation_from_stage
from convlens.explain.layers import layer_infos
from convlens.explain.pool import pool_animation, pool_animation_from_stage
from convlens.explain.receptive import receptive_field, receptive_field_figure, receptive_field_growth_figure
from convlens.explain.shapes import step_formulas

__all__ = ["DEMO_SPECS", "demo_section"]

DEMO_SPECS: tuple[str, ...] = (
    "conv(3, 3x3) relu maxpool(5)",
    "conv(8, 3x3) relu maxpool(2) conv(8, 3x3, dilation=2) relu maxpool(2) conv(8, 3x3) relu",
)
"""The 2017 tutorial's toy network, and a deeper one for receptive fields."""

EYE = (80, 130, 145, 215)
"""Rows 80..144, cols 130..214: the cat's left eye, where the kernels have something to see."""


def demo_section(
    outdir: str | Path, trace_for_spec: Callable[[str], Trace],
    specs: Sequence[str] = DEMO_SPECS, subject: str = "the cat",
) -> list[dict]:
    """Write the explanation figures into ``outdir``; returns one
    ``{"title", "file", "caption"}`` per figure (``file`` relative to ``outdir``).

    ``trace_for_spec(spec)`` must return the Trace of the cat through that toy network
    (stage names as the spec names them: conv1, relu1, maxpool1...).  ``specs[0]``
    drives the convolution, pooling and activation figures (it needs conv1, relu1 and
    maxpool1); ``specs[-1]`` the architecture and receptive-field figures.  ``subject``
    names the picture in titles and captions ("the cat", "your image").
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    items: list[dict] = []

    def add(title: str, file: str, caption: str) -> None:
        items.append({"title": title, "file": file, "caption": caption})

    a = conv_animation()
    a.save_gif(out / "conv_classic.gif")
    add("Convolution, the classic example", "conv_classic.gif",
        "A 3x3 kernel slides over a 5x5 binary image: each value of the 3x3 output is the "
        "sum of the window times the kernel. Output " + _rows(a.meta["output"]) + ".")
    a = conv_animation(stride=2, padding=1)
    a.save_gif(out / "conv_stride2_pad1.gif")
    add("Stride 2 and zero padding", "conv_stride2_pad1.gif",
        "The same kernel with one ring of zero padding (grey) and stride 2: "
        + a.meta["formula"][1].split(":  ")[-1] + ".")

    first = trace_for_spec(specs[0])
    at = _busiest(first["conv1"].output[0, 0], first.model_input.shape[2:])
    a = conv_animation_from_stage(first, "conv1", channel=0, at=at, size=3)
    a.save_gif(out / "conv_cat.gif")
    where = "the cat's eye" if subject == "the cat" else f"a busy spot of {subject}"
    add(f"A real kernel on {subject}", "conv_cat.gif",
        f"conv1 of '{specs[0]}' on {where}: the red, green and blue sums "
        "add up, with the bias, to each output value (computed by convlens.ops; equal to "
        "the network's own output).")
    a = pool_animation()
    a.save_gif(out / "maxpool_classic.gif")
    add("Max pooling", "maxpool_classic.gif",
        "2x2 windows with stride 2 keep the largest value of each window: "
        + _rows(a.meta["output"]) + ".")
    pool = first["maxpool1"]
    info = {i.name: i for i in layer_infos(first)[1]}["maxpool1"]
    prow = min(at[0] // info.stride[0], pool.shape[1] - 2)
    pcol = min(at[1] // info.stride[1], pool.shape[2] - 2)
    a = pool_animation_from_stage(first, "maxpool1", channel=0, at=(max(prow, 0), max(pcol, 0)), size=2)
    a.save_gif(out / "maxpool_cat.gif")
    add(f"Max pooling on {subject}", "maxpool_cat.gif",
        f"maxpool1 takes the largest of each 5x5 window of relu1: "
        f"{info.in_shape[1]}x{info.in_shape[2]} -> {pool.shape[1]}x{pool.shape[2]}, one fifth per "
        f"side ({step_formulas(info)[0]}).")
    activation_table().save(out / "activations.png")
    add("Activation functions", "activations.png",
        "Each function with its derivative (dashed), formula and range.")
    activation_histogram(first, "relu1").save(out / "relu_histogram.png")
    add(f"What ReLU did to {subject}", "relu_histogram.png",
        "conv1's values before and after relu1: every negative value becomes 0.")

    for key, title in (("alexnet", "AlexNet"), ("lenet5", "LeNet-5")):
        architecture_diagram(key, title=title).save(out / f"architecture_{key}.png")
        (out / f"architecture_{key}.svg").write_text(architecture_svg(key, title=title), encoding="utf-8")
        add(f"{title} architecture", f"architecture_{key}.png",
            f"The classic {title} shapes, computed from its spec (SVG: architecture_{key}.svg).")
    deep = trace_for_spec(specs[-1])
    architecture_diagram(deep, title=f"'{specs[-1]}' on {subject}").save(out / "architecture_demo.png")
    add(f"The demo network on {subject}", "architecture_demo.png",
        f"Every box carries the real shape of the activations of {subject} (H x W x C).")
    last = [i for i in layer_infos(deep)[1] if i.windowed][-1]
    hh, ww = last.out_shape[1:]
    H, W = deep.model_input.shape[2:]
    pos = (min(hh - 1, (EYE[0] + EYE[2]) // 2 * hh // H), min(ww - 1, (EYE[1] + EYE[3]) // 2 * ww // W))
    rf = receptive_field(deep, last.name, pos)
    receptive_field_figure(deep, last.name, pos).save(out / "receptive_field_cat.png")
    add("Receptive field", "receptive_field_cat.png",
        f"One position of {last.name} sees input rows {rf.rows[0]}..{rf.rows[1]} and cols "
        f"{rf.cols[0]}..{rf.cols[1]} ({rf.size[0]}x{rf.size[1]} pixels, "
        f"{int(rf.mask.sum())} of them inside the image can change it).")
    receptive_field_growth_figure("alexnet", title="AlexNet").save(out / "receptive_field_growth.png")
    add("Receptive field growth", "receptive_field_growth.png",
        "How far one AlexNet position sees, stage by stage: 11, 19, 51, 67, 99, 131, 163, 195 pixels.")
    return items


def _busiest(out, hw) -> tuple[int, int]:
    """The output position, within the eye region (scaled to this input), whose 3x3 patch
    of output values varies most: a place with an edge to show."""
    import numpy as np

    H, W = hw
    r0, c0 = EYE[0] * H // 300, EYE[1] * W // 451
    r1, c1 = max(r0 + 3, EYE[2] * H // 300), max(c0 + 3, EYE[3] * W // 451)
    region = np.asarray(out, dtype=np.float64)[r0:min(r1, out.shape[0]), c0:min(c1, out.shape[1])]
    if region.shape[0] < 3 or region.shape[1] < 3:
        return 0, 0
    win = np.lib.stride_tricks.sliding_window_view(region, (3, 3))
    spread = win.max(axis=(-2, -1)) - win.min(axis=(-2, -1))
    i, j = np.unravel_index(int(np.argmax(spread)), spread.shape)
    return r0 + int(i), c0 + int(j)


def _rows(a) -> str:
    return "[" + ", ".join("[" + ",".join(f"{v:g}" for v in r) + "]" for r in a) + "]"
