"""Refit the PatchCore memory bank on the (compressed) student's own features, keeping its factorization."""

from __future__ import annotations

import numpy as np
from torch import nn

from compression.layers import SVDLinear, TTLinear


def refit_memory_bank(model: nn.Module, images: np.ndarray, seed: int = 0, progress: bool = True) -> None:
    """Rebuild the bank (and position statistics) with the training procedure, then re-factorize it.

    A factorized backbone's features differ from the teacher's; a bank of the student's own normal
    patches keeps 'normal' at distance ~0, which is what the threshold relies on. The bank's bias is
    synced to the projected entries so distances stay exact at the bank's rank."""

    from vision.train import coreset_bank, extract_patches, fit_position_statistics

    memory_bank = model.memory_bank
    current = memory_bank.similarity
    size, dim = memory_bank.size, memory_bank.dim
    patches = extract_patches(model, images, progress=progress)
    dense = nn.Linear(dim, size, bias=True)
    memory_bank.similarity = dense
    memory_bank.set_bank(coreset_bank(patches, size, seed, progress))
    if isinstance(current, SVDLinear):
        memory_bank.similarity = SVDLinear.from_layer(dense, current.rank)
    elif isinstance(current, TTLinear):
        memory_bank.similarity = TTLinear.from_layer(dense, current.bond_dim)
    memory_bank.sync_bias()
    if getattr(model, "position_norm", None) is not None:
        fit_position_statistics(model, patches, len(images), seed, progress=progress)
