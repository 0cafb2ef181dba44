"""The anomaly map's way from the patch grid to the frame: bilinear upsampling, then a Gaussian blur.

Both are linear and separable, so together they are one [out, in] matrix per axis, and the map is
`rows @ grid @ cols^T`: two small matrix products on the 32 x 32 grid instead of a resize and two 256 x
256 products on the full-size map (the same map to float rounding, a tenth of the arithmetic). Kept as
plain matrix products (not `nn.Conv2d` or `nn.Linear`) so compression never mistakes them for a learned
layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def reflect_blur_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """[size, size] matrix M with M @ v = `kernel` convolved with v under reflect padding."""
    radius = (kernel.numel() - 1) // 2
    if radius >= size:
        raise ValueError(f"a blur of radius {radius} px needs maps wider than that, got {size} px")
    index = torch.arange(size).unsqueeze(1) + torch.arange(-radius, radius + 1).unsqueeze(0)
    index = index.abs()  # reflect at the start: -1 -> 1
    index = torch.where(index > size - 1, 2 * (size - 1) - index, index)  # and at the end: n -> n-2
    matrix = torch.zeros(size, size)
    matrix.scatter_add_(1, index, kernel.expand(size, -1).contiguous())
    return matrix


def bilinear_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """[out_size, in_size] matrix U with U @ v = `F.interpolate(v, out_size, mode="linear",
    align_corners=False)`: half-pixel centres, sources clamped at the edges."""
    scale = in_size / out_size
    source = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    low = source.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)
    weight_high = source - low.to(torch.float64)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - weight_high, accumulate=True)
    matrix.index_put_((rows, high), weight_high, accumulate=True)
    return matrix.to(torch.float32)


class UpsampleBlur(nn.Module):
    """Upsamples a single-channel map (bilinear) and blurs it; reflect padding keeps the edges from fading.

    Applied as two matrix products (rows, then columns) rather than a resize and a convolution: ONNX
    Runtime runs a 1-channel, 49-tap convolution through im2col, which cost 2.4 ms a frame at sigma 8 on
    2 cores; as GEMMs the same map costs a fraction of that."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        kernel = gaussian_kernel_1d(sigma) if sigma > 0 else torch.ones(1)
        self.radius = (kernel.numel() - 1) // 2
        self.register_buffer("kernel", kernel, persistent=False)
        self._matrices: dict[tuple[int, int], torch.Tensor] = {}

    def _matrix(self, out_size: int, in_size: int) -> torch.Tensor:
        """Blur after upsampling, B @ U, for one axis."""
        key = (out_size, in_size)
        if key not in self._matrices:
            blur = reflect_blur_matrix(out_size, self.kernel) if self.radius else torch.eye(out_size)
            upsample = bilinear_matrix(out_size, in_size) if out_size != in_size else torch.eye(out_size)
            self._matrices[key] = blur @ upsample
        return self._matrices[key]

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """`x` [..., h, w] upsampled to `size` (default: kept) and blurred."""
        # Map sizes are fixed per model (the export traces them as constants).
        height, width = int(x.shape[-2]), int(x.shape[-1])
        out_height, out_width = (int(size[0]), int(size[1])) if size is not None else (height, width)
        if self.radius == 0 and (out_height, out_width) == (height, width):
            return x
        rows = self._matrix(out_height, height)
        if (out_height, height) == (out_width, width):  # square: one matrix in the file
            return (rows @ (rows @ x).transpose(-1, -2)).transpose(-1, -2)  # R X R^T = (R (R X)^T)^T
        return rows @ x @ self._matrix(out_width, width).T
