"""LeNet-5 for 32 x 32 greyscale digits, in PyTorch and in Keras 3, from one set of weights.

The tutorial's diagram, layer by layer (input ``(1, 32, 32)``, a light digit on black):

=========  ===================================  ===============
name       layer                                output
=========  ===================================  ===============
conv1      conv 6 filters 5x5, valid            (6, 28, 28)
relu1      ReLU
pool1      max pool 2x2                         (6, 14, 14)
conv2      conv 16 filters 5x5, valid           (16, 10, 10)
relu2      ReLU
pool2      max pool 2x2                         (16, 5, 5)
flatten    flatten                              (400,)
fc1        dense 120                            (120,)
relu3      ReLU
fc2        dense 84                             (84,)
relu4      ReLU
fc3        dense 10 (the logits)                (10,)
softmax    softmax: class probabilities         (10,)
=========  ===================================  ===============

Weights are a dict of float32 arrays in PyTorch's layout (``conv1.weight`` is
``(out, in, kh, kw)``, ``fc1.weight`` is ``(out, in)``), stored as a plain ``.npz``
(:data:`WEIGHTS_FILE`, trained by ``python -m convlens.nets.train``).  Keras gets the
same numbers converted: conv kernels to ``(kh, kw, in, out)``, dense matrices transposed,
and ``fc1``'s input rows permuted because Keras flattens ``(H, W, C)`` where PyTorch
flattens ``(C, H, W)`` — so both frameworks compute the same thing to float rounding.
"""
from __future__ import annotations

import io
from importlib import resources
from os import PathLike
from typing import Any, Literal, Mapping, Union

import numpy as np

from convlens.errors import ModelError
from convlens.preprocess import Preprocess

__all__ = [
    "LENET_LAYERS", "INPUT_SHAPE", "WEIGHTS_FILE", "PREPROCESS", "WeightsArg",
    "load_weights", "random_weights", "lenet_torch", "lenet_keras", "keras_weights",
    "light_background", "digit_preprocess",
]

INPUT_SHAPE: tuple[int, int, int] = (1, 32, 32)
"""Channels-first input of LeNet: one grey channel of 32 x 32."""

WEIGHTS_FILE = "lenet.npz"
"""The shipped trained weights, in ``convlens/data/``."""

LENET_LAYERS: tuple[str, ...] = (
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
    "fc1", "relu3", "fc2", "relu4", "fc3", "softmax",
)
"""Layer (= stage) names, the same in PyTorch and Keras."""

# name -> shape of every parameter, PyTorch layout
_PARAM_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
    "fc1.weight": (120, 400), "fc1.bias": (120,),
    "fc2.weight": (84, 120), "fc2.bias": (84,),
    "fc3.weight": (10, 84), "fc3.bias": (10,),
}

PREPROCESS = Preprocess(size=(32, 32), grayscale=True)
"""Preprocessing of images that are already a light digit on a dark background
(:func:`convlens.digits` images): resize to 32 x 32 (bilinear), luma grey, values in [0, 1].
For any other picture of a digit use :func:`digit_preprocess`."""

WeightsArg = Union[Literal["trained", "random"], Mapping[str, np.ndarray], str, "PathLike[str]"]


