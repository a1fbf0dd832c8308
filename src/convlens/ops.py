"""NumPy reference implementations of the ops convlens shows.

These are the test oracle (the frameworks are checked against them) and the
source of every number an explanation draws.  They favour clarity and exactness
(float64 inside) over speed.  Layout is channels-first: ``x`` is ``(C, H, W)``
or ``(B, C, H, W)``; a conv kernel is ``(out, in / groups, kh, kw)``.

Padding is given as an int, an ``(ph, pw)`` pair, explicit
``((top, bottom), (left, right))``, ``"valid"`` or ``"same"`` (TensorFlow's rule:
the extra pixel, when the total is odd, goes to the bottom / right).
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Union

import numpy as np

from convlens.errors import ConvlensError

__all__ = [
    "pair", "resolve_padding", "output_size", "conv2d", "conv2d_at", "pool2d",
    "dense", "batch_norm", "activation", "ACTIVATIONS", "PoolMode",
    "pool2d_at", "activation_derivative", "ACTIVATION_DERIVATIVES",
]

IntPair = Union[int, tuple[int, int]]
Padding = Union[str, int, tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]
PoolMode = Literal["max", "avg"]


def pair(v: IntPair, what: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        a, b = v  # type: ignore[misc]
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ConvlensError(f"{what} must be an int or a pair of ints; got {v!r}") from None


def output_size(n: int, k: int, s: int = 1, p: int | tuple[int, int] = 0, d: int = 1) -> int:
    """Output length along one axis: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    ``p`` may be a ``(before, after)`` pair for asymmetric padding.
    """
    before, after = (p, p) if isinstance(p, (int, np.integer)) else p
    return (n + before + after - d * (k - 1) - 1) // s + 1


def _same_1d(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-n // s)  # ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Padding, in_hw: tuple[int, int], kernel: IntPair, stride: IntPair = 1,
    dilation: IntPair = 1,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((top, bottom), (left, right))`` padding for an input of size ``in_hw``."""
    kh, kw = pair(kernel, "kernel size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            return _same_1d(in_hw[0], kh, sh, dh), _same_1d(in_hw[1], kw, sw, dw)
        raise ConvlensError(f"padding {padding!r} is unknown; expected 'valid', 'same' or a number")
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return (p, p), (p, p)
    first, second = padding  # type: ignore[misc]
    if isinstance(first, (int, np.integer)):
        return (int(first), int(first)), (int(second), int(second))  # type: ignore[arg-type]
    return pair(first, "padding"), pair(second, "padding")  # type: ignore[arg-type]


def _as_batch(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ConvlensError(f"expected an input of shape (C, H, W) or (B, C, H, W); got {x.shape}")


def _windows(
    x: np.ndarray, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]
) -> np.ndarray:
    """``(B, C, OH, OW, kh, kw)`` view of every (dilated) window of a padded batch."""
    span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    if x.shape[2] < span[0] or x.shape[3] < span[1]:
        raise ConvlensError(
            f"the window ({span[0]}x{span[1]}) is larger than the padded input "
            f"({x.shape[2]}x{x.shape[3]}); use a smaller kernel or pool, or a larger image"
        )
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return win[:, :, :: s[0], :: s[1], :: d[0], :: d[1]]


def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: IntPair = 1,
    padding: Padding = 0, dilation: IntPair = 1, groups: int = 1,
) -> np.ndarray:
    """2-D cross-correlation (what every framework calls convolution), zero padding."""
    xb, squeeze = _as_batch(x)
    w = np.asarray(w, dtype=np.float64)
    out_c, in_per_group, kh, kw = w.shape
    c = xb.shape[1]
    if c != in_per_group * groups or out_c % groups:
        raise ConvlensError(
            f"kernel {w.shape} with groups={groups} expects {in_per_group * groups} input "
            f"channels; got {c}"
        )
    (pt, pb), (pl, pr) = resolve_padding(padding, xb.shape[2:], (kh, kw), stride, dilation)
    xp = np.pad(xb, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = _windows(xp, (kh, kw), pair(stride), pair(dilation))  # B C OH OW kh kw
    out_per_group = out_c // groups
    outs = []
    for g in range(groups):
        wg = w[g * out_per_group:(g + 1) * out_per_group]
        xg = win[:, g * in_per_group:(g + 1) * in_per_group]
        outs.append(np.einsum("bchwij,ocij->bohw", xg, wg, optimize=True))
    y = np.concatenate(outs, axis=1)
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y[0] if squeeze else y


def conv2d_at(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, out_channel: int, row: int, col: int,
    stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1,
) -> dict[str, np.ndarray | float]:
    """The arithmetic of one output value of :func:`conv2d` on a ``(C, H, W)`` input.

    Returns the input ``window`` ``(Cg, kh, kw)`` (zeros where it lies in the
    padding), the ``kernel`` ``(Cg, kh, kw)``, their element-wise ``products``,
    the ``channel_sums`` ``(Cg,)``, the ``bias`` and the ``value`` (sum + bias).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    out_c, in_per_group, kh, kw = w.shape
    (pt, pb), (pl, pr) = resolve_padding(padding, x.shape[1:], (kh, kw), stride, dilation)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    g = out_channel // (out_c // groups)
    r0, c0 = row * sh, col * sw
    window = xp[g * in_per_group:(g + 1) * in_per_group,
                r0:r0 + dh * (kh - 1) + 1:dh, c0:c0 + dw * (kw - 1) + 1:dw]
    kernel = w[out_channel]
    products = window * kernel
    sums = products.sum(axis=(1, 2))
    bias = float(b[out_channel]) if b is not None else 0.0
    return {
        "window": window, "kernel": kernel, "products": products,
        "channel_sums": sums, "bias": bias, "value": float(sums.sum() + bias),
    }


def pool2d(
    x: np.ndarray, size: IntPair, stride: IntPair | None = None, padding: Padding = 0,
    mode: PoolMode = "max", count_include_pad: bool = True,
) -> np.ndarray:
    """Max or average pooling.  ``stride`` defaults to ``size`` (as in Keras and PyTorch).

    Max pooling pads with -inf.  Average pooling counts padded zeros when
    ``count_include_pad`` (PyTorch's default), and ignores them otherwise (Keras' 'same').
    """
    if mode not in ("max", "avg"):
        raise ConvlensError(f"pool mode {mode!r} is unknown; expected 'max' or 'avg'")
    xb, squeeze = _as_batch(x)
    k = pair(size, "pool size")
    s = pair(stride if stride is not None else size, "stride")
    (pt, pb), (pl, pr) = resolve_padding(padding, xb.shape[2:], k, s)
    pad = ((0, 0), (0, 0), (pt, pb), (pl, pr))
    if mode == "max":
        xp = np.pad(xb, pad, constant_values=-np.inf)
        y = _windows(xp, k, s, (1, 1)).max(axis=(-2, -1))
    else:
        xp = np.pad(xb, pad)
        y = _windows(xp, k, s, (1, 1)).sum(axis=(-2, -1))
        if count_include_pad:
            y = y / (k[0] * k[1])
        else:
            ones = np.pad(np.ones((1, 1) + xb.shape[2:]), pad)
            y = y / _windows(ones, k, s, (1, 1)).sum(axis=(-2, -1))
    return y[0] if squeeze else y


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``x @ w.T + b`` with ``w`` of shape ``(out, in)``."""
    y = np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T
    return y + np.asarray(b, dtype=np.float64) if b is not None else y


def batch_norm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
    eps: float = 1e-5,
) -> np.ndarray:
    """Inference-mode batch normalisation over the channel axis (axis 1 of a batch)."""
    x = np.asarray(x, dtype=np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return (x - np.reshape(mean, shape)) * scale.reshape(shape) + np.reshape(beta, shape)


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "identity": lambda x: x,
    "binary_step": lambda x: (x >= 0).astype(np.float64),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "arctan": np.arctan,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x, alpha=0.01: np.where(x >= 0, x, alpha * x),
    "elu": lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
    "selu": lambda x: 1.0507009873554805 * np.where(
        x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "gelu": _gelu,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "softmax": _softmax,
}
"""Activation functions by canonical name; ``leaky_relu`` and ``elu`` take ``alpha``."""


def activation(x: np.ndarray, name: str, **params: float) -> np.ndarray:
    """Apply the activation ``name`` (a key of :data:`ACTIVATIONS`) in float64."""
    try:
        fn = ACTIVATIONS[name]
    except KeyError:
        raise ConvlensError(
            f"activation {name!r} is unknown; expected one of {', '.join(ACTIVATIONS)}"
        ) from None
    return fn(np.asarray(x, dtype=np.float64), **params)


def pool2d_at(
    x: np.ndarray, size: IntPair, channel: int, row: int, col: int,
    stride: IntPair | None = None, padding: Padding = 0, mode: PoolMode = "max",
    count_include_pad: bool = True,
) -> dict[str, np.ndarray | float | tuple[int, int]]:
    """The arithmetic of one output value of :func:`pool2d` on a ``(C, H, W)`` input.

    Returns the ``window`` ``(kh, kw)`` (0 where it lies in the padding), the
    ``in_padding`` mask of those cells, the window's top-left ``origin`` in
    unpadded input coordinates (negative inside the padding), the ``pick``
    (row, col) inside the window of the maximum (the first one in row-major
    order, as the frameworks pick; ``None`` for average pooling), the number of
    cells averaged (``count``) and the ``value`` (equal to :func:`pool2d`).
    """
    if mode not in ("max", "avg"):
        raise ConvlensError(f"pool mode {mode!r} is unknown; expected 'max' or 'avg'")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ConvlensError(f"expected an input of shape (C, H, W); got {x.shape}")
    k = pair(size, "pool size")
    s = pair(stride if stride is not None else size, "stride")
    (pt, pb), (pl, pr) = resolve_padding(padding, x.shape[1:], k, s)
    xp = np.pad(x[channel], ((pt, pb), (pl, pr)))
    inside = np.pad(np.ones(x.shape[1:], dtype=bool), ((pt, pb), (pl, pr)))
    r0, c0 = row * s[0], col * s[1]
    window = xp[r0:r0 + k[0], c0:c0 + k[1]]
    in_padding = ~inside[r0:r0 + k[0], c0:c0 + k[1]]
    if window.shape != k:
        raise ConvlensError(
            f"pool output position ({row}, {col}) is outside the output; "
            f"its window would start at padded row {r0}, column {c0}"
        )
    pick: tuple[int, int] | None = None
    if mode == "max":
        masked = np.where(in_padding, -np.inf, window)
        flat = int(np.argmax(masked))
        pick = (flat // k[1], flat % k[1])
        value = float(masked[pick])
        count = int((~in_padding).sum())
    else:
        count = k[0] * k[1] if count_include_pad else int((~in_padding).sum())
        value = float(window.sum() / count)
    return {
        "window": window, "in_padding": in_padding, "origin": (r0 - pt, c0 - pl),
        "pick": pick, "count": count, "value": value,
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gelu_grad(x: np.ndarray) -> np.ndarray:
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
    return cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


ACTIVATION_DERIVATIVES: dict[str, Callable[..., np.ndarray]] = {
    "identity": lambda x: np.ones_like(x),
    "binary_step": lambda x: np.zeros_like(x),
    "sigmoid": lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)),
    "tanh": lambda x: 1.0 - np.tanh(x) ** 2,
    "arctan": lambda x: 1.0 / (1.0 + x * x),
    "relu": lambda x: (x > 0).astype(np.float64),
    "relu6": lambda x: ((x > 0) & (x < 6)).astype(np.float64),
    "leaky_relu": lambda x, alpha=0.01: np.where(x > 0, 1.0, alpha),
    "elu": lambda x, alpha=1.0: np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))),
    "selu": lambda x: 1.0507009873554805 * np.where(
        x > 0, 1.0, 1.6732632423543772 * np.exp(np.minimum(x, 0))),
    "softplus": _sigmoid,
    "gelu": _gelu_grad,
    "silu": lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
}
"""Derivatives of the element-wise :data:`ACTIVATIONS`.  At a kink (x = 0) they take
the left-hand value, as PyTorch does (ReLU'(0) = 0); the binary step's is 0 everywhere
(undefined at 0)."""


def activation_derivative(x: np.ndarray, name: str, **params: float) -> np.ndarray:
    """The derivative of the element-wise activation ``name`` at ``x``, in float64."""
    try:
        fn = ACTIVATION_DERIVATIVES[name]
    except KeyError:
        raise ConvlensError(
            f"activation {name!r} has no element-wise derivative here; expected one of "
            f"{', '.join(ACTIVATION_DERIVATIVES)}"
        ) from None
    return fn(np.asarray(x, dtype=np.float64), **params)
