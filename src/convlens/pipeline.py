"""From "these images and this network" to a Trace: the path the CLI and the demo take."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from convlens.capture import capture
from convlens.errors import ConvlensError
from convlens.images import as_batch
from convlens.preprocess import Preprocess
from convlens.trace import Trace

__all__ = ["make_trace", "trace_spec", "choose_preprocess"]


def trace_spec(images: Any, spec: str, backend: str = "torch", seed: int = 0,
               layers: str | Sequence[str] | None = None,
               preprocess: Preprocess | None = None) -> Trace:
    """Build the toy network ``spec`` for these images (seeded) and capture it."""
    from convlens.nets import build, parse_spec

    batch = as_batch(images)
    net = parse_spec(spec)
    channels = preprocess.channels if preprocess is not None else 3
    hw = preprocess.size if preprocess is not None and preprocess.size else batch.shape[1:3]
    model = build(net, backend=backend, seed=seed, in_shape=(channels, *hw))
    return capture(model, batch, layers, name=net.text(), preprocess=preprocess,
                   meta={"spec": net.text(), "seed": seed, "backend": backend})


def choose_preprocess(own: Preprocess | None, given: Preprocess | Mapping[str, Any] | None,
                      batch: Any = None, loaded: Any = None) -> Preprocess | None:
    """The preprocessing a model gets: ``given`` when it is a :class:`Preprocess`; the
    model's own (``own``; for a loaded model, judged on ``batch`` — LeNet inverts light
    digits) when ``given`` is ``None``; otherwise ``given`` is a dict of changes — a
    ``"preset"`` name (:data:`convlens.preprocess.PRESETS`) replaces how the model's own
    scales values but keeps its size and greyscale, and the other keys are
    :class:`Preprocess` fields — applied on top; what the model declares (a fixed input
    size, one channel) and nobody said is filled in."""
    if isinstance(given, Preprocess):
        return given
    if loaded is not None and batch is not None and not given:
        own = loaded.preprocess_for(batch)
    if not given:
        return own
    changes = dict(given)
    preset = changes.pop("preset", None)
    if preset is not None:
        # a preset says how values are scaled; the geometry (size, grey) stays the model's
        keep = {"size": own.size, "grayscale": own.grayscale} if own is not None else {}
        pre = Preprocess.preset(preset, **{**keep, **changes})
    else:
        pre = (own if own is not None else Preprocess()).replace(**changes)
    return _fit(pre, getattr(loaded, "model", None))


def _fit(pre: Preprocess, model: Any) -> Preprocess:
    """What the model declares (a fixed input size, one grey channel) and the user did not
    say: filled in, as capture does when nothing is given."""
    if model is None:
        return pre
    from convlens.capture import expected_input

    channels, size = expected_input(model)
    if pre.size is None and size is not None:
        pre = pre.replace(size=size)
    if channels == 1 and not pre.grayscale:
        pre = pre.replace(grayscale=True)
    return pre


def make_trace(images: Any, *, net: str | None = None, model: str | None = None,
               backend: str = "torch", seed: int = 0,
               layers: str | Sequence[str] | None = None,
               preprocess: Preprocess | Mapping[str, Any] | None = None,
               weights: str | None = None, trust_model_code: bool = False) -> Trace:
    """A Trace of ``images`` through a toy-network spec (``net``) or a model file /
    ``zoo:NAME`` / ``MODULE:CALLABLE`` (``model``, with ``weights``) — exactly one of the
    two.  ``preprocess``: see :func:`choose_preprocess`."""
    if (net is None) == (model is None):
        raise ConvlensError("give exactly one of a network spec (--net) or a model (--model)")
    batch = as_batch(images)
    if net is not None:
        if weights is not None:
            raise ConvlensError("--weights goes with --model MODULE:CALLABLE, not --net (a "
                                "--net's weights come from --seed)")
        pre = choose_preprocess(None, preprocess)
        return trace_spec(batch, net, backend=backend, seed=seed, layers=layers, preprocess=pre)
    from convlens.capture.files import load_model

    loaded = load_model(model, backend=backend, weights=weights,
                        trust_model_code=trust_model_code)
    meta: dict[str, Any] = dict(loaded.meta)
    if loaded.class_names is not None:
        meta["class_names"] = list(loaded.class_names)
    pre = choose_preprocess(loaded.preprocess, preprocess, batch, loaded)
    trace = capture(loaded.model, batch, layers, preprocess=pre, name=loaded.name, meta=meta)
    from convlens.analysis.predictions import with_predictions

    return with_predictions(trace)  # classifiers: meta["predictions"], the top 5 per image
