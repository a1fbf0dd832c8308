"""Named trained networks: ``zoo:lenet`` and ``zoo:efficientnet-lite0``.

    >>> zm = load("efficientnet-lite0")          # a ZooModel
    >>> predict(zm, convlens.cat())[0][0]
    Prediction(index=285, name='Egyptian cat', probability=0.80)

=====================  ==================  =========================================
name                   backends            what
=====================  ==================  =========================================
``lenet``              torch, keras        LeNet-5 trained by convlens on scikit-learn's
                                           digits (shipped weights, 99.4% held out)
``efficientnet-lite0`` torch               ImageNet classifier; weights from the optional
                                           ``convlens[imagenet]`` extra
=====================  ==================  =========================================

Every zoo model ends in a softmax, so its output is class probabilities; the layer
before (``fc3`` / ``fc``) holds the logits.  ``weights="random"`` gives the same
architecture untrained, for "random vs trained" comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple, Sequence, get_args

import numpy as np

from convlens.errors import ModelError
from convlens.labels import DIGIT_CLASSES, imagenet_classes
from convlens.preprocess import Preprocess

__all__ = ["ZooModel", "Prediction", "Backend", "available", "describe", "load", "topk", "predict"]

Backend = Literal["torch", "keras"]
ZooWeights = Literal["trained", "random"]

_BACKENDS: dict[str, tuple[str, ...]] = {
    "lenet": ("torch", "keras"),
    "efficientnet-lite0": ("torch",),
}


@dataclass(frozen=True)
class ZooModel:
    """A zoo network and what it takes to use it."""

    model: Any
    """The ``torch.nn.Module`` or ``keras.Model``, in eval mode; outputs probabilities."""
    name: str
    backend: Backend
    preprocess: Preprocess
    """How images in [0, 1] become this model's input (for images like its training data)."""
    class_names: list[str] | None
    input_size: tuple[int, int]
    """``(h, w)`` the model takes."""
    weights: ZooWeights = "trained"
    auto_invert: bool = False
    """Invert images with a light background (dark ink on paper) — LeNet's digits are light
    on black.  :meth:`preprocess_for` applies it."""

    def preprocess_for(self, image: np.ndarray) -> Preprocess:
        """The preprocessing for one ``(H, W, 3)`` image (or a batch, judged by its first
        image): :attr:`preprocess`, with ``invert=True`` when :attr:`auto_invert` and the
        image's border is light."""
        if not self.auto_invert:
            return self.preprocess
        from convlens.nets.lenet import light_background

        arr = np.asarray(image)
        return replace(self.preprocess,
                       invert=bool(light_background(arr[0] if arr.ndim == 4 else arr)))


class Prediction(NamedTuple):
    index: int
    name: str
    probability: float


def available() -> list[str]:
    """Names :func:`load` takes: ``["lenet", "efficientnet-lite0"]``."""
    return list(_BACKENDS)


_ABOUT: dict[str, str] = {
    "lenet": "LeNet-5 on 32x32 digits (scikit-learn's digits; weights shipped, 99.4% held "
             "out); dark-on-light images are inverted",
    "efficientnet-lite0": "ImageNet classifier, 224x224, 1000 classes; weights from the "
                          "convlens[imagenet] extra",
}


def describe(name: str) -> str:
    """One line about a zoo model: what it is, its input, its backends."""
    key = name[4:] if name.startswith("zoo:") else name
    if key not in _BACKENDS:
        raise ModelError(f"unknown zoo model {name!r}; expected one of {', '.join(_BACKENDS)}")
    return f"{_ABOUT[key]} [{', '.join(_BACKENDS[key])}]"


def _choices() -> str:
    return ", ".join(f"{n} ({', '.join(b)})" for n, b in _BACKENDS.items())


