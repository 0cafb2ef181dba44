"""Refit the PatchCore memory bank on the (healed) student's own features, keeping its factorization."""

from __future__ import annotations

import numpy as np
from torch import nn

from compression.layers import SVDLinear, TTLinear


def refit_memory_bank(model: nn.Module, images: np.ndarray, seed: int = 0, progress: bool = True) -> None:
    """Rebuild the bank with the same coreset procedure as training, then re-factorize it at its rank.

    After healing, the student's features are close to but not equal to the teacher's; a bank of the
    student's own normal patches keeps 'normal' at distance ~0, which is what the threshold relies on."""
    import torch

    from vision.models import greedy_coreset
    from vision.train import extract_patches

    memory_bank = model.memory_bank
    current = memory_bank.similarity
    size, dim = current.out_features, current.in_features
    patches = extract_patches(model, images, progress=progress)
    chosen = greedy_coreset(patches, size, seed=seed, progress=progress)
    bank = patches[chosen]
    if bank.shape[0] < size:
        bank = bank[torch.arange(size) % bank.shape[0]]
    dense = nn.Linear(dim, size, bias=True)
    memory_bank.similarity = dense
    memory_bank.set_bank(bank)
    if isinstance(current, SVDLinear):
        memory_bank.similarity = SVDLinear.from_layer(dense, current.rank)
    elif isinstance(current, TTLinear):
        memory_bank.similarity = TTLinear.from_layer(dense, current.bond_dim)
