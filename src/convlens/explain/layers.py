"""One neutral description of a network's steps, from a Trace or from a spec.

Architecture diagrams, receptive fields and shape explanations read these
:class:`LayerInfo` records, so they work the same for a captured model and for a
spec string such as ``"conv(6, 5x5) tanh avgpool(2)"`` (the reference LeNet-5 and
AlexNet are specs: :data:`REFERENCE_SPECS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from convlens.errors import RenderError, TraceError
from convlens.nets.spec import Act, Conv, Dense, Flatten, NetSpec, Pool, parse_spec
from convlens.ops import pair, resolve_padding
from convlens.trace import Stage, Trace

__all__ = ["LayerInfo", "layer_infos", "REFERENCE_SPECS", "stage_input", "find_stage",
           "animated_block"]

Pad2 = tuple[tuple[int, int], tuple[int, int]]
Source = Union[Trace, NetSpec, str]

REFERENCE_SPECS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "lenet5": (
        "conv(6, 5x5) tanh avgpool(2) conv(16, 5x5) tanh avgpool(2) flatten "
        "dense(120) tanh dense(84) tanh dense(10) softmax",
        (1, 32, 32),
    ),
    "alexnet": (
        "conv(96, 11x11, stride=4, padding=2) relu maxpool(3, stride=2) "
        "conv(256, 5x5, padding=2) relu maxpool(3, stride=2) conv(384, 3x3, padding=1) relu "
        "conv(384, 3x3, padding=1) relu conv(256, 3x3, padding=1) relu maxpool(3, stride=2) "
        "flatten dense(4096) relu dense(4096) relu dense(1000) softmax",
        (3, 224, 224),
    ),
}
"""Classic networks as ``{name: (spec, (C, H, W) input)}``: LeNet-5 (LeCun et al. 1998,
32x32 grey input; C5 written as a dense layer on the 5x5x16 maps, which it is) and
AlexNet (Krizhevsky et al. 2012, one-GPU form with 224x224 input and padding 2)."""


@dataclass(frozen=True)
class LayerInfo:
    """One step: its kind, shapes (channels-first, no batch axis) and window geometry.

    ``kernel``, ``stride``, ``padding`` (explicit ``((top, bottom), (left, right))``)
    and ``dilation`` are set for conv and pool steps.  ``source`` is the position
    (in the list) of the step feeding this one, -1 for the network input.
    """

    position: int
    name: str
    kind: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    source: int
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: Pad2 = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    mode: str = ""
    function: str = ""
    extra_sources: tuple[int, ...] = ()
    """Further inputs of a merge step (add, concat, multiply): positions, like ``source``,
    in argument order (from ``Stage.sources``)."""
    in_shapes: tuple[tuple[int, ...], ...] = ()
    """The shape of every input, in the order of :attr:`sources`."""

    @property
    def concat_offsets(self) -> tuple[int, ...] | None:
        """For a channel concatenation, where each input's channels start in the output
        (``sources`` order); None for any other step.  Recognised by shape: every input
        spatial with the output's height and width, their channels adding up to the
        output's (an add or multiply keeps the channel count)."""
        if len(self.in_shapes) < 2 or len(self.out_shape) != 3:
            return None
        if any(len(s) != 3 or s[1:] != self.out_shape[1:] for s in self.in_shapes):
            return None
        if sum(s[0] for s in self.in_shapes) != self.out_shape[0]:
            return None
        offs, k = [], 0
        for s in self.in_shapes:
            offs.append(k)
            k += s[0]
        return tuple(offs)

    @property
    def sources(self) -> tuple[int, ...]:
        """Every step feeding this one (``source`` first), without repeats."""
        return tuple(dict.fromkeys((self.source, *self.extra_sources)))

    @property
    def spatial(self) -> bool:
        return len(self.out_shape) == 3

    @property
    def windowed(self) -> bool:
        """Does this step slide a window (conv or pool)?"""
        return self.kernel is not None

    def shape_text(self, shape: tuple[int, ...] | None = None) -> str:
        """``55x55x96`` (H x W x C) or ``4096``."""
        s = self.out_shape if shape is None else shape
        return f"{s[1]}x{s[2]}x{s[0]}" if len(s) == 3 else "x".join(map(str, s))

    def step_text(self) -> str:
        """``conv 11x11, stride 4, pad 2`` or ``maxpool 3x3, stride 2``: the window."""
        if not self.windowed:
            return self.function or self.kind
        kh, kw = self.kernel  # type: ignore[misc]
        word = "conv" if self.kind == "conv" else f"{self.mode}pool"
        out = f"{word} {kh}x{kw}"
        if self.stride != (1, 1):
            out += f", stride {_pair_text(self.stride)}"
        (pt, pb), (pl, pr) = self.padding
        if (pt, pb, pl, pr) != (0, 0, 0, 0):
            out += f", pad {pt}" if len({pt, pb, pl, pr}) == 1 else f", pad {pt},{pb},{pl},{pr}"
        if self.dilation != (1, 1):
            out += f", dilation {_pair_text(self.dilation)}"
        if self.groups != 1:
            out += f", groups {self.groups}"
        return out


