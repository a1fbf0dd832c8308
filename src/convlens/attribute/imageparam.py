"""The NumPy pieces of activation maximisation, each with its exact adjoint (gradient).

* :class:`FourierImage` — an image described by its Fourier coefficients, scaled by
  ``1 / frequency`` so that every frequency band starts with equal energy and plain
  gradient steps do not fill the picture with high-frequency noise; colours pass
  through a decorrelation matrix (:func:`color_matrix`) and a sigmoid into [0, 1].
* :class:`Affine` — a random jitter (shift), scale and rotation, resampled bilinearly
  with mirrored borders; its adjoint scatters the gradient back with the same weights.
* :func:`tv_penalty`, :func:`blur_penalty` — smoothness penalties and their gradients.
* :func:`pointwise` — the per-pixel part of a :class:`~convlens.Preprocess`
  (grey, invert, scale, mean/std) and its adjoint.
* :class:`Adam` — the optimiser.

Everything is float64 NumPy; the network's gradient comes from a backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from convlens.preprocess import LUMA_WEIGHTS, Preprocess

__all__ = ["color_matrix", "FourierImage", "Affine", "tv_penalty", "blur_penalty",
           "pointwise", "pointwise_adjoint", "Adam"]


@lru_cache(maxsize=1)
def color_matrix() -> np.ndarray:
    """``(3, 3)`` matrix ``M`` with ``M M^T`` proportional to the RGB covariance of the
    bundled cat photograph (its symmetric square root), scaled so its largest column
    has unit length.  Uncorrelated parameters become naturally correlated colours."""
    from convlens.images import cat

    px = cat().reshape(-1, 3).astype(np.float64)
    vals, vecs = np.linalg.eigh(np.cov(px, rowvar=False))
    m = vecs @ np.diag(np.sqrt(np.clip(vals, 1e-12, None))) @ vecs.T
    return m / np.linalg.norm(m, axis=0).max()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class FourierImage:
    """``N`` images of ``h x w`` RGB as complex Fourier coefficients ``P``.

    ``image = sigmoid(M @ Re(ifft2(P * scale)))`` per pixel, with ``scale = 1 / f^decay``
    (``f`` the spatial frequency in cycles per pixel, floored at one cycle per image)
    normalised to unit mean square.  With ``decorrelate=False`` ``M`` is the identity.
    """

    def __init__(self, n: int, h: int, w: int, rng: np.random.Generator, std: float = 0.01,
                 decay: float = 1.0, decorrelate: bool = True):
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        f = np.sqrt(fx ** 2 + fy ** 2)
        scale = 1.0 / np.maximum(f, 1.0 / max(h, w)) ** decay
        self.scale = scale / np.sqrt(np.mean(scale ** 2))
        self.m = color_matrix() if decorrelate else np.eye(3)
        shape = (n, 3, h, w)
        self.params = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * std
        self._img: np.ndarray | None = None

    def image(self) -> np.ndarray:
        """The current images ``(N, 3, h, w)`` in (0, 1)."""
        lin = np.fft.ifft2(self.params * self.scale, norm="ortho").real
        col = np.einsum("ij,njhw->nihw", self.m, lin)
        self._img = _sigmoid(col)
        return self._img

    def backward(self, g_img: np.ndarray) -> np.ndarray:
        """d/dP of a function whose gradient with respect to :meth:`image` is ``g_img``
        (as a complex array: real part for Re P, imaginary part for Im P)."""
        img = self._img if self._img is not None else self.image()
        g_col = g_img * img * (1.0 - img)
        g_lin = np.einsum("ij,nihw->njhw", self.m, g_col)
        # x = Re(ifft2(Z)) => dx/dRe Z = Re(ifft2(g)), dx/dIm Z = -Im(ifft2(g)):
        # conj(ifft2(g)) = fft2(g) for real g under the orthonormal scaling
        return np.fft.fft2(g_lin, norm="ortho") * self.scale


@dataclass(frozen=True)
class Affine:
    """Output pixel ``o`` shows the input at ``c + R(-angle) (o - c - shift) / zoom``
    (``c`` the centre), read bilinearly; coordinates outside mirror back inside."""

    h: int
    w: int
    angle: float = 0.0
    """Degrees, counter-clockwise."""
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def random(cls, h: int, w: int, rng: np.random.Generator, jitter: int,
               zoom: tuple[float, float], rotate: float) -> "Affine":
        dy, dx = (rng.integers(-jitter, jitter + 1, size=2) if jitter > 0 else (0, 0))
        return cls(h, w, float(rng.uniform(-rotate, rotate)) if rotate > 0 else 0.0,
                   float(rng.uniform(*zoom)), (float(dy), float(dx)))

    def _taps(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        h, w = self.h, self.w
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        oy, ox = np.mgrid[0:h, 0:w].astype(np.float64)
        a = math.radians(self.angle)
        ca, sa = math.cos(a), math.sin(a)
        ry, rx = oy - cy - self.shift[0], ox - cx - self.shift[1]
        sy = cy + (ca * ry + sa * rx) / self.zoom
        sx = cx + (-sa * ry + ca * rx) / self.zoom
        sy, sx = _mirror(sy, h), _mirror(sx, w)
        y0 = np.minimum(np.floor(sy).astype(np.int64), h - 1)
        x0 = np.minimum(np.floor(sx).astype(np.int64), w - 1)
        fy, fx = sy - y0, sx - x0
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        idx = [(y0 * w + x0).ravel(), (y0 * w + x1).ravel(), (y1 * w + x0).ravel(),
               (y1 * w + x1).ravel()]
        wts = [((1 - fy) * (1 - fx)).ravel(), ((1 - fy) * fx).ravel(), (fy * (1 - fx)).ravel(),
               (fy * fx).ravel()]
        return idx, wts

    def apply(self, img: np.ndarray) -> np.ndarray:
        """Resample ``img`` ``(..., h, w)``."""
        idx, wts = self._taps()
        flat = img.reshape(-1, self.h * self.w)
        out = sum(flat[:, i] * wt for i, wt in zip(idx, wts))
        return out.reshape(img.shape)

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        """The transpose of :meth:`apply` applied to ``g``."""
        idx, wts = self._taps()
        n, hw = int(np.prod(g.shape[:-2])), self.h * self.w
        flat = g.reshape(n, hw)
        offs = (np.arange(n) * hw)[:, None]
        out = np.zeros(n * hw)
        for i, wt in zip(idx, wts):
            out += np.bincount((i[None, :] + offs).ravel(), weights=(flat * wt).ravel(),
                               minlength=n * hw)
        return out.reshape(g.shape)


def _mirror(v: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(v)
    period = 2.0 * (n - 1)
    r = np.mod(v, period)
    return (n - 1) - np.abs(r - (n - 1))


def tv_penalty(img: np.ndarray, eps: float = 1e-4) -> tuple[float, np.ndarray]:
    """Total variation per pixel, ``mean(sqrt(dx^2 + eps) + sqrt(dy^2 + eps))`` over each
    image's neighbour differences (summed over the batch), and its gradient."""
    dx = img[..., :, 1:] - img[..., :, :-1]
    dy = img[..., 1:, :] - img[..., :-1, :]
    per = img.shape[-1] * img.shape[-2] * img.shape[-3]
    sx, sy = np.sqrt(dx ** 2 + eps), np.sqrt(dy ** 2 + eps)
    value = float((sx.sum() + sy.sum()) / per)
    g = np.zeros_like(img)
    tx, ty = dx / sx / per, dy / sy / per
    g[..., :, 1:] += tx
    g[..., :, :-1] -= tx
    g[..., 1:, :] += ty
    g[..., :-1, :] -= ty
    return value, g


