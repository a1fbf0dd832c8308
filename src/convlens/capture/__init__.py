"""``capture(model, images)``: run a model once and record every stage into a Trace.

Dispatches on the model's type through the adapter registry
(:mod:`convlens.capture.adapters`) without importing a framework until it is needed.
"""
from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Sequence

import numpy as np

from convlens.errors import CaptureError
from convlens.images import as_batch
from convlens.preprocess import Preprocess
from convlens.trace import STAGE_KINDS, LazyStages, Stage, Trace, nearest_names
from convlens.capture.adapters import adapter_for
from convlens.capture.options import Store, StoreDtype, Weights, check_options

__all__ = ["capture", "framework_of", "expected_input", "default_preprocess"]


def framework_of(model: Any) -> str:
    """The name of the adapter that owns ``model`` (``"torch"``, ``"keras"``...);
    ModelError for anything else."""
    return adapter_for(model).name


def expected_input(model: Any) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (h, w))`` the model declares for its input (``None`` when unknown)."""
    return adapter_for(model).function("expected")(model)


def default_preprocess(model: Any, hw: tuple[int, int]) -> Preprocess:
    """What :func:`capture` does to images of size ``hw`` when no ``preprocess`` is given:
    only what the model's declared input needs."""
    return _auto_preprocess(*expected_input(model), hw)


def _auto_preprocess(channels: int | None, size: tuple[int, int] | None,
                     hw: tuple[int, int]) -> Preprocess:
    if channels not in (None, 1, 3):
        raise CaptureError(
            f"the model expects {channels}-channel input; convlens feeds RGB (3) or "
            "greyscale (1) images — pass preprocess= to say how to make its input"
        )
    return Preprocess(size=size if size is not None and size != hw else None,
                      grayscale=channels == 1)


def capture(
    model: Any,
    images: Any,
    layers: str | Sequence[str] | None = None,
    *,
    preprocess: Preprocess | None = None,
    name: str | None = None,
    meta: dict[str, Any] | None = None,
    weights: Weights = "copy",
    dtype: StoreDtype = "float32",
    store: Store = "memory",
    directory: str | os.PathLike[str] | None = None,
) -> Trace:
    """Run ``model`` once on ``images`` and return every stage it computed.

    ``images``: one image ``(H, W, 3)``, a batch ``(B, H, W, 3)`` (float in [0, 1]),
    a path, bytes, or a list of those (see :func:`convlens.as_batch`).
    ``layers``: keep only stages matching these names, kinds or glob patterns
    (e.g. ``"conv"``, ``["conv1", "block3*"]``); ``None`` keeps all.
    ``preprocess``: how images become the model's input; by default nothing but
    what the model's declared input needs (greyscale for 1-channel models, the
    fixed size of a Keras input).  Every step is listed in ``trace.preprocessing``.
    ``weights``: ``"copy"`` (each stage's weights copied, so the Trace never changes when
    the model is trained later), ``"share"`` (read-only views of the model's float32 CPU
    parameters: no copy, but they follow the model) or ``"none"``.
    ``dtype``: ``"float16"`` stores outputs in half precision (half the memory).
    ``store``: ``"disk"`` writes each stage output to ``directory`` as a ``.npy`` file as
    its layer returns and keeps a read-only memory map (RAM stays at the forward pass's).

    The model is not changed: its leaves' ``forward`` is wrapped for the pass only (hooks,
    for leaves with hooks of their own), train/eval modes and weights restored.

    PyTorch: every leaf module is a stage, and so is every tensor-producing op run outside
    leaf modules (a residual ``x + y``, ``F.relu``, ``torch.cat``, ``x.mean((2, 3))``,
    ``torch.flatten``...), named after the module whose ``forward`` ran it
    (``layer1.0.add``); ``Stage.sources`` lists every stage that fed each one.  A stage
    that is a fixed function of the stage that fed it (a convolution, an eval-mode batch
    norm, a clamping activation) is not held but computed again, exactly, when its output
    is first read, with weights copied at the call; the ``Stage`` objects are made when
    ``trace.stages`` is first read.  What was computed but is not a stage (an output
    without a batch axis) is named in ``trace.meta["notices"]``.
    """
    opts = check_options(weights, dtype, store, directory)
    adapter = adapter_for(model)
    batch = as_batch(images)
    if preprocess is None:
        preprocess = _auto_preprocess(*adapter.function("expected")(model), batch.shape[1:3])
    x, steps = preprocess.apply(batch)

    if layers is None:
        keep = None
    else:
        selectors = [s.strip() for s in layers.split(",")] if isinstance(layers, str) else list(layers)
        keep = _Selector(selectors)
    # an adapter returns (stages, output, model name, notices): notices name what it
    # computed but could not record as stages (never dropped silently)
    stages, output, model_name, notices = adapter.function("capture")(model, x, keep, opts)
    notices = list(notices)
    if keep is not None:
        keep.check()
    if not stages or (keep is None and not _ends_with(stages, output)):
        if keep is None or keep("output", "output"):
            final = output.astype(np.float16) if opts.dtype == "float16" else output
            if opts.store == "disk":
                final = opts.sink().put(len(stages), "output", final)  # type: ignore[union-attr]
            taken = stages.names() if isinstance(stages, LazyStages) else [s.name for s in stages]
            name = next(n for n in ("output", *(f"output#{i}" for i in range(2, len(taken) + 3)))
                        if n not in taken)  # (a model may have a layer called "output")
            stages.append(Stage(index=len(stages), name=name, kind="output", op="output",
                                output=final, source=None))
    return Trace(
        stages=stages, input=batch, framework=adapter.name, model_name=name or model_name,
        model_input=x, preprocessing=steps,
        meta={**(meta or {}), **({"notices": notices} if notices else {})},
    )