def _pair_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def shape_of(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[0]}" if len(shape) == 3 else "x".join(map(str, shape))


def layer_infos(
    source: Source, in_shape: tuple[int, int, int] | None = None
) -> tuple[tuple[int, ...], list[LayerInfo]]:
    """``(input shape, steps)`` of a Trace, a :class:`NetSpec` or a spec string.

    A spec needs ``in_shape`` ``(C, H, W)``, except the names of
    :data:`REFERENCE_SPECS` (``"alexnet"``, ``"lenet5"``), which bring their own.
    """
    if isinstance(source, Trace):
        return _from_trace(source)
    if isinstance(source, str):
        key = source.strip().lower().replace("-", "").replace("_", "")
        if key in REFERENCE_SPECS:
            text, ref_shape = REFERENCE_SPECS[key]
            in_shape = in_shape or ref_shape
            source = parse_spec(text, in_channels=in_shape[0])
        else:
            if in_shape is None:
                raise RenderError(
                    "a spec string needs an input shape (C, H, W), e.g. in_shape=(3, 64, 64); "
                    f"or use a reference network: {', '.join(REFERENCE_SPECS)}"
                )
            source = parse_spec(source, in_channels=in_shape[0])
    if isinstance(source, NetSpec):
        if in_shape is None:
            raise RenderError("a NetSpec needs an input shape (C, H, W), e.g. in_shape=(3, 64, 64)")
        return tuple(in_shape), _from_spec(source, tuple(in_shape))
    raise RenderError(
        f"expected a Trace, a NetSpec or a spec string; got {type(source).__name__}"
    )


def _from_spec(spec: NetSpec, in_shape: tuple[int, int, int]) -> list[LayerInfo]:
    infos: list[LayerInfo] = []
    shape: tuple[int, ...] = in_shape
    for pos, (layer, (name, out)) in enumerate(zip(spec.layers, spec.shapes(in_shape))):
        common: dict[str, Any] = dict(position=pos, name=name, in_shape=shape, out_shape=out,
                                      source=pos - 1, op=layer.text())
        if isinstance(layer, Conv):
            pad = resolve_padding(layer.padding, shape[1:], layer.kernel, layer.stride,
                                  layer.dilation)
            infos.append(LayerInfo(kind="conv", kernel=layer.kernel, stride=layer.stride,
                                   padding=pad, dilation=layer.dilation, groups=layer.groups,
                                   **common))
        elif isinstance(layer, Pool):
            pad = resolve_padding(layer.padding, shape[1:], layer.size, layer.stride)
            infos.append(LayerInfo(kind="pool", kernel=layer.size, stride=layer.stride,
                                   padding=pad, mode=layer.mode, **common))
        elif isinstance(layer, Act):
            infos.append(LayerInfo(kind="activation", function=layer.function, **common))
        elif isinstance(layer, Flatten):
            infos.append(LayerInfo(kind="flatten", **common))
        elif isinstance(layer, Dense):
            infos.append(LayerInfo(kind="dense", **common))
        shape = out
    return infos


