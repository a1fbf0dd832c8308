"""What every attribution method shares, without importing torch or keras.

* :class:`Backend` — the gradient plumbing a framework must provide (one forward pass
  that records chosen stages, then one vector-Jacobian product).  The two
  implementations live in :mod:`.torch_backend` and :mod:`.keras_backend`; they are
  the only modules here that touch a framework.
* :class:`Subject` — a model plus what is known about it (preprocessing, class names),
  made by :func:`subject` from a ``torch.nn.Module``, a ``keras.Model``, a zoo model or
  a :class:`~convlens.capture.files.LoadedModel`.
* :class:`Attribution` — a batch of maps (Grad-CAM, saliency...) with the class each
  one explains.

Stage names are the ones :func:`convlens.capture` gives the same model.  Class scores
are the **logits**: when the network ends in a softmax, the softmax's input, otherwise
the model's output (:data:`LOGITS`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np

from convlens.errors import ModelError, nearest
from convlens.images import as_batch, resize
from convlens.preprocess import Preprocess

__all__ = [
    "LOGITS", "StageInfo", "Pass", "Seed", "Backend", "Subject", "subject", "Attribution",
    "TargetArg", "class_seed", "channel_seed", "spatial_stages", "mass_fraction",
]

LOGITS = "@logits"
"""Objective stage meaning "the class scores": the input of a final softmax, else the output."""

Seed = Callable[[np.ndarray], np.ndarray]
"""Given a stage's output (channels-first numpy), the weights ``w`` of the same shape such
that the objective is ``sum(output * w)`` (one number per image, summed over the batch)."""

TargetArg = Union[int, str, Sequence[Union[int, str]], None]


@dataclass(frozen=True)
class StageInfo:
    """One stage a forward pass went through: its name, kind and output shape
    (channels-first, without the batch axis)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    function: str = ""

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 3

    @property
    def shape_str(self) -> str:
        s = self.shape
        return f"{s[1]}x{s[2]}x{s[0]}" if len(s) == 3 else "x".join(map(str, s))


@dataclass
class Pass:
    """What :meth:`Backend.run` returns (all arrays channels-first NumPy)."""

    stages: list[StageInfo]
    """Every stage the pass went through, in execution order (fewer if it stopped early)."""
    values: dict[str, np.ndarray]
    """Outputs of the stages asked for (and of the objective stage, under its own name)."""
    grads: dict[str, np.ndarray | None]
    """d objective / d output of each stage asked for (None: the stage does not influence
    the objective), and ``"input"`` when the input gradient was asked for."""
    objective: np.ndarray | None = None
    """The objective per image, ``(B,)``: ``sum(output[b] * seed[b])``."""
    objective_stage: str | None = None
    """The stage the objective was read from (the real name behind :data:`LOGITS`)."""


class Backend(ABC):
    """Gradient plumbing for one model.  Never changes the model: modes, hooks,
    ``requires_grad`` and weights are as before after every call, and no ``.grad``
    is left behind."""

    framework: str = ""
    name: str = ""

    @abstractmethod
    def run(self, x: np.ndarray, keep: Sequence[str] = (),
            objective: tuple[str, Seed] | None = None, input_grad: bool = False,
            stop_early: bool = False) -> Pass:
        """One forward pass on the channels-first batch ``x`` (model input).

        ``keep``: stages whose outputs (and, with an objective, gradients) to return.
        ``objective``: ``(stage, seed)``; the objective is ``sum(output * seed(output))``
        (stage :data:`LOGITS` for the class scores).  ``input_grad``: also the gradient
        with respect to ``x``.  ``stop_early``: stop the forward pass once every stage
        needed has been computed (a channel of an early stage needs only part of it).
        """

    @abstractmethod
    def clone(self) -> "Backend":
        """A backend over an independent copy of the model (for randomising weights)."""

    @abstractmethod
    def parameter_stages(self) -> list[str]:
        """Names of the stages whose layer holds trainable weights."""

    @abstractmethod
    def randomize(self, stage: str, rng: np.random.Generator) -> None:
        """Redraw the trainable weights of ``stage``'s layer, each tensor from a normal
        distribution with that tensor's own mean and standard deviation.  Only ever
        called on a :meth:`clone`."""

    def stages(self, x: np.ndarray) -> list[StageInfo]:
        """The stages of a forward pass on ``x`` (no gradients)."""
        return self.run(x).stages


