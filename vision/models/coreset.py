"""Greedy k-center coreset on torch tensors: `vision.bank_fit.greedy_coreset` (numpy), the one selection
the plant's build and the station's share."""

from __future__ import annotations

import torch
from tqdm import tqdm

from vision.bank_fit import greedy_coreset as _greedy_coreset


def greedy_coreset(
    features: torch.Tensor,
    size: int,
    projection_dim: int = 64,
    max_candidates: int = 60_000,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Indices of `size` rows of `features` [N, C] chosen farthest-first."""
    with tqdm(total=size, desc="coreset", disable=not progress, leave=False) as bar:
        chosen = _greedy_coreset(
            features.detach().cpu().numpy(),
            size,
            projection_dim=projection_dim,
            max_candidates=max_candidates,
            seed=seed,
            progress=lambda _stage, done, _total: bar.update(done - bar.n),
        )
    return torch.from_numpy(chosen)
