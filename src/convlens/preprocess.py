"""Explicit input preprocessing: what turns a batch of [0, 1] RGB images into model input.

A :class:`Preprocess` is a small frozen dataclass.  :meth:`Preprocess.apply` returns the
model input (float32, channels-first ``(B, C, H, W)``) together with the list of steps it
really applied, so a :class:`~convlens.trace.Trace` can show them.  Steps run in this
fixed order, and a step that would change nothing is left out of the list:

1. ``resize``    to ``size = (h, w)`` (bilinear, antialiased; :func:`convlens.images.resize`)
2. ``grayscale`` ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` -> 1 channel
3. ``bgr``       channel order reversed (Caffe-era models read BGR)
4. ``invert``    ``1 - x``
5. ``scale``     ``x * scale`` (e.g. 255.0 for models trained on 0..255 input)
6. ``normalize`` ``(x - mean) / std`` per channel (in the channel order after ``bgr``),
   in the units after ``scale``
7. ``layout``    always last: ``{"op": "layout", "to": "NCHW"}``

Named presets (:data:`PRESETS`, :meth:`Preprocess.preset`): ``imagenet`` (mean/std in
[0, 1]), ``keras-mobilenet`` (-1..1), ``caffe`` (BGR, 0..255, mean subtracted), ``none``.
:func:`describe_steps` turns the steps a Trace kept into one line for captions.

Arithmetic is done in float64 and the result cast once to float32, so values are exact
to float32 rounding and do not depend on the order of summation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from dataclasses import fields as fields_of
from typing import Any, Mapping

import numpy as np

from convlens.errors import ImageError, nearest
from convlens.images import resize

__all__ = ["Preprocess", "LUMA_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "SCALES",
           "describe_steps"]

LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "imagenet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "keras-mobilenet": {"scale": 2.0, "mean": (1.0,), "std": (1.0,)},
    "caffe": {"bgr": True, "scale": 255.0, "mean": CAFFE_MEAN_BGR},
}
"""Named preprocessing: the fields each preset sets (the rest keep their defaults)."""

SCALES: dict[str, dict[str, Any]] = {
    "0..1": {"scale": 1.0, "mean": None, "std": None},
    "0..255": {"scale": 255.0, "mean": None, "std": None},
    "-1..1": {"scale": 2.0, "mean": (1.0,), "std": (1.0,)},
}
"""``--scale`` ranges as Preprocess fields: the input range the model was trained on."""


def _floats(name: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    seq = (value,) if isinstance(value, (int, float, np.number)) else value
    try:
        out = tuple(float(v) for v in seq if not isinstance(v, (bool, str)))
        ok = len(out) == len(seq) and len(out) > 0 and all(math.isfinite(v) for v in out)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ImageError(f"Preprocess {name}={value!r} is not valid; expected a tuple of "
                         "finite numbers, one per channel (or one for all)")
    return out


@dataclass(frozen=True)
class Preprocess:
    """How images in [0, 1] become the model's input (see the module docstring).

    ``size`` resizes to ``(h, w)`` (an int means square); ``grayscale`` keeps one luma
    channel; ``invert`` maps x to 1 - x; ``scale`` multiplies; ``mean``/``std`` normalise
    per channel and have 1 value or one per channel (3, or 1 with ``grayscale``).
    """

    size: tuple[int, int] | None = None
    grayscale: bool = False
    invert: bool = False
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool = False

    def __post_init__(self) -> None:
        size = self.size
        if size is not None:
            if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
                size = (int(size), int(size))
            try:
                ok = len(size) == 2 and all(  # type: ignore[arg-type]
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                    for v in size  # type: ignore[union-attr]
                )
            except TypeError:
                ok = False
            if not ok:
                raise ImageError(f"Preprocess size={self.size!r} is not valid; expected "
                                 "(height, width) as two positive integers, e.g. (224, 224)")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))  # type: ignore[index]
        for flag in ("grayscale", "invert", "bgr"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise ImageError(f"Preprocess {flag}={getattr(self, flag)!r} is not valid; "
                                 "expected True or False")
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.bgr and self.grayscale:
            raise ImageError("Preprocess bgr=True with grayscale=True is not valid; a grey "
                             "image has no channel order — drop one of the two")
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) \
                or not math.isfinite(scale) or scale <= 0:
            raise ImageError(f"Preprocess scale={scale!r} is not valid; expected a positive "
                             "finite number such as 1.0 or 255.0")
        object.__setattr__(self, "scale", float(scale))
        channels = self.channels
        for name in ("mean", "std"):
            values = _floats(name, getattr(self, name))
            if values is not None and len(values) not in (1, channels):
                raise ImageError(
                    f"Preprocess {name} has {len(values)} values; expected 1 or {channels} "
                    f"(one per channel{', grayscale is on' if self.grayscale else ''})"
                )
            object.__setattr__(self, name, values)
        if self.std is not None and min(self.std) <= 0:
            raise ImageError(f"Preprocess std={self.std!r} is not valid; expected every "
                             "value > 0")

    @property
    def channels(self) -> int:
        """Channels of the model input: 1 with ``grayscale``, else 3."""
        return 1 if self.grayscale else 3

    @classmethod
    def imagenet(cls, size: int | tuple[int, int] = 224) -> "Preprocess":
        """The usual ImageNet preprocessing: resize, then mean/std normalisation in [0, 1]."""
        return cls(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # type: ignore[arg-type]

    @classmethod
    def preset(cls, name: str, **fields: Any) -> "Preprocess":
        """The named preset (:data:`PRESETS`) with ``fields`` changed."""
        if name not in PRESETS:
            near = nearest(name, PRESETS, n=2, cutoff=0.5)
            raise ImageError(f"unknown preprocessing preset {name!r}; expected one of "
                             f"{', '.join(PRESETS)}"
                             + (f"; did you mean {' or '.join(near)}?" if near else ""))
        return cls(**{**PRESETS[name], **fields})

    def replace(self, **fields: Any) -> "Preprocess":
        """A copy with ``fields`` changed (validated like the constructor)."""
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields_of(self)},
                             **fields})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` turns it back into an equal Preprocess."""
        d = asdict(self)
        for key in ("size", "mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocess":
        """Build from :meth:`to_dict` output; missing keys take their defaults."""
        if not isinstance(data, Mapping):
            raise ImageError(f"Preprocess.from_dict got a {type(data).__name__}; expected "
                             "a dict")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ImageError(f"unknown Preprocess field(s) {', '.join(map(str, unknown))}; "
                             f"expected some of {', '.join(valid)}")
        kwargs = dict(data)
        for key in ("size", "mean", "std"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def apply(self, batch: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Preprocess a batch ``(B, H, W, 3)`` in [0, 1].

        Returns the model input, float32 ``(B, C, H, W)``, and the steps applied, in
        order, as JSON-able dicts ending with ``{"op": "layout", "to": "NCHW"}``.
        The input is not modified.
        """
        arr = np.asarray(batch)
        if arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape:
            raise ImageError(f"Preprocess.apply got an array of shape {arr.shape}; expected "
                             "a batch (B, H, W, 3) — build one with convlens.as_batch()")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ImageError(f"Preprocess.apply got {arr.dtype} data; expected floats in "
                             "[0, 1] — build the batch with convlens.as_batch()")
        steps: list[dict[str, Any]] = []
        h, w = arr.shape[1:3]
        if self.size is not None and self.size != (h, w):
            arr = np.stack([resize(im, self.size) for im in arr])
            steps.append({"op": "resize", "from": [h, w], "to": list(self.size)})
        x = arr.astype(np.float64)
        if self.grayscale:
            r, g, b = LUMA_WEIGHTS
            x = (r * x[..., 0] + g * x[..., 1] + b * x[..., 2])[..., None]
            steps.append({"op": "grayscale", "weights": list(LUMA_WEIGHTS)})
        if self.bgr:
            x = x[..., ::-1]
            steps.append({"op": "bgr"})
        if self.invert:
            x = 1.0 - x
            steps.append({"op": "invert"})
        if self.scale != 1.0:
            x = x * self.scale
            steps.append({"op": "scale", "factor": self.scale})
        mean = self.mean if self.mean is not None else (0.0,)
        std = self.std if self.std is not None else (1.0,)
        if any(m != 0.0 for m in mean) or any(s != 1.0 for s in std):
            x = (x - np.asarray(mean)) / np.asarray(std)
            steps.append({"op": "normalize", "mean": list(mean), "std": list(std)})
        steps.append({"op": "layout", "to": "NCHW"})
        out = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        return out, steps


def describe_steps(steps: Any) -> str:
    """One line for a caption: ``resize 300x451 -> 224x224 · normalize mean (0.485, 0.456,
    0.406) std (0.229, 0.224, 0.225)``; ``"none"`` when nothing but the layout changed."""
    parts = []
    for s in steps or []:
        op = s.get("op")
        if op == "resize":
            parts.append(f"resize {s['from'][0]}x{s['from'][1]} -> {s['to'][0]}x{s['to'][1]}")
        elif op == "normalize":
            def nums(v: Any) -> str:
                return "(" + ", ".join(f"{x:g}" for x in v) + ")"
            parts.append(f"normalize mean {nums(s['mean'])} std {nums(s['std'])}")
        elif op == "scale":
            parts.append(f"scale x{s['factor']:g}")
        elif op in ("grayscale", "invert", "bgr"):
            parts.append({"grayscale": "greyscale", "invert": "invert", "bgr": "RGB -> BGR"}[op])
        elif op not in (None, "layout"):
            parts.append(str(op))
    return " · ".join(parts) if parts else "none"
