"""Greedy k-center coreset: the few patches that cover the normal feature space best.

Selection runs on a random projection (Johnson-Lindenstrauss) so its cost does not grow with the
embedding width, and on at most `max_candidates` patches (a random subset) so it stays about linear in
the bank size; the chosen rows are then taken at full width.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm import tqdm


@contextmanager
def _one_thread() -> Iterator[None]:
    # Thousands of small mat-vec products: thread start-up costs more than it saves on a busy box.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def greedy_coreset(
    features: torch.Tensor,
    size: int,
    projection_dim: int = 64,
    max_candidates: int = 60_000,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Indices of `size` rows of `features` [N, C] chosen farthest-first."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, C] matrix, got shape {tuple(features.shape)}")
    if size <= 0:
        raise ValueError(f"coreset size must be positive, got {size}")
    count, dim = features.shape
    if count <= size:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.arange(count)
    if count > max(max_candidates, size):
        candidates = torch.randperm(count, generator=generator)[: max(max_candidates, size)]
    points = features[candidates].to(torch.float32)
    if dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / projection_dim**0.5
        points = points @ projection
    squared_norms = (points * points).sum(dim=1)
    first = int(torch.randint(len(candidates), (1,), generator=generator))
    selected = torch.empty(size, dtype=torch.long)
    selected[0] = first
    nearest = torch.full_like(squared_norms, float("inf"))
    chosen = first
    with _one_thread():
        for step in tqdm(range(1, size), desc="coreset", disable=not progress, leave=False):
            distance = torch.addmv(squared_norms, points, points[chosen], alpha=-2.0).add_(
                squared_norms[chosen]
            )
            torch.minimum(nearest, distance, out=nearest)
            chosen = int(torch.argmax(nearest))
            selected[step] = chosen
    return candidates[selected]
