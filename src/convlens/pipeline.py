"""From "these images and this network" to a Trace: the path the CLI and the demo take."""
from __future__ import annotations

from typing import Any, Sequence

from convlens.capture import capture
from convlens.errors import ConvlensError
from convlens.images import as_batch
from convlens.trace import Trace

__all__ = ["make_trace", "trace_spec"]


def trace_spec(images: Any, spec: str, backend: str = "torch", seed: int = 0,
               layers: str | Sequence[str] | None = None) -> Trace:
    """Build the toy network ``spec`` for these images (seeded) and capture it."""
    from convlens.nets import build, parse_spec

    batch = as_batch(images)
    net = parse_spec(spec)
    model = build(net, backend=backend, seed=seed, in_shape=(3, *batch.shape[1:3]))
    return capture(model, batch, layers, name=net.text(),
                   meta={"spec": net.text(), "seed": seed, "backend": backend})


def make_trace(images: Any, *, net: str | None = None, model: str | None = None,
               backend: str = "torch", seed: int = 0,
               layers: str | Sequence[str] | None = None) -> Trace:
    """A Trace of ``images`` through a toy-network spec (``net``) or a model file /
    ``zoo:NAME`` (``model``) — exactly one of the two."""
    if (net is None) == (model is None):
        raise ConvlensError("give exactly one of a network spec (--net) or a model (--model)")
    if net is not None:
        return trace_spec(images, net, backend=backend, seed=seed, layers=layers)
    from convlens.capture.files import load_model

    loaded = load_model(model, backend=backend)
    meta: dict[str, Any] = dict(loaded.meta)
    if loaded.class_names is not None:
        meta["class_names"] = list(loaded.class_names)
    trace = capture(loaded.model, images, layers, preprocess=loaded.preprocess,
                    name=loaded.name, meta=meta)
    from convlens.analysis.predictions import with_predictions

    return with_predictions(trace)  # classifiers: meta["predictions"], the top 5 per image
