"""Refit the PatchCore memory bank on the (compressed) student's own features, keeping its factorization."""

from __future__ import annotations

import numpy as np
from torch import nn

from compression.layers import SVDLinear, TTLinear
from vision.train import BankForm


def same_form(layer: nn.Module) -> BankForm | None:
    """A function storing a dense bank layer as `layer` stores its bank (same method and rank), or None
    when `layer` is dense."""
    if isinstance(layer, SVDLinear):
        rank = layer.rank
        return lambda dense: SVDLinear.from_layer(dense, rank)
    if isinstance(layer, TTLinear):
        bond = layer.bond_dim
        return lambda dense: TTLinear.from_layer(dense, bond)
    return None


def refit_memory_bank(model: nn.Module, images: np.ndarray, seed: int = 0, progress: bool = True) -> None:
    """Refit the head (feature scaling, bank, position statistics; or a gaussian head's per-position
    statistics) as training does; re-factorize the bank.

    A factorized backbone's features differ from the teacher's; a bank of the student's own normal
    patches keeps 'normal' at distance ~0, which is what the threshold relies on. The bank's bias is
    synced to the projected entries so distances stay exact at the bank's rank, and the coarse search's
    line is fitted on a probe bank factorized alike (the position statistics on a dense one, as before)."""

    from vision.train import fit_head

    memory_bank = model.memory_bank
    if memory_bank is None:  # the gaussian head: refit its per-position statistics, nothing to factorize
        fit_head(model, images, seed, progress=progress)
        return
    form = same_form(memory_bank.similarity)
    dense = nn.Linear(memory_bank.dim, memory_bank.size, bias=True)
    memory_bank.similarity = dense
    # feature scaling too: fitted on the student's features
    fit_head(model, images, seed, progress=progress, bank_form=form)
    if form is not None:
        memory_bank.similarity = form(dense)
    memory_bank.sync_bias()
