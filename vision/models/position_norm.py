"""Per-position standardisation of the patch-distance map, learned from good images.

Normal variation is not the same everywhere in the frame: border patches (lighting falls off, the
convolutions see padding) and, on aligned parts, the edges of components that move a little between parts
sit farther from the memory bank than flat board does, even on good parts. A raw max over the map then
scores good parts by their noisiest spot. Dividing each position's distance by the spread good parts
show there makes every position speak in the same units, and on aligned parts it turns the map
position-aware: a missing chip on calm board stands out even though bare board exists elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision import bank_fit, head_fit
from vision.bank_fit import position_statistics


class PositionNormalizer(nn.Module):
    """`distance * gain + offset` per patch position; the identity until `set_statistics` is called."""

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("gain", torch.ones(1, 1, *grid))
        self.register_buffer("offset", torch.zeros(1, 1, *grid))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor, strength: float = 1.0) -> None:
        """Store per-position distance mean and std [h, w] of good patches (not in the bank), through
        `vision.bank_fit.position_statistics`; `strength` in [0, 1] blends from the identity (0) to full
        standardisation (1)."""
        if mean.shape != self.gain.shape[-2:] or std.shape != mean.shape:
            raise ValueError(
                f"statistics of shape {tuple(mean.shape)}/{tuple(std.shape)} do not fit the patch grid "
                f"{tuple(self.gain.shape[-2:])}"
            )
        gain, offset = position_statistics(mean.cpu().numpy(), std.cpu().numpy(), strength)
        self.set_gain_offset(gain, offset)

    @torch.no_grad()
    def set_gain_offset(self, gain: np.ndarray, offset: np.ndarray) -> None:
        """Store fitted (gain, offset) [h, w] (`vision.bank_fit`)."""
        self.gain.copy_(torch.from_numpy(gain).reshape(self.gain.shape))
        self.offset.copy_(torch.from_numpy(offset).reshape(self.offset.shape))

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        gain, offset = self.gain, self.offset
        if distances.shape[-2:] != gain.shape[-2:]:
            # Another input size than the model was fitted at: stretch the statistics onto its grid.
            size = tuple(distances.shape[-2:])
            gain = F.interpolate(gain, size=size, mode="bilinear", align_corners=False)
            offset = F.interpolate(offset, size=size, mode="bilinear", align_corners=False)
        return (distances * gain + offset).clamp_min(0.0)


def alignment_strength(patches: torch.Tensor, aligned: float = 0.7, stationary: float = 0.9) -> float:
    """`vision.bank_fit.alignment_strength` of good patches [images, positions, C] (a torch tensor)."""
    return bank_fit.alignment_strength(patches.detach().cpu().numpy(), aligned, stationary)


def alignment_ratio(patches: torch.Tensor) -> float:
    """`vision.head_fit.alignment_ratio` of good patches [images, positions, C] (a torch tensor)."""
    return head_fit.alignment_ratio(patches.detach().cpu().numpy())
