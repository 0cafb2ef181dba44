"""Gaussian smoothing of the anomaly map as a fixed separable convolution.

Kept as buffers and functional convolutions (not `nn.Conv2d`) so compression never mistakes the blur
for a learned layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


class GaussianBlur(nn.Module):
    """Blurs a single-channel map; reflect padding keeps the edges from fading."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        kernel = gaussian_kernel_1d(sigma) if sigma > 0 else torch.ones(1)
        self.radius = (kernel.numel() - 1) // 2
        self.register_buffer("kernel_x", kernel.reshape(1, 1, 1, -1), persistent=False)
        self.register_buffer("kernel_y", kernel.reshape(1, 1, -1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return x
        x = F.pad(x, (self.radius, self.radius, self.radius, self.radius), mode="reflect")
        return F.conv2d(F.conv2d(x, self.kernel_x), self.kernel_y)