def wanted_stages(keep: Sequence[str], objective: tuple[str, Seed] | None
                  ) -> tuple[set[str], str | None]:
    """The stages a pass must hold (``keep`` plus the objective's stage) and that stage."""
    want = set(keep)
    target = objective[0] if objective is not None else None
    if target is not None and target != LOGITS:
        want.add(target)
    return want, target


def backend_for(model: Any) -> Backend:
    """The backend for a ``torch.nn.Module`` or a ``keras.Model``."""
    from convlens.capture.adapters import adapter_for

    return adapter_for(model).function("backend")(model)


@dataclass
class Subject:
    """A model ready for attribution: its backend, how images become its input, and its
    class names (when known)."""

    backend: Backend
    preprocess: Preprocess | None
    class_names: list[str] | None
    name: str
    preprocess_for: Callable[[Any], Preprocess | None] | None = None
    """When set, the preprocessing depends on the images (LeNet inverts light digits)."""

    @property
    def framework(self) -> str:
        return self.backend.framework

    def prepare(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(batch (B, H, W, 3) in [0, 1], model input (B, C, h, w))`` — the same
        preprocessing :func:`convlens.capture` would apply."""
        from convlens.capture import default_preprocess

        batch = as_batch(images)
        pre = self.preprocess_for(batch) if self.preprocess_for is not None else self.preprocess
        if pre is None:
            pre = default_preprocess(getattr(self.backend, "model", None), batch.shape[1:3])
        x, _ = pre.apply(batch)
        return batch, x


def subject(model: Any, preprocess: Preprocess | None = None,
            class_names: Sequence[str] | None = None) -> Subject:
    """A :class:`Subject` from a framework model, a zoo model (``convlens.nets.zoo.load``)
    or a :class:`~convlens.capture.files.LoadedModel`; ``preprocess``/``class_names`` given here
    win over the ones the zoo or loader knows."""
    if isinstance(model, Subject):
        return model
    from convlens.capture.files import LoadedModel
    from convlens.nets.zoo import ZooModel

    name = None
    auto = None
    if isinstance(model, (ZooModel, LoadedModel)):
        if preprocess is None and getattr(model, "auto_invert", False):
            auto = model.preprocess_for  # per batch: what predict and run apply
        preprocess = preprocess if preprocess is not None else model.preprocess
        class_names = class_names if class_names is not None else model.class_names
        name = model.name
        model = model.model
    backend = backend_for(model)
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise ModelError(f"preprocess must be a convlens.Preprocess; got "
                         f"{type(preprocess).__name__}")
    return Subject(backend, preprocess, list(class_names) if class_names is not None else None,
                   name or backend.name, auto)


# -- objectives ----------------------------------------------------------------------
def _class_index(t: Any, names: list[str] | None) -> int:
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return int(t)
    if isinstance(t, str):
        if names is None:
            raise ModelError(f"class {t!r} given by name, but this model has no class names; "
                             "give the class index instead")
        low = [n.lower() for n in names]
        if t.lower() in low:
            return low.index(t.lower())
        if t.strip().isdigit():
            return int(t)
        near = nearest(t.lower(), low)
        hint = f"; did you mean {', '.join(repr(names[low.index(n)]) for n in near)}?" if near else ""
        raise ModelError(f"unknown class {t!r}; expected a class index or one of this model's "
                         f"{len(names)} class names{hint}")
    raise ModelError(f"class {t!r} is not valid; expected a class index or name")


def class_seed(target: TargetArg, batch: int, names: list[str] | None = None,
               chosen: list[int] | None = None) -> Seed:
    """The seed that selects one class score per image: ``target`` (an index or name for
    every image, or one per image), or each image's top class when ``None``.  The
    classes actually used are appended to ``chosen``."""
    if target is None:
        wanted: list[int] | None = None
    elif isinstance(target, (list, tuple, np.ndarray)):
        wanted = [_class_index(t, names) for t in target]
        if len(wanted) != batch:
            raise ModelError(f"{len(wanted)} classes for {batch} images; expected one class, "
                             "or one per image")
    else:
        wanted = [_class_index(target, names)] * batch

    def seed(logits: np.ndarray) -> np.ndarray:
        if logits.ndim != 2:
            raise ModelError(f"the class scores have shape {logits.shape[1:]}; expected a flat "
                             "vector of classes per image")
        n = logits.shape[1]
        idx = wanted if wanted is not None else [int(i) for i in np.argmax(logits, axis=1)]
        for i in idx:
            if not 0 <= i < n:
                raise ModelError(f"class {i} is out of range; this model has {n} classes "
                                 f"(0..{n - 1})")
        w = np.zeros_like(logits, dtype=np.float32)
        w[np.arange(len(idx)), idx] = 1.0
        if chosen is not None:
            chosen[:] = idx
        return w

    return seed


def channel_seed(channels: Sequence[int]) -> Seed:
    """The seed that selects channel ``channels[b]`` of image ``b``: its mean over the
    positions of a spatial stage, its value in a flat one."""
    chans = [int(c) for c in channels]

    def seed(out: np.ndarray) -> np.ndarray:
        n = out.shape[1]
        for c in chans:
            if not 0 <= c < n:
                raise ModelError(f"channel {c} is out of range; the stage has {n} channels "
                                 f"(0..{n - 1})")
        w = np.zeros_like(out, dtype=np.float32)
        per = 1.0 / float(np.prod(out.shape[2:])) if out.ndim > 2 else 1.0
        w[np.arange(len(chans)), chans] = per
        return w

    return seed


def spatial_stages(stages: Sequence[StageInfo]) -> list[StageInfo]:
    """The stages a class-activation map can be read from: spatial, more than 1x1."""
    return [s for s in stages if s.spatial and s.shape[1] * s.shape[2] > 1]


# -- results -------------------------------------------------------------------------
@dataclass(eq=False)
class Attribution:
    """Attribution maps for a batch of images.

    ``maps`` is ``(B, h, w)`` float32 at the resolution it was computed at (the stage's
    for CAM methods, the model input's for gradient methods); :meth:`upsampled` gives
    them at the size of ``images``.  ``signed`` maps (gradient x input) have both signs;
    the others are >= 0.
    """

    method: str
    maps: np.ndarray
    stage: str
    images: np.ndarray
    targets: list[int]
    target_names: list[str] | None
    scores: np.ndarray
    signed: bool
    framework: str
    model_name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.maps.shape[0])

    def upsampled(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The maps stretched (bilinear) to ``size`` ``(h, w)``, by default the images'."""
        h, w = size if size is not None else self.images.shape[1:3]
        return np.stack([resize(m, (int(h), int(w))) for m in self.maps]).astype(np.float32)

    def label(self, i: int = 0) -> str:
        """``class 285 'Egyptian cat'`` for image ``i``."""
        name = self.target_names[i] if self.target_names else None
        return f"class {self.targets[i]}" + (f" {name!r}" if name else "")


def mass_fraction(m: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> float:
    """Share of a non-negative map's total inside the box ``rows``/``cols`` (inclusive
    index ranges); 0 for an all-zero map.  Negative values count as zero."""
    a = np.clip(np.asarray(m, dtype=np.float64), 0, None)
    total = a.sum()
    if total <= 0:
        return 0.0
    return float(a[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1].sum() / total)
