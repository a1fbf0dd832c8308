"""Tiny networks with hand-set weights, so the expected feature maps are exact."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def ramp_image(h: int = 4, w: int = 4) -> np.ndarray:
    """(h, w, 3) image: channel 0 = k/16 row-major, channel 1 = 0.5, channel 2 = 1 - ch0."""
    ch0 = (np.arange(h * w, dtype=np.float32) / 16.0).reshape(h, w)
    return np.stack([ch0, np.full_like(ch0, 0.5), 1.0 - ch0], axis=-1)


def box_sum_net() -> nn.Sequential:
    """conv: 2x2 box sum of channel 0 minus 1 (out 0) and -channel 2 (out 1); ReLU; 2x2 max pool."""
    conv = nn.Conv2d(3, 2, 2, bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 2, 0, 0] = -1.0
        conv.bias.copy_(torch.tensor([-1.0, 0.0]))
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2, stride=1))


class CalledTwice(nn.Module):
    """One ReLU module used twice; conv inside a nested container."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 1, bias=False)))
        self.act = nn.ReLU()
        with torch.no_grad():
            self.body[0][0].weight.copy_(torch.tensor([[1.0, 0, -1], [-1.0, 0, 1]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.body(x))
        return self.act(y - 0.25)


class InplaceResidual(nn.Module):
    """conv -> ReLU(inplace) -> out += x (a functional in-place op inside forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.conv.weight.copy_(-torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(x) + 0.3)
        y += x
        return y
