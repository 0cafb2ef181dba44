"""Refit the PatchCore memory bank on the (compressed) student's own features, keeping its factorization."""

from __future__ import annotations

import numpy as np
from torch import nn

from compression.layers import SVDLinear, TTLinear


def refit_memory_bank(model: nn.Module, images: np.ndarray, seed: int = 0, progress: bool = True) -> None:
    """Refit the head (feature scaling, bank, position statistics) as training does; re-factorize the bank.

    A factorized backbone's features differ from the teacher's; a bank of the student's own normal
    patches keeps 'normal' at distance ~0, which is what the threshold relies on. The bank's bias is
    synced to the projected entries so distances stay exact at the bank's rank."""

    from vision.train import fit_head

    memory_bank = model.memory_bank
    current = memory_bank.similarity
    dense = nn.Linear(memory_bank.dim, memory_bank.size, bias=True)
    memory_bank.similarity = dense
    fit_head(model, images, seed, progress=progress)  # feature scaling too: fitted on the student's features
    if isinstance(current, SVDLinear):
        memory_bank.similarity = SVDLinear.from_layer(dense, current.rank)
    elif isinstance(current, TTLinear):
        memory_bank.similarity = TTLinear.from_layer(dense, current.bond_dim)
    memory_bank.sync_bias()