def _box3(img: np.ndarray) -> np.ndarray:
    acc = sum(np.roll(np.roll(img, dy, -2), dx, -1) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    return acc / 9.0


def blur_penalty(img: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean((img - blur(img))^2)`` per image (3x3 box blur, wrapping at the edges, so
    the blur is symmetric) summed over the batch, and its gradient."""
    per = img.shape[-1] * img.shape[-2] * img.shape[-3]
    r = img - _box3(img)
    return float((r ** 2).sum() / per), 2.0 * (r - _box3(r)) / per


def pointwise(pre: Preprocess, img: np.ndarray) -> np.ndarray:
    """The per-pixel steps of ``pre`` on channels-first ``img`` (B, 3, H, W) in [0, 1]
    (resizing is left out: the image is made at the size the model gets)."""
    x = img
    if pre.grayscale:
        x = np.einsum("c,bchw->bhw", np.asarray(LUMA_WEIGHTS), x)[:, None]
    if pre.invert:
        x = 1.0 - x
    x = x * pre.scale
    if pre.mean is not None:
        x = x - np.asarray(pre.mean).reshape(1, -1, 1, 1)
    if pre.std is not None:
        x = x / np.asarray(pre.std).reshape(1, -1, 1, 1)
    return x


def pointwise_adjoint(pre: Preprocess, g: np.ndarray) -> np.ndarray:
    """The gradient with respect to the RGB image, given ``g`` with respect to
    :func:`pointwise`'s output."""
    if pre.std is not None:
        g = g / np.asarray(pre.std).reshape(1, -1, 1, 1)
    g = g * pre.scale * (-1.0 if pre.invert else 1.0)
    if pre.grayscale:
        g = np.asarray(LUMA_WEIGHTS).reshape(1, 3, 1, 1) * g
    return g


class Adam:
    """Adam (Kingma & Ba 2015) for gradient *ascent* on a complex or real array."""

    def __init__(self, lr: float = 0.05, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        p = params.view(np.float64)
        g = np.ascontiguousarray(grad).view(np.float64)
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mh = self.m / (1 - self.b1 ** self.t)
        vh = self.v / (1 - self.b2 ** self.t)
        p += self.lr * mh / (np.sqrt(vh) + self.eps)
