"""Optional embedding extras: local colour statistics and a fitted per-channel (or whitening) scaler.

A nearest-neighbour distance weighs every channel alike, so the widest, loudest channels decide what is
"far". Deep blocks carry most of the width, yet the faults a line sees on flat surfaces (a faint stain, a
worn patch whose grain is gone, a tint shift) live in local colour and contrast, which pretrained deep
features barely encode. These helpers add a few explicit colour channels and rescale the embedding with
statistics of good patches; both are fixed buffers and functional ops (not `nn.Linear`), so the export
stays one graph and compression never mistakes them for learned layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vision.head_fit import FEATURE_NORMS, MIN_STD, WHITEN_SHRINKAGE, fit_scaler

FeatureNorm = Literal["none", "channel", "block", "whiten"]
# Local mean and standard deviation of each RGB channel.
COLOR_CHANNELS = 6


def local_color_stats(x: torch.Tensor, stride: int, window: int) -> torch.Tensor:
    """Per-cell mean and std of each channel of `x` [N, 3, H, W] -> [N, 6, H/stride, W/stride].

    `window` (odd, in cells) widens the neighbourhood each position summarises: a faint stain a few
    grey levels deep only rises above the grain when the grain is averaged over a larger area."""
    mean = F.avg_pool2d(x, stride)
    square = F.avg_pool2d(x * x, stride)
    if window > 1:
        mean = F.avg_pool2d(mean, window, stride=1, padding=window // 2, count_include_pad=False)
        square = F.avg_pool2d(square, window, stride=1, padding=window // 2, count_include_pad=False)
    std = (square - mean * mean).clamp_min(0.0).add(MIN_STD).sqrt()
    return torch.cat([mean, std], dim=1)


class FeatureScaler(nn.Module):
    """`(f - shift) * scale` per channel, or `(f - shift) @ transform` when whitening; identity until fit."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in FEATURE_NORMS:
            raise ValueError(f"unknown feature normalisation {mode!r}; choose one of {FEATURE_NORMS}")
        self.mode = mode
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("transform", torch.eye(dim) if mode == "whiten" else torch.ones(dim))

    @torch.no_grad()
    def reset(self) -> None:
        """Back to the identity map (before a refit on new features)."""
        self.shift.zero_()
        self.transform.copy_(
            torch.eye(self.shift.numel()) if self.mode == "whiten" else torch.ones_like(self.shift)
        )

    @torch.no_grad()
    def fit(
        self,
        patches: torch.Tensor,
        groups: Sequence[int],
        color_weight: float,
        shrinkage: float = WHITEN_SHRINKAGE,
    ) -> None:
        """Fit on good patches [M, C] with `vision.head_fit.fit_scaler` (the station's build fits the
        same way): `groups` are the tapped blocks' channel counts, `shrinkage` pulls the whitening
        covariance towards isotropic."""
        if patches.shape[1] != self.shift.numel():
            raise ValueError(
                f"patches of width {patches.shape[1]} do not fit a scaler of width {self.shift.numel()}"
            )
        shift, transform = fit_scaler(
            patches.detach().cpu().numpy(), groups, self.mode, color_weight, shrinkage=shrinkage
        )
        self.shift.copy_(torch.from_numpy(shift).to(torch.float32))
        self.transform.copy_(torch.from_numpy(transform).to(torch.float32))

    def apply_rows(self, patches: torch.Tensor) -> torch.Tensor:
        """The same map on rows [M, C] (training patches extracted before the fit)."""
        centred = patches - self.shift
        return centred @ self.transform if self.mode == "whiten" else centred * self.transform

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.mode == "whiten":
            # A 1x1 convolution with the shift folded into its bias: one fused op in ONNX Runtime
            # (an einsum exported as transposes + MatMul cost ~1.5 ms more per frame on 2 cores).
            weight = self.transform.T.reshape(self.transform.shape[1], -1, 1, 1)
            return F.conv2d(features, weight, bias=-(self.shift @ self.transform))
        centred = features - self.shift.reshape(1, -1, 1, 1)
        return centred * self.transform.reshape(1, -1, 1, 1)
