"""Hand-built networks for the attribution tests: the right answer is known in advance."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class QuadrantMask(nn.Module):
    """Multiplies by 1 in the top-left quadrant and 0 elsewhere: nothing outside it
    can reach the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mask = torch.zeros(h, w, dtype=x.dtype)
        mask[: h // 2, : w // 2] = 1.0
        return x * mask


def quadrant_net(seed: int = 0) -> nn.Sequential:
    """conv 3x3 (same) -> ReLU -> keep the top-left quadrant -> global mean -> 2 classes.
    The class scores depend only on the top-left quadrant of the image (plus the one-pixel
    border the 3x3 conv reads)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), QuadrantMask(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].bias.fill_(0.1)  # every channel fires somewhere on a positive image
        net[5].weight.copy_(torch.tensor([[1.0, 0.5, 0.25, 2.0], [-1.0, 1.0, 0.0, 0.5]]))
    return net.eval()


PW = np.array([[0.5, -0.25, 1.0], [1.0, 0.5, -0.5], [-0.75, 1.0, 0.25]], np.float32)
PB = np.array([0.1, -0.2, 0.05], np.float32)
V = np.array([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]], np.float32)
VB = np.array([0.3, -0.1], np.float32)


def pointwise_net(relu: bool = True) -> nn.Sequential:
    """1x1 conv (PW, PB) [-> ReLU] -> global mean -> dense (V, VB): every gradient has a
    closed form, so a NumPy reference gives the exact maps."""
    conv = nn.Conv2d(3, 3, 1)
    dense = nn.Linear(3, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(PW).view(3, 3, 1, 1))
        conv.bias.copy_(torch.from_numpy(PB))
        dense.weight.copy_(torch.from_numpy(V))
        dense.bias.copy_(torch.from_numpy(VB))
    layers = [conv] + ([nn.ReLU()] if relu else []) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense]
    return nn.Sequential(*layers).eval()


def pointwise_reference(x: np.ndarray, cls: int, relu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(A, dS/dA)`` of :func:`pointwise_net` for one channels-first image ``x`` (3, H, W)."""
    z = np.einsum("oc,chw->ohw", PW.astype(np.float64), x) + PB[:, None, None]
    a = np.maximum(z, 0) if relu else z
    hw = x.shape[1] * x.shape[2]
    g = np.broadcast_to(V[cls].astype(np.float64)[:, None, None] / hw, a.shape).copy()
    return a, g


def dot_image(h: int = 12, w: int = 16, at: tuple[int, int] = (4, 11)) -> np.ndarray:
    """A dark (0.1) RGB image with one bright (1.0) pixel at ``at``."""
    img = np.full((h, w, 3), 0.1, np.float32)
    img[at] = 1.0
    return img


def dot_detector() -> nn.Sequential:
    """conv 3x3 (valid) on channel 0: centre weight 1, the 8 neighbours 0.05; then ReLU.
    It fires most where the window is centred on the bright pixel."""
    conv = nn.Conv2d(3, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 0.05
        conv.weight[0, 0, 1, 1] = 1.0
    return nn.Sequential(conv, nn.ReLU()).eval()
