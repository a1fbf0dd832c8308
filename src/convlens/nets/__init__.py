"""Networks convlens builds (the tutorial's toy nets) or ships (the zoo)."""
from __future__ import annotations

from typing import Any, Literal

from convlens.errors import SpecError
from convlens.nets.spec import NetSpec, parse_spec

__all__ = ["Backend", "BACKENDS", "build", "parse_spec", "NetSpec"]

Backend = Literal["torch", "keras"]
BACKENDS: tuple[str, ...] = ("torch", "keras")


def build(spec: str | NetSpec, backend: Backend = "torch", seed: int = 0,
          in_shape: tuple[int, int, int] = (3, 224, 224)) -> Any:
    """Build a toy network from a spec in PyTorch or Keras, with seeded Glorot weights.

    ``in_shape`` is ``(C, H, W)``; H and W only matter for dense layers (and for
    the error when the image is too small for the network).  The same spec and
    seed give the same weights in both backends.
    """
    net = parse_spec(spec, in_channels=in_shape[0]) if isinstance(spec, str) else spec
    net.shapes(in_shape)  # fail early, naming the layer, when the image is too small
    if backend == "torch":
        from convlens.nets.torch import build_torch
        return build_torch(net, in_shape, seed)
    if backend == "keras":
        from convlens.nets.keras import build_keras
        return build_keras(net, in_shape, seed)
    raise SpecError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
