"""Argument checks and colour-scale choice shared by every view.

Each check raises a one-line ``RenderError`` that lists the valid choices.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import numpy as np

from convlens.errors import RenderError
from convlens.trace import Stage, Trace
from convlens.render.colormaps import CmapName, check_cmap
from convlens.render.scale import Norm, Scale, check_norm, count_nonfinite, finite_range

__all__ = [
    "as_stage", "check_image", "check_images", "check_channel", "check_channels",
    "require_spatial", "check_int", "stage_range", "channel_scales", "vector_scale",
    "rgb_range", "check_options", "shared_ranges", "drawn_nonfinite",
]

Range = tuple[float, float]


def check_int(value: object, what: str, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]``; a one-line error otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise RenderError(f"{what} must be an integer; got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise RenderError(f"{what} {v} is out of range; expected {rng}")
    return v


def as_stage(obj: Stage | Trace, layer: str | int | None = None) -> Stage:
    """A Stage, or the stage ``layer`` (name or index) of a Trace."""
    if isinstance(obj, Stage):
        if layer is not None:
            raise RenderError("layer= only applies to a Trace; got a Stage and layer=" + repr(layer))
        return obj
    if isinstance(obj, Trace):
        if layer is None:
            raise RenderError(
                f"which stage of the trace? pass layer= one of: {', '.join(obj.names) or '(none)'}"
            )
        return obj[layer]
    raise RenderError(f"expected a convlens Stage or Trace; got {type(obj).__name__}")


def check_image(stage: Stage, image: object) -> int:
    b = int(stage.output.shape[0])
    if isinstance(image, (bool, np.bool_)) or not isinstance(image, (int, np.integer)) \
            or not 0 <= int(image) < b:
        raise RenderError(
            f"image index {image!r} is out of range; stage {stage.name!r} holds a batch of "
            f"{b} image{'s' if b != 1 else ''} (valid: 0..{b - 1})"
        )
    return int(image)


def check_images(batch: int, images: object, what: str = "the batch") -> list[int]:
    """``images=`` as a list of valid indices (None: all)."""
    if images is None:
        return list(range(batch))
    if isinstance(images, (int, np.integer)) and not isinstance(images, (bool, np.bool_)):
        images = [images]
    if not isinstance(images, (list, tuple, range, np.ndarray)) or len(images) == 0:
        raise RenderError(
            f"images= must be an index or a non-empty list of indices into {what} "
            f"(valid: 0..{batch - 1}); got {images!r}"
        )
    out = []
    for i in images:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) \
                or not 0 <= int(i) < batch:
            raise RenderError(
                f"image index {i!r} is out of range; {what} holds {batch} "
                f"image{'s' if batch != 1 else ''} (valid: 0..{batch - 1})"
            )
        out.append(int(i))
    return out


def require_spatial(stage: Stage, view: str) -> None:
    if not stage.is_spatial:
        raise RenderError(
            f"render.{view} needs a spatial (B, C, H, W) stage; stage {stage.name!r} is flat "
            f"(shape {stage.shape_str}); use render.stage to draw it as a bar chart"
        )


def check_channel(stage: Stage, channel: object) -> int:
    c = stage.channels
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)) \
            or not 0 <= int(channel) < c:
        raise RenderError(
            f"channel {channel!r} is out of range; stage {stage.name!r} has {c} "
            f"channel{'s' if c != 1 else ''} (valid: 0..{c - 1})"
        )
    return int(channel)


def check_channels(stage: Stage, channels: Sequence[int] | None, max_channels: int | None) -> list[int]:
    if channels is None:
        chosen = list(range(stage.channels))
    else:
        if isinstance(channels, (int, np.integer)):
            channels = [channels]  # type: ignore[list-item]
        chosen = [check_channel(stage, c) for c in channels]
        if not chosen:
            raise RenderError(
                f"channels= is empty; give indices 0..{stage.channels - 1} of stage {stage.name!r}"
            )
    if max_channels is not None:
        chosen = chosen[: check_int(max_channels, "max_channels", 1)]
    return chosen


def check_options(norm: object, cmap: object) -> tuple[Norm, CmapName | None]:
    return check_norm(norm), (None if cmap is None else check_cmap(cmap))


_RANGES: ContextVar[dict[int, tuple[Stage, Range | None]] | None] = ContextVar(
    "convlens_stage_ranges", default=None)


@contextmanager
def shared_ranges() -> Iterator[None]:
    """Inside it, each stage's range is computed once: a figure drawing the same stage
    for each image of a batch (a journey, ``batch()``) would otherwise scan the whole
    batch again for every image.  Also a decorator."""
    token = _RANGES.set({}) if _RANGES.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _RANGES.reset(token)


def stage_range(stage: Stage) -> Range | None:
    """Min and max over every channel and every image of the stage."""
    memo = _RANGES.get()
    if memo is None:
        return finite_range(stage.output)
    hit = memo.get(id(stage))
    if hit is None or hit[0] is not stage:
        hit = memo[id(stage)] = (stage, finite_range(stage.output))
    return hit[1]


def _shared_range(stage: Stage, norm: Norm, vrange: Range | None) -> Range | None:
    if norm == "global" and vrange is not None:
        return vrange
    return stage_range(stage)


def channel_scales(
    stage: Stage, image: int, norm: Norm, channels: Sequence[int],
    cmap: CmapName | None = None, vrange: Range | None = None,
) -> list[Scale]:
    """One Scale per channel of a spatial stage (shared ones are the same object)."""
    x = stage.output[image]
    if norm == "map":
        return [Scale.for_data(x[c], "map", cmap) for c in channels]
    if norm == "standard":
        return [Scale.standardized(x[c], cmap) for c in channels]
    shared = Scale.from_range(*(_shared_range(stage, norm, vrange) or (None, None)), norm=norm, cmap=cmap)
    return [shared for _ in channels]


def vector_scale(
    stage: Stage, image: int, norm: Norm, cmap: CmapName | None = None, vrange: Range | None = None,
) -> Scale:
    """The scale of a flat stage's vector for one image ("map" = this image's vector)."""
    v = stage.output[image]
    if norm in ("map", "standard"):
        return Scale.for_data(v, norm, cmap)
    return Scale.from_range(*(_shared_range(stage, norm, vrange) or (None, None)), norm=norm, cmap=cmap)


def rgb_range(stage: Stage, image: int, norm: Norm, vrange: Range | None = None) -> dict:
    """The one linear range an RGB composite maps to 0..255, with what it came from.

    ``map``: this image's 3 channels; ``stage``: all images; ``global``: ``vrange``;
    ``standard``: mean ± 3 sd of this image's 3 channels.  Except for ``standard`` the
    range is widened to include 0, so a non-negative stage keeps black = 0.
    """
    x = stage.output[image, :3]
    if norm == "standard":
        s = Scale.standardized(x)
        return {"vmin": s.vmin, "vmax": s.vmax, "mean": s.mean, "std": s.std}
    if norm == "map":
        r = finite_range(x)
    else:
        r = _shared_range(stage, norm, vrange)
    lo, hi = r or (0.0, 0.0)
    return {"vmin": min(float(lo), 0.0), "vmax": max(float(hi), 0.0)}


def drawn_nonfinite(stage: Stage, image: int, channels: Sequence[int] | None = None) -> dict:
    """NaN and inf among the values a picture draws: image ``image`` of the stage, its
    ``channels`` (None: all its values; a flat stage: its whole vector) -- see
    :func:`~convlens.render.scale.count_nonfinite`."""
    x = stage.output[image]
    if channels is not None and stage.is_spatial:
        chs = list(channels)
        x = x[chs] if chs != list(range(x.shape[0])) else x
    return count_nonfinite(x)
