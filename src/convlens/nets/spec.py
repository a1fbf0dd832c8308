"""The toy-network spec language of the 2017 tutorial, and its seeded weights.

    >>> parse_spec("conv(3, 3x3) relu maxpool(5)")

Layers are separated by spaces (or ``->``).  Each is a name with optional
arguments in parentheses:

=====================  ====================================================
``conv(F, KxK, ...)``  F filters of K x K; ``stride=``, ``padding=valid|same|N``,
                       ``dilation=``, ``groups=``, ``bias=true|false``
``maxpool(S, ...)``    S x S max pooling; ``stride=`` (default S), ``padding=``
``avgpool(S, ...)``    average pooling, same arguments
``relu`` ``sigmoid``   activations; also ``tanh elu selu gelu silu softplus
                       relu6 linear`` and ``leakyrelu(alpha)``
``flatten``            reshape ``(C, H, W)`` to ``C*H*W``
``dense(N)``           a fully connected layer of N units
``softmax``            softmax over the units
=====================  ====================================================

Defaults follow Keras: valid padding, pool stride = pool size, Glorot-uniform
kernels and zero biases.  Weights come from ``numpy.random.default_rng(seed)``
in layer order, so the same spec and seed give the same numbers in every
framework.  This module imports neither torch nor keras.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, Union

import numpy as np

from convlens.errors import SpecError, nearest
from convlens.ops import output_size, resolve_padding

__all__ = [
    "Conv", "Pool", "Act", "Flatten", "Dense", "Layer", "NetSpec", "parse_spec",
    "ACTIVATION_NAMES",
]

PadSpec = Union[Literal["valid", "same"], tuple[int, int]]

# spec word -> canonical activation name (the keys of convlens.ops.ACTIVATIONS)
ACTIVATION_NAMES: dict[str, str] = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "elu": "elu", "selu": "selu",
    "gelu": "gelu", "silu": "silu", "swish": "silu", "softplus": "softplus",
    "relu6": "relu6", "linear": "identity", "identity": "identity",
    "leakyrelu": "leaky_relu", "leaky_relu": "leaky_relu", "softmax": "softmax",
}
_LAYER_WORDS = ("conv", "maxpool", "avgpool", "flatten", "dense") + tuple(ACTIVATION_NAMES)


def _near(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """``"; did you mean 'relu'?"`` for the nearest of ``choices``, or ``""``."""
    near = nearest(word, choices, cutoff=0.5, close=True)
    return f"; did you mean {' or '.join(repr(c) for c in near)}?" if near else ""


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: PadSpec = "valid"
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    name: str = ""

    def text(self) -> str:
        out = f"conv({self.filters}, {self.kernel[0]}x{self.kernel[1]}"
        if self.stride != (1, 1):
            out += f", stride={_pair_text(self.stride)}"
        if self.padding != "valid":
            out += f", padding={self.padding if isinstance(self.padding, str) else _pair_text(self.padding)}"
        if self.dilation != (1, 1):
            out += f", dilation={_pair_text(self.dilation)}"
        if self.groups != 1:
            out += f", groups={self.groups}"
        if not self.bias:
            out += ", bias=false"
        return out + ")"


@dataclass(frozen=True)
class Pool:
    mode: Literal["max", "avg"]
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: PadSpec = "valid"
    name: str = ""

    def text(self) -> str:
        out = f"{self.mode}pool({_pair_text(self.size)}"
        if self.stride != self.size:
            out += f", stride={_pair_text(self.stride)}"
        if self.padding != "valid":
            out += f", padding={self.padding if isinstance(self.padding, str) else _pair_text(self.padding)}"
        return out + ")"


@dataclass(frozen=True)
class Act:
    function: str
    alpha: float | None = None
    name: str = ""

    def text(self) -> str:
        word = {"identity": "linear", "leaky_relu": "leakyrelu"}.get(self.function, self.function)
        return f"{word}({self.alpha:g})" if self.alpha is not None else word


@dataclass(frozen=True)
class Flatten:
    name: str = ""

    def text(self) -> str:
        return "flatten"


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    name: str = ""

    def text(self) -> str:
        return f"dense({self.units})" if self.bias else f"dense({self.units}, bias=false)"


Layer = Union[Conv, Pool, Act, Flatten, Dense]


def _pair_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


@dataclass(frozen=True)
class NetSpec:
    """A parsed toy network: layers with unique names (``conv1``, ``relu1``, ``maxpool1``...)."""

    layers: tuple[Layer, ...]
    in_channels: int = 3

    def text(self) -> str:
        """The canonical spec string (parses back to an equal NetSpec)."""
        return " ".join(layer.text() for layer in self.layers)

    def __str__(self) -> str:
        return self.text()

    def shapes(self, in_shape: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, output shape)`` for every layer, channels-first, from ``(C, H, W)``.

        Raises SpecError naming the layer where the image becomes too small.
        """
        shape: tuple[int, ...] = tuple(in_shape)
        out = []
        for layer in self.layers:
            shape = _layer_shape(layer, shape)
            out.append((layer.name, shape))
        return out

    def init_weights(
        self, in_shape: tuple[int, int, int], seed: int = 0
    ) -> dict[str, dict[str, np.ndarray]]:
        """Seeded Glorot-uniform kernels and zero biases, in PyTorch layout.

        ``in_shape`` is the ``(C, H, W)`` input (H and W size the dense layers).
        Returns ``{layer name: {"weight": ..., "bias": ...}}`` for conv and dense layers.
        """
        rng = np.random.default_rng(seed)
        shape: tuple[int, ...] = tuple(in_shape)
        weights: dict[str, dict[str, np.ndarray]] = {}
        for layer in self.layers:
            if isinstance(layer, Conv):
                c = shape[0]
                if c % layer.groups or layer.filters % layer.groups:
                    raise SpecError(
                        f"{layer.name}: groups={layer.groups} must divide both the input "
                        f"channels ({c}) and the filters ({layer.filters})"
                    )
                kh, kw = layer.kernel
                wshape = (layer.filters, c // layer.groups, kh, kw)
                weights[layer.name] = _glorot(
                    rng, wshape, wshape[1] * kh * kw, layer.filters * kh * kw, layer.bias
                )
            elif isinstance(layer, Dense):
                if len(shape) != 1:
                    raise SpecError(
                        f"{layer.name}: dense needs a flat input; got shape {shape}; "
                        "put 'flatten' before it"
                    )
                wshape = (layer.units, shape[0])
                weights[layer.name] = _glorot(rng, wshape, shape[0], layer.units, layer.bias)
            shape = _layer_shape(layer, shape)
        return weights


def _glorot(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
            bias: bool) -> dict[str, np.ndarray]:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    out = {"weight": rng.uniform(-limit, limit, size=shape).astype(np.float32)}
    if bias:
        out["bias"] = np.zeros(shape[0], dtype=np.float32)
    return out


def _layer_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, (Conv, Pool)):
        if len(shape) != 3:
            raise SpecError(f"{layer.name} needs a (C, H, W) input; got shape {shape}")
        c, h, w = shape
        k = layer.kernel if isinstance(layer, Conv) else layer.size
        d = layer.dilation if isinstance(layer, Conv) else (1, 1)
        (pt, pb), (pl, pr) = resolve_padding(layer.padding, (h, w), k, layer.stride, d)
        oh = output_size(h, k[0], layer.stride[0], (pt, pb), d[0])
        ow = output_size(w, k[1], layer.stride[1], (pl, pr), d[1])
        if oh < 1 or ow < 1:
            raise SpecError(
                f"{layer.name} ({layer.text()}) gets a {h}x{w} input, too small for its "
                f"{k[0]}x{k[1]} window; use a larger image or fewer/smaller layers"
            )
        return (layer.filters if isinstance(layer, Conv) else c, oh, ow)
    if isinstance(layer, Flatten):
        return (int(np.prod(shape)),)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise SpecError(
                f"{layer.name}: dense needs a flat input; got shape {shape}; put 'flatten' before it"
            )
        return (layer.units,)
    return shape  # activations keep the shape


