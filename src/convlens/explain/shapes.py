"""Shapes explained: the output-size formula with the real numbers filled in."""
from __future__ import annotations

from convlens.explain.layers import LayerInfo, Source, layer_infos, shape_of

__all__ = ["FORMULA", "size_formula", "step_formulas", "explain_shapes"]

FORMULA = "out = floor((n + 2p - d(k-1) - 1)/s) + 1"
"""The output length of a convolution or pooling along one axis (n input, k kernel,
s stride, p padding per side, d dilation)."""


def size_formula(n: int, k: int, s: int = 1, p: int | tuple[int, int] = 0, d: int = 1) -> str:
    """``floor((224 + 2*2 - 1*(11-1) - 1)/4) + 1 = 55``: the formula with numbers in.

    ``p`` may be a ``(before, after)`` pair (asymmetric "same" padding); the result
    always equals :func:`convlens.ops.output_size`.
    """
    before, after = (p, p) if isinstance(p, int) else p
    pad = f"2*{before}" if before == after else f"{before}+{after}"
    out = (n + before + after - d * (k - 1) - 1) // s + 1
    return f"floor(({n} + {pad} - {d}*({k}-1) - 1)/{s}) + 1 = {out}"


def step_formulas(info: LayerInfo) -> list[str]:
    """The formula lines for a conv or pool step: one per axis, or one when both agree."""
    if not info.windowed or len(info.in_shape) != 3:
        return []
    (pt, pb), (pl, pr) = info.padding
    h = size_formula(info.in_shape[1], info.kernel[0], info.stride[0],  # type: ignore[index]
                     pt if pt == pb else (pt, pb), info.dilation[0])
    w = size_formula(info.in_shape[2], info.kernel[1], info.stride[1],  # type: ignore[index]
                     pl if pl == pr else (pl, pr), info.dilation[1])
    return [f"H, W: {h}"] if h == w else [f"H: {h}", f"W: {w}"]


def explain_shapes(source: Source, in_shape: tuple[int, int, int] | None = None) -> str:
    """A text table of every step's output shape (H x W x C), with the formula wherever
    the height or width changes and the exact factor per side."""
    shape0, infos = layer_infos(source, in_shape)
    lines = [f"input: {shape_of(shape0)}", f"formula: {FORMULA}"]
    for info in infos:
        head = f"{info.name} ({info.step_text()}): {shape_of(info.in_shape)} -> {shape_of(info.out_shape)}"
        if info.kind == "flatten":
            head += " = " + "*".join(str(v) for v in info.in_shape)
        lines.append(head)
        if info.windowed and info.in_shape[1:] != info.out_shape[1:]:
            lines += ["    " + f for f in step_formulas(info)]
            (hi, wi), (ho, wo) = info.in_shape[1:], info.out_shape[1:]
            lines.append(f"    per side: {ho}/{hi} = {ho / hi:.3f} (height), "
                         f"{wo}/{wi} = {wo / wi:.3f} (width)")
    return "\n".join(lines)
