"""A Gaussian of good patches at every position (PaDiM's head), for parts that sit in a fixture.

The memory bank asks "does this patch look like any good patch anywhere?"; on an aligned part (a solar
cell, a machined part in its nest) that misses a defect which looks like good structure found elsewhere, e.g.
a dark crack that resembles a busbar. This head asks "does it look like what good parts show *here*?":
each position keeps the mean and the inverse covariance of its good patches, and a patch's distance is its
Mahalanobis distance there. Chosen on real DEV images (ELPV mono cells: image AUROC 0.947 vs the bank's
0.921; benchmarks/real/).

The embedding is first projected onto its `components` leading principal directions (fitted on all good
patches), so each position stores a components x components factor instead of C x C: 64 of 176 directions
keep 1024 positions at 16 MiB. Distances use a factor L of each precision matrix (d = |L^T (x - mean)|),
two batched matrix products in the exported graph: its Cholesky factor, or with a `rank` only the
position's `rank` strongest precision directions (components x rank: 128 directions at rank 32 are the same
16 MiB and more accurate on real DEV parts; `vision.head_fit.fit_position_gaussian`).
"""

from __future__ import annotations

import torch
from torch import nn

from vision.head_fit import COVARIANCE_SHRINKAGE, fit_position_gaussian


class PositionGaussian(nn.Module):
    """[N, C, h, w] embeddings -> [N, 1, h, w] Mahalanobis distance to each position's good-patch Gaussian."""

    def __init__(
        self, dim: int, components: int, grid: tuple[int, int], shift: int = 0, rank: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= shift <= 2:
            raise ValueError(f"shift must be 0, 1 or 2 grid cells, got {shift}")
        # A patch may match the Gaussian of a position up to `shift` cells away: parts that sit a few
        # pixels off from one frame to the next are not defects.
        self.shift = shift
        if not 1 <= components <= dim:
            raise ValueError(f"components must be within [1, {dim}] (the embedding width), got {components}")
        if not 0 <= rank <= components:
            raise ValueError(f"rank must be within [0, {components}] (0 = all components), got {rank}")
        positions = grid[0] * grid[1]
        self.grid = grid
        self.rank = rank  # 0 or `components`: the whole Cholesky factor (`fit_position_gaussian`)
        self.register_buffer("basis", torch.eye(dim)[:, :components].clone())
        self.register_buffer("mean", torch.zeros(positions, 1, components))
        kept = self.rank or components
        self.register_buffer("factor", torch.eye(components)[:, :kept].repeat(positions, 1, 1))

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])

    @torch.no_grad()
    def fit(self, patches: torch.Tensor, shrinkage: float = COVARIANCE_SHRINKAGE) -> None:
        """Fit on good patch embeddings [N, P, C] (N images, P = h*w positions, in grid order) with
        `vision.head_fit.fit_position_gaussian`, the station's build's fit too."""
        _, positions, dim = patches.shape
        if positions != self.mean.shape[0] or dim != self.basis.shape[0]:
            raise ValueError(
                f"patches of shape {tuple(patches.shape)} do not fit a {self.grid} grid of width "
                f"{self.basis.shape[0]}"
            )
        basis, mean, factor = fit_position_gaussian(
            patches.detach().cpu().numpy(), self.components, shrinkage=shrinkage, rank=self.rank
        )
        self.basis.copy_(torch.from_numpy(basis).to(torch.float32))
        self.mean.copy_(torch.from_numpy(mean[:, None, :]).to(torch.float32))
        self.factor.copy_(torch.from_numpy(factor).to(torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h, w = features.shape[-2:]
        if (h, w) != self.grid:
            raise ValueError(f"features on a {h}x{w} grid; this head was fitted on {self.grid}")
        if self.shift:
            s = self.shift
            padded = torch.nn.functional.pad(features, (s, s, s, s), mode="replicate")
            best: torch.Tensor | None = None
            for dy in range(2 * s + 1):
                for dx in range(2 * s + 1):
                    d = self._distance(padded[:, :, dy : dy + h, dx : dx + w])
                    best = d if best is None else torch.minimum(best, d)
            assert best is not None
            return best
        return self._distance(features)

    def _distance(self, features: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        patches = features.permute(2, 3, 0, 1).reshape(h * w, n, c)  # [P, N, C]
        centred = patches @ self.basis - self.mean  # [P, N, K]
        whitened = centred @ self.factor  # [P, N, R]: (x - mean)^T L
        distance = whitened.pow(2).sum(dim=-1).clamp_min(0.0).sqrt()  # [P, N]
        return distance.transpose(0, 1).reshape(n, 1, h, w)
