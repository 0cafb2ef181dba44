"""Per-position standardisation of the patch-distance map, learned from good images.

Normal variation is not the same everywhere in the frame: border patches (lighting falls off, the
convolutions see padding) and, on aligned parts, the edges of components that move a little between parts
sit farther from the memory bank than flat board does, even on good parts. A raw max over the map then
scores good parts by their noisiest spot. Dividing each position's distance by the spread good parts
show there makes every position speak in the same units, and on aligned parts it turns the map
position-aware: a missing chip on calm board stands out even though bare board exists elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Floor on a position's spread, relative to the median spread: a position that happened to vary little
# in a few good images must not amplify sensor noise without bound.
MIN_RELATIVE_SPREAD = 0.5


class PositionNormalizer(nn.Module):
    """`distance * gain + offset` per patch position; the identity until `set_statistics` is called."""

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("gain", torch.ones(1, 1, *grid))
        self.register_buffer("offset", torch.zeros(1, 1, *grid))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor, strength: float = 1.0) -> None:
        """Store per-position distance mean and std [h, w] of good patches (not in the bank).

        `strength` in [0, 1] blends from the identity (0) to full standardisation (1)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be within [0, 1], got {strength}")
        if mean.shape != self.gain.shape[-2:] or std.shape != mean.shape:
            raise ValueError(
                f"statistics of shape {tuple(mean.shape)}/{tuple(std.shape)} do not fit the patch grid "
                f"{tuple(self.gain.shape[-2:])}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("position statistics must be finite")
        # A light 3x3 average: a few dozen images give noisy per-position estimates.
        mean = _smooth(mean.to(torch.float32))
        std = _smooth(std.to(torch.float32))
        typical_mean, typical_std = mean.median(), std.median().clamp_min(1e-6)
        std = std.clamp_min(MIN_RELATIVE_SPREAD * typical_std)
        # (d - mean) / std, rescaled to the typical spread and level so scores keep distance units.
        gain = typical_std / std
        offset = typical_mean - mean * gain
        self.gain.copy_((1.0 + strength * (gain - 1.0)).reshape(self.gain.shape))
        self.offset.copy_((strength * offset).reshape(self.offset.shape))

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        gain, offset = self.gain, self.offset
        if distances.shape[-2:] != gain.shape[-2:]:
            # Another input size than the model was fitted at: stretch the statistics onto its grid.
            size = tuple(distances.shape[-2:])
            gain = F.interpolate(gain, size=size, mode="bilinear", align_corners=False)
            offset = F.interpolate(offset, size=size, mode="bilinear", align_corners=False)
        return (distances * gain + offset).clamp_min(0.0)


def alignment_strength(patches: torch.Tensor, aligned: float = 0.7, stationary: float = 0.9) -> float:
    """How texture-like a product is, from good patches [images, positions, C]: 0 aligned part, 1 texture.

    On an aligned part each position shows the same thing in every image, so the variance across images
    at a position is a small share of all variance; on a texture every position sees everything. Only
    textures get standardised: on aligned parts the busiest positions are the components themselves,
    and damping them would hide exactly the missing-component defects.
    """
    ratio = alignment_ratio(patches)
    return min(1.0, max(0.0, (ratio - aligned) / (stationary - aligned)))


def alignment_ratio(patches: torch.Tensor) -> float:
    """Variance across images at a position as a share of all variance, from good patches [images,
    positions, C]: near 0 when every image shows the same thing at each position, near 1 on a texture."""
    if patches.ndim != 3 or patches.shape[0] < 2:
        raise ValueError(f"need patches [images >= 2, positions, C], got shape {tuple(patches.shape)}")
    within = patches.var(dim=0).mean()
    total = patches.reshape(-1, patches.shape[-1]).var(dim=0).mean().clamp_min(1e-12)
    return float(within / total)


def _smooth(grid: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(grid[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