# -- weights ----------------------------------------------------------------------------
def _check(weights: Mapping[str, Any], origin: str) -> dict[str, np.ndarray]:
    missing = sorted(set(_PARAM_SHAPES) - set(weights))
    unexpected = sorted(set(weights) - set(_PARAM_SHAPES))
    if missing or unexpected:
        raise ModelError(f"{origin}: LeNet weights do not match; missing "
                         f"{', '.join(missing) or 'none'}; unexpected {', '.join(unexpected) or 'none'}")
    out = {}
    for key, shape in _PARAM_SHAPES.items():
        arr = np.asarray(weights[key])
        if arr.shape != shape:
            raise ModelError(f"{origin}: LeNet weight {key} has shape {arr.shape}; expected {shape}")
        out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def load_weights(path: str | PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """LeNet weights from an ``.npz`` (PyTorch layout, float32; read with
    ``allow_pickle=False``).  ``None`` reads the shipped trained weights."""
    try:
        if path is None:
            data = (resources.files("convlens") / "data" / WEIGHTS_FILE).read_bytes()
            origin = f"convlens/data/{WEIGHTS_FILE}"
            source: Any = io.BytesIO(data)
        else:
            origin, source = str(path), path
        with np.load(source, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read LeNet weights from {origin} ({exc}); expected an .npz "
                         "written by python -m convlens.nets.train") from None
    return _check(arrays, origin)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Untrained LeNet weights: Glorot-uniform kernels, zero biases, from ``seed``
    (``numpy.random.default_rng``, layers in order) — for "random vs trained"."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in _PARAM_SHAPES.items():
        if key.endswith(".bias"):
            out[key] = np.zeros(shape, np.float32)
            continue
        field = int(np.prod(shape[2:])) if len(shape) == 4 else 1
        fan_in, fan_out = shape[1] * field, shape[0] * field
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out[key] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return out


def _resolve(weights: WeightsArg, seed: int) -> dict[str, np.ndarray]:
    if isinstance(weights, str) and weights == "trained":
        return load_weights()
    if isinstance(weights, str) and weights == "random":
        return random_weights(seed)
    if isinstance(weights, Mapping):
        return _check(weights, "weights")
    if isinstance(weights, (str, PathLike)):
        return load_weights(weights)
    raise ModelError(f"LeNet weights={weights!r} are not valid; expected 'trained', 'random', "
                     "a dict of arrays or the path of an .npz")


# -- builders ---------------------------------------------------------------------------
def lenet_torch(weights: WeightsArg = "trained", seed: int = 0):
    """LeNet as a PyTorch ``nn.Sequential`` (children named as :data:`LENET_LAYERS`), in
    eval mode.  ``weights``: ``"trained"`` (shipped), ``"random"`` (from ``seed``), a dict
    in PyTorch layout or an ``.npz`` path.  Input ``(B, 1, 32, 32)``; output probabilities."""
    import torch
    from torch import nn

    params = _resolve(weights, seed)
    model = nn.Sequential()
    for name, module in (
        ("conv1", nn.Conv2d(1, 6, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(400, 120)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(84, 10)), ("softmax", nn.Softmax(dim=1)),
    ):
        model.add_module(name, module)
    state = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def keras_weights(weights: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """PyTorch-layout LeNet weights as ``{keras layer name: [kernel, bias]}``."""
    w = _check(weights, "weights")
    out = {}
    for name in ("conv1", "conv2"):
        out[name] = [w[f"{name}.weight"].transpose(2, 3, 1, 0), w[f"{name}.bias"]]
    # fc1 reads the flattened pool2 output: PyTorch index c*25 + h*5 + w, Keras h*80 + w*16 + c.
    fc1 = w["fc1.weight"].reshape(120, 16, 5, 5).transpose(2, 3, 1, 0).reshape(400, 120)
    out["fc1"] = [fc1, w["fc1.bias"]]
    for name in ("fc2", "fc3"):
        out[name] = [w[f"{name}.weight"].T, w[f"{name}.bias"]]
    return {k: [np.ascontiguousarray(a, dtype=np.float32) for a in v] for k, v in out.items()}


def lenet_keras(weights: WeightsArg = "trained", seed: int = 0):
    """LeNet as a Keras 3 ``Sequential`` with the same layer names and the same weights
    as :func:`lenet_torch`.  Input ``(B, 32, 32, 1)`` (channels-last); output probabilities."""
    from convlens.nets.keras_backend import import_keras

    keras = import_keras()
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((32, 32, 1), name="image"),
        layers.Conv2D(6, 5, name="conv1"), layers.Activation("relu", name="relu1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(16, 5, name="conv2"), layers.Activation("relu", name="relu2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(120, name="fc1"), layers.Activation("relu", name="relu3"),
        layers.Dense(84, name="fc2"), layers.Activation("relu", name="relu4"),
        layers.Dense(10, name="fc3"), layers.Activation("softmax", name="softmax"),
    ], name="lenet")
    for name, arrays in keras_weights(_resolve(weights, seed)).items():
        model.get_layer(name).set_weights(arrays)
    return model


# -- any picture of a digit ---------------------------------------------------------------
def light_background(image: np.ndarray) -> bool:
    """Whether an ``(H, W, 3)`` (or ``(H, W)``) image in [0, 1] has a light background:
    the mean luma of its border pixels (outermost row/column on each side) is above 0.5."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim == 3:
        arr = arr.mean(axis=-1)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ModelError(f"cannot judge the background of an array of shape "
                         f"{np.shape(image)}; expected an image (H, W, 3)")
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    return bool(border.mean() > 0.5)


def digit_preprocess(image: np.ndarray) -> Preprocess:
    """The LeNet preprocessing for any picture of one digit: resize to 32 x 32, luma grey,
    and invert (``1 - x``) when the background is light (:func:`light_background`), so the
    network sees a light digit on black as it was trained.  Crop to the digit first for
    best results: the training digits fill most of the frame."""
    return Preprocess(size=(32, 32), grayscale=True, invert=light_background(image))
