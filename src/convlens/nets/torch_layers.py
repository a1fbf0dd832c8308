"""PyTorch layers with TensorFlow's "same" padding (the extra pixel goes bottom/right).

Keras pads "same" asymmetrically when the total padding is odd; ``nn.Conv2d``
pads symmetrically.  These layers pad per call, from the real input size, so a
network ported from Keras/TensorFlow (EfficientNet-Lite0, the toy nets with
``padding=same``) computes exactly what the original does.  Each is still one
leaf module, so it is one stage; ``convlens_padding = "same"`` tells the capture
adapter how it pads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlens.ops import resolve_padding

__all__ = ["Conv2dSame", "MaxPool2dSame", "AvgPool2dSame"]


def _pad_for(x: torch.Tensor, kernel, stride, dilation=(1, 1)) -> tuple[int, int, int, int]:
    (pt, pb), (pl, pr) = resolve_padding("same", tuple(x.shape[-2:]), kernel, stride, dilation)
    return (pl, pr, pt, pb)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding."""

    convlens_padding = "same"

    def __init__(self, *args, **kwargs):
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = _pad_for(x, self.kernel_size, self.stride, self.dilation)
        if any(pad):
            x = F.pad(x, pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def convlens_recompute(self):
        """This layer's ``forward`` as a function of the input and weight copies, with the
        hyperparameters of now (convlens computes the stage again on first read)."""
        if self.training:
            return None
        kernel, stride, dilation, groups = self.kernel_size, self.stride, self.dilation, self.groups

        def run(x: torch.Tensor, w: dict) -> torch.Tensor:
            pad = _pad_for(x, kernel, stride, dilation)
            if any(pad):
                x = F.pad(x, pad)
            return F.conv2d(x, w["weight"], w.get("bias"), stride, 0, dilation, groups)

        return run


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TensorFlow "same" padding (pads with -inf)."""

    convlens_padding = "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = _pad_for(x, self.kernel_size, self.stride)
        if any(pad):
            x = F.pad(x, pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class AvgPool2dSame(nn.AvgPool2d):
    """``nn.AvgPool2d`` with TensorFlow "same" padding (padding not counted, as in Keras)."""

    convlens_padding = "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = _pad_for(x, self.kernel_size, self.stride)
        if not any(pad):
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        total = F.avg_pool2d(F.pad(x, pad), self.kernel_size, self.stride, divisor_override=1)
        ones = F.pad(torch.ones_like(x[:1, :1]), pad)
        count = F.avg_pool2d(ones, self.kernel_size, self.stride, divisor_override=1)
        return total / count