def _ends_with(stages: list[Stage] | LazyStages, output: np.ndarray) -> bool:
    """Does the last stage already show the model's output?  (Known without making lazy
    stages or computing a deferred output, when possible.)"""
    if isinstance(stages, LazyStages):
        known = stages.ends_with(output.shape)
        if known is not None:
            return known
        stages = stages.build()
    return _same(stages[-1], output)


def _same(stage: Stage, b: np.ndarray) -> bool:
    if tuple(stage._array_shape) != b.shape:
        return False
    a = stage.output
    if a.dtype == np.float16 and b.dtype != np.float16:
        b = b.astype(np.float16)
    return a.shape == b.shape and np.array_equal(a, b)


class _Selector:
    """The ``layers=`` filter; remembers which selectors matched, to report the ones that did not."""

    def __init__(self, selectors: list[str]):
        self.selectors = [s for s in selectors if s]
        if not self.selectors:
            raise CaptureError("empty layer selection; give stage names, kinds or glob patterns")
        self.seen: list[tuple[str, str]] = []
        self.matched: set[str] = set()
        # what select_stages matches (a name, a kind or a glob), compiled once: this runs
        # for every layer call of the forward pass
        self._globs = [(s, re.compile(fnmatch.translate(s)).match) for s in self.selectors]

    def __call__(self, name: str, kind: str) -> bool:
        self.seen.append((name, kind))
        hits = [s for s, glob in self._globs if name == s or kind == s or glob(name) is not None]
        self.matched.update(hits)
        return bool(hits)

    def check(self) -> None:
        missing = [s for s in self.selectors if s not in self.matched]
        if missing:
            names = [n for n, _ in self.seen if n != "output"]
            raise CaptureError(
                f"layer selector {missing[0]!r} matches no stage; expected a stage name, a kind "
                f"(conv, norm, activation, pool, dense...) or a glob; "
                f"{nearest_names(missing[0], names, also=STAGE_KINDS)}"
            )