def animated_block(name: str, at: tuple[int, int], size: int | tuple[int, int],
                   out_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Check that output position ``at`` lies in a stage's ``out_hw`` map; return it and
    the ``size`` block starting there, cut to the map (the cells an animation fills)."""
    oh, ow = out_hw
    r0, c0 = int(at[0]), int(at[1])
    if not (0 <= r0 < oh and 0 <= c0 < ow):
        raise RenderError(
            f"position ({r0}, {c0}) is outside {name}'s {oh}x{ow} output; "
            f"expected row 0..{oh - 1}, col 0..{ow - 1}"
        )
    nr, nc = pair(size, "size")
    return (r0, c0), (min(nr, oh - r0), min(nc, ow - c0))


def find_stage(trace: Trace, stage: int | str | Stage) -> Stage:
    """A stage of ``trace`` by name, list position or the Stage itself."""
    if isinstance(stage, Stage):
        return stage
    return trace[stage]


def _position_of_index(trace: Trace) -> dict[int, int]:
    return {s.index: pos for pos, s in enumerate(trace.stages)}


def source_position(trace: Trace, stage: Stage) -> int:
    """List position of the stage feeding ``stage`` (-1: the model input)."""
    pos = trace.stages.index(stage)
    if stage.source is None:
        return pos - 1
    if stage.source == -1:
        return -1
    where = _position_of_index(trace)
    if stage.source not in where:
        raise TraceError(
            f"stage {stage.name!r} reads stage #{stage.source}, which this trace did not keep; "
            "capture with layers=None to keep every stage"
        )
    return where[stage.source]


def stage_input(trace: Trace, stage: Stage) -> np.ndarray:
    """The array a stage received: ``trace.model_input`` or its source stage's output."""
    src = source_position(trace, stage)
    if src == -1:
        if trace.model_input is None:
            raise TraceError(
                f"stage {stage.name!r} reads the model input, which this trace does not hold"
            )
        return trace.model_input
    return trace.stages[src].output


def _from_trace(trace: Trace) -> tuple[tuple[int, ...], list[LayerInfo]]:
    if trace.model_input is not None:
        in_shape = tuple(int(v) for v in trace.model_input.shape[1:])
    else:
        h, w, c = trace.input.shape[1:]
        in_shape = (int(c), int(h), int(w))
    infos: list[LayerInfo] = []
    for pos, st in enumerate(trace.stages):
        src = source_position(trace, st)
        shape = in_shape if src == -1 else tuple(trace.stages[src].shape)
        p = st.params
        extra = _extra_sources(trace, st, src)
        shapes = tuple(in_shape if k == -1 else tuple(trace.stages[k].shape) for k in (src, *extra))
        common: dict[str, Any] = dict(position=pos, name=st.name, op=st.op, in_shape=shape,
                                      out_shape=tuple(st.shape), source=src,
                                      extra_sources=extra, in_shapes=shapes)
        if st.kind in ("conv", "pool") and len(shape) == 3 and st.is_spatial:
            infos.append(_windowed(st, shape, common))
        elif st.kind == "activation":
            infos.append(LayerInfo(kind="activation", function=str(p.get("function", st.op)),
                                   **common))
        else:
            infos.append(LayerInfo(kind=st.kind, **common))
    return in_shape, infos


def _extra_sources(trace: Trace, st: Stage, src: int) -> tuple[int, ...]:
    """Positions of a merge stage's other inputs: ``Stage.sources`` after the first
    (older traces: ``params["sources"]``), in argument order."""
    where = _position_of_index(trace)
    listed = st.sources if len(st.sources) > 1 else (st.params.get("sources", ()) or ())
    found = []
    for index in listed:
        pos = -1 if index == -1 else where.get(index)
        if pos is None:
            raise TraceError(
                f"stage {st.name!r} reads stage #{index}, which this trace did not keep; "
                "capture with layers=None to keep every stage"
            )
        if pos != src and pos not in found:
            found.append(pos)
    return tuple(found)


def _windowed(st: Stage, shape: tuple[int, ...], common: dict[str, Any]) -> LayerInfo:
    p = st.params
    hw = shape[1:]
    if "kernel_size" in p:
        k = pair(p["kernel_size"], "kernel size")
    elif st.kind == "pool" and st.shape[1:] == (1, 1):
        k = (int(hw[0]), int(hw[1]))  # global pooling
    else:
        raise RenderError(
            f"stage {st.name!r} ({st.op}) has no kernel_size parameter; cannot place its window"
        )
    default_stride = k if st.kind == "pool" else (1, 1)
    s = pair(p.get("stride") or default_stride, "stride")
    d = pair(p.get("dilation", 1), "dilation")
    pad = resolve_padding(p.get("padding", 0), hw, k, s, d)
    extra: dict[str, Any] = dict(kernel=k, stride=s, padding=pad, dilation=d)
    if st.kind == "conv":
        extra["groups"] = int(p.get("groups", 1))
    else:
        extra["mode"] = str(p.get("mode", "max"))
    return LayerInfo(kind=st.kind, **extra, **common)