def load(name: str, backend: Backend = "torch", weights: ZooWeights = "trained",
         seed: int = 0) -> ZooModel:
    """Load a zoo network (``"lenet"`` or ``"efficientnet-lite0"``; a ``zoo:`` prefix is
    allowed) for ``backend`` ``"torch"`` or ``"keras"``.  ``weights="random"`` builds it
    untrained (LeNet: Glorot from ``seed``; EfficientNet: PyTorch's init under ``seed``)."""
    key = name[4:] if isinstance(name, str) and name.startswith("zoo:") else name
    if key not in _BACKENDS:
        raise ModelError(f"unknown zoo model {name!r}; expected one of {', '.join(_BACKENDS)}")
    if backend not in get_args(Backend):
        raise ModelError(f"unknown backend {backend!r}; expected one of "
                         f"{', '.join(get_args(Backend))}")
    if backend not in _BACKENDS[key]:
        raise ModelError(f"zoo:{key} is not available for {backend}; available: {_choices()}")
    if weights not in get_args(ZooWeights):
        raise ModelError(f"zoo weights {weights!r} are not valid; expected one of "
                         f"{', '.join(get_args(ZooWeights))}")
    if key == "lenet":
        from convlens.nets import lenet

        build = lenet.lenet_torch if backend == "torch" else lenet.lenet_keras
        return ZooModel(build(weights, seed), key, backend, lenet.PREPROCESS,
                        list(DIGIT_CLASSES), (32, 32), weights, auto_invert=True)
    from convlens.nets import efficientnet

    if weights == "trained":
        model = efficientnet.efficientnet_lite0("imagenet")
    else:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = efficientnet.efficientnet_lite0("random")
    return ZooModel(model, key, backend, efficientnet.PREPROCESS, imagenet_classes(),
                    (224, 224), weights)


def topk(probs: np.ndarray, class_names: Sequence[str] | None = None,
         k: int = 5) -> list[list[Prediction]]:
    """The ``k`` most probable classes of each row of ``probs`` (``(N, C)``; a single
    ``(C,)`` row counts as N = 1), most probable first; ties keep the lower index first."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[None] if p.ndim == 1 else p
    if p.ndim != 2 or p.shape[1] == 0:
        raise ModelError(f"topk needs probabilities of shape (N, C) or (C,); got "
                         f"{np.shape(probs)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ModelError(f"top k={k!r} is not valid; expected a positive integer")
    if class_names is not None and len(class_names) != p.shape[1]:
        raise ModelError(f"{len(class_names)} class names for {p.shape[1]} classes; expected "
                         "one name per class")
    out = []
    for row in p:
        order = np.argsort(-row, kind="stable")[: int(k)]
        out.append([Prediction(int(i), class_names[i] if class_names is not None else str(int(i)),
                               float(row[i])) for i in order])
    return out


def predict(zoo_model: ZooModel | str, images: Any, top: int = 5) -> list[list[Prediction]]:
    """Classify images with a zoo model (a :class:`ZooModel` or a zoo name).

    ``images``: anything :func:`convlens.as_batch` takes (one image, a batch, a list of
    paths).  Each image gets :meth:`ZooModel.preprocess_for`.  Returns, per image, the
    ``top`` classes with their probabilities, most probable first.
    """
    from convlens.images import as_batch

    zm = load(zoo_model) if isinstance(zoo_model, str) else zoo_model
    if not isinstance(zm, ZooModel):
        raise ModelError(f"predict needs a zoo model (convlens.nets.zoo.load(...)) or one of "
                         f"{', '.join(_BACKENDS)}; got {type(zoo_model).__name__}")
    # one at a time: images may differ in size, and each gets its own preprocessing
    batches = [as_batch(im) for im in images] if isinstance(images, (list, tuple)) \
        else [as_batch(images)]
    if not batches:
        raise ModelError("predict got an empty list of images; expected at least one")
    x = np.concatenate([zm.preprocess_for(im).apply(im[None])[0]
                        for batch in batches for im in batch])
    return topk(_forward(zm, x), zm.class_names, top)


def _forward(zm: ZooModel, x: np.ndarray) -> np.ndarray:
    """Probabilities ``(N, classes)`` for channels-first input ``x``."""
    if zm.backend == "torch":
        import torch

        with torch.no_grad():
            return zm.model(torch.from_numpy(x)).detach().cpu().numpy()
    from convlens.nets.keras_backend import import_keras

    keras = import_keras()
    out = zm.model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False)
    if hasattr(out, "detach"):  # the torch backend: skip keras' copying (and its warning)
        return out.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(out))