# -- parsing -------------------------------------------------------------------
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\(([^()]*)\))?\s*(->|,|;)?")


def parse_spec(text: str, in_channels: int = 3) -> NetSpec:
    """Parse ``"conv(3, 3x3) relu maxpool(5)"`` into a :class:`NetSpec`."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(
            f"empty network spec {text!r}; expected layers such as 'conv(3, 3x3) relu maxpool(5)'"
        )
    pos, layers, counts = 0, [], {}
    src = text.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise SpecError(
                f"cannot read the spec at {src[pos:pos + 20]!r} (character {pos}); "
                "expected layers such as 'conv(3, 3x3) relu maxpool(5)'"
            )
        word, args = m.group(1).lower(), m.group(3)
        layer = _make_layer(word, _split_args(args, word) if args is not None else ([], {}))
        base = {Conv: "conv", Flatten: "flatten", Dense: "dense"}.get(type(layer))
        if isinstance(layer, Pool):
            base = f"{layer.mode}pool"
        elif isinstance(layer, Act):
            base = layer.function
        counts[base] = counts.get(base, 0) + 1
        layers.append(replace(layer, name=f"{base}{counts[base]}"))
        pos = m.end()
    return NetSpec(tuple(layers), in_channels)


def _split_args(args: str, word: str) -> tuple[list[str], dict[str, str]]:
    pos_args, kw = [], {}
    for part in [p.strip() for p in args.split(",") if p.strip()]:
        if "=" in part:
            k, v = (s.strip() for s in part.split("=", 1))
            kw[k.lower()] = v
        else:
            if kw:
                raise SpecError(f"{word}(...): positional argument {part!r} after keyword arguments")
            pos_args.append(part)
    return pos_args, kw


def _int(v: str, what: str, word: str, minimum: int = 1) -> int:
    try:
        n = int(v)
    except ValueError:
        raise SpecError(f"{word}: {what} must be a whole number; got {v!r}") from None
    if n < minimum:
        raise SpecError(f"{word}: {what} must be >= {minimum}; got {n}")
    return n


def _size(v: str, what: str, word: str, minimum: int = 1) -> tuple[int, int]:
    parts = re.split(r"[x×]", v.lower())
    if len(parts) == 1:
        n = _int(parts[0], what, word, minimum)
        return (n, n)
    if len(parts) == 2:
        return (_int(parts[0], what, word, minimum), _int(parts[1], what, word, minimum))
    raise SpecError(f"{word}: {what} must look like 3 or 3x3; got {v!r}")


def _padding(v: str, word: str) -> PadSpec:
    if v.lower() in ("valid", "same"):
        return v.lower()  # type: ignore[return-value]
    if re.search(r"[a-wyz]", v.lower()):
        raise SpecError(f"{word}: padding must be valid, same, N or NxM; got {v!r}"
                        f"{_near(v.lower(), ('valid', 'same'))}")
    return _size(v, "padding", word, minimum=0)


def _bool(v: str, word: str) -> bool:
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise SpecError(f"{word}: expected true or false; got {v!r}")


def _check_kw(word: str, kw: dict[str, str], allowed: tuple[str, ...]) -> None:
    for k in kw:
        if k not in allowed:
            raise SpecError(
                f"{word}: unknown argument {k!r}; expected one of "
                f"{', '.join(allowed) or '(none)'}{_near(k, allowed)}"
            )


def _make_layer(word: str, parsed: tuple[list[str], dict[str, str]]) -> Layer:
    args, kw = parsed
    if word == "conv":
        _check_kw(word, kw, ("filters", "kernel", "stride", "padding", "dilation", "groups", "bias"))
        if "filters" in kw:
            args = [kw.pop("filters")] + args
        if "kernel" in kw:
            args = args + [kw.pop("kernel")]
        if len(args) != 2:
            raise SpecError(
                f"conv needs filters and kernel size, as in conv(3, 3x3); got {len(args)} "
                f"positional argument(s)"
            )
        return Conv(
            filters=_int(args[0], "filters", word), kernel=_size(args[1], "kernel size", word),
            stride=_size(kw.get("stride", "1"), "stride", word),
            padding=_padding(kw.get("padding", "valid"), word),
            dilation=_size(kw.get("dilation", "1"), "dilation", word),
            groups=_int(kw.get("groups", "1"), "groups", word),
            bias=_bool(kw.get("bias", "true"), word),
        )
    if word in ("maxpool", "avgpool"):
        _check_kw(word, kw, ("size", "stride", "padding"))
        if "size" in kw:
            args = [kw.pop("size")] + args
        if len(args) != 1:
            raise SpecError(f"{word} needs one size, as in {word}(2) or {word}(3x3); got {args}")
        size = _size(args[0], "pool size", word)
        return Pool(
            mode=word[:3],  # type: ignore[arg-type]
            size=size,
            stride=_size(kw["stride"], "stride", word) if "stride" in kw else size,
            padding=_padding(kw.get("padding", "valid"), word),
        )
    if word == "flatten":
        _check_kw(word, kw, ())
        if args:
            raise SpecError(f"flatten takes no arguments; got {args}")
        return Flatten()
    if word == "dense":
        _check_kw(word, kw, ("units", "bias"))
        if "units" in kw:
            args = [kw.pop("units")] + args
        if len(args) != 1:
            raise SpecError(f"dense needs a number of units, as in dense(10); got {args}")
        return Dense(units=_int(args[0], "units", word), bias=_bool(kw.get("bias", "true"), word))
    if word in ACTIVATION_NAMES:
        fn = ACTIVATION_NAMES[word]
        _check_kw(word, kw, ("alpha",) if fn in ("leaky_relu", "elu") else ())
        alpha = kw.get("alpha", args[0] if args else None)
        if alpha is not None and fn not in ("leaky_relu", "elu"):
            raise SpecError(f"{word} takes no arguments; got {args}")
        if len(args) > 1:
            raise SpecError(f"{word} takes at most one argument (alpha); got {args}")
        try:
            a = float(alpha) if alpha is not None else (0.01 if fn == "leaky_relu" else None)
        except ValueError:
            raise SpecError(f"{word}: alpha must be a number; got {alpha!r}") from None
        return Act(function=fn, alpha=a)
    raise SpecError(
        f"unknown layer {word!r}; expected one of {', '.join(sorted(set(_LAYER_WORDS)))}"
        f"{_near(word, _LAYER_WORDS)}"
    )
