"""A Gaussian of good patches at every position (PaDiM's head), for parts that sit in a fixture.

The memory bank asks "does this patch look like any good patch anywhere?"; on an aligned part (a solar
cell, a machined part in its nest) that misses a defect which looks like good structure found elsewhere, e.g.
a dark crack that resembles a busbar. This head asks "does it look like what good parts show *here*?":
each position keeps the mean and the inverse covariance of its good patches, and a patch's distance is its
Mahalanobis distance there. Chosen on real DEV images (ELPV mono cells: image AUROC 0.947 vs the bank's
0.921; benchmarks/real/).

The embedding is first projected onto its `components` leading principal directions (fitted on all good
patches), so each position stores a components x components factor instead of C x C: 64 of 176 directions
keep 1024 positions at 16 MiB. Distances use the Cholesky factor L of each precision matrix
(d = |L^T (x - mean)|), two batched matrix products in the exported graph.
"""

from __future__ import annotations

import torch
from torch import nn

# Share of the average variance added to every covariance: 60-300 good images estimate the smallest
# eigenvalues of a 64-wide covariance badly, and their inverse would blow sensor noise up.
COVARIANCE_SHRINKAGE = 0.01


class PositionGaussian(nn.Module):
    """[N, C, h, w] embeddings -> [N, 1, h, w] Mahalanobis distance to each position's good-patch Gaussian."""

    def __init__(self, dim: int, components: int, grid: tuple[int, int], shift: int = 0) -> None:
        super().__init__()
        if not 0 <= shift <= 2:
            raise ValueError(f"shift must be 0, 1 or 2 grid cells, got {shift}")
        # A patch may match the Gaussian of a position up to `shift` cells away: parts that sit a few
        # pixels off from one frame to the next are not defects.
        self.shift = shift
        if not 1 <= components <= dim:
            raise ValueError(f"components must be within [1, {dim}] (the embedding width), got {components}")
        positions = grid[0] * grid[1]
        self.grid = grid
        self.register_buffer("basis", torch.eye(dim)[:, :components].clone())
        self.register_buffer("mean", torch.zeros(positions, 1, components))
        self.register_buffer("factor", torch.eye(components).repeat(positions, 1, 1))

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])

    @torch.no_grad()
    def fit(self, patches: torch.Tensor, shrinkage: float = COVARIANCE_SHRINKAGE) -> None:
        """Fit on good patch embeddings [N, P, C] (N images, P = h*w positions, in grid order)."""
        n, positions, dim = patches.shape
        if positions != self.mean.shape[0] or dim != self.basis.shape[0]:
            raise ValueError(
                f"patches of shape {tuple(patches.shape)} do not fit a {self.grid} grid of width "
                f"{self.basis.shape[0]}"
            )
        if n < 2:
            raise ValueError(f"a per-position covariance needs at least 2 good images, got {n}")
        data = patches.to(torch.float64)
        flat = data.reshape(-1, dim)
        centred = flat - flat.mean(dim=0)
        covariance = centred.T @ centred / max(1, len(flat) - 1)
        _, vectors = torch.linalg.eigh(covariance)
        basis = vectors[:, -self.components :].flip(1)  # leading directions first
        projected = data @ basis  # [N, P, K]
        mean = projected.mean(dim=0)  # [P, K]
        residual = (projected - mean).transpose(0, 1)  # [P, N, K]
        per_position = residual.transpose(1, 2) @ residual / (n - 1)  # [P, K, K]
        level = per_position.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
        eye = torch.eye(self.components, dtype=torch.float64)
        per_position = per_position + shrinkage * level[:, None, None] * eye
        # Through its Cholesky factor: the batched LU inverse fails on wide (>= ~150) batches of these.
        precision = torch.cholesky_inverse(torch.linalg.cholesky(per_position))
        factor = torch.linalg.cholesky(precision)  # precision = L L^T
        self.basis.copy_(basis.to(torch.float32))
        self.mean.copy_(mean[:, None, :].to(torch.float32))
        self.factor.copy_(factor.to(torch.float32))

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
        whitened = centred @ self.factor  # [P, N, K]: (x - mean)^T L
        distance = whitened.pow(2).sum(dim=-1).clamp_min(0.0).sqrt()  # [P, N]
        return distance.transpose(0, 1).reshape(n, 1, h, w)
