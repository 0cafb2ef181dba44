"""Nearest-neighbour distance to a bank of normal patch embeddings, written as one matrix product.

The bank lives in an `nn.Linear` (weight = bank rows, bias = -|m|^2/2), so
`|f - m|^2 = |f|^2 - 2 (f.m - |m|^2/2)` turns the search into `Linear` + `max`: cheap on ONNX Runtime and a
plain layer that compression can factorize like any other.
"""

from __future__ import annotations

import torch
from torch import nn


class MemoryBank(nn.Module):
    """Distance of every patch embedding to its nearest bank entry (or the mean over its `knn` nearest).

    k > 1 softens a patch that happens to sit on one stray bank entry: a lone outlier the coreset kept
    (coresets keep outliers by design) no longer makes an unusual patch look normal."""

    def __init__(self, dim: int, size: int, knn: int = 1) -> None:
        super().__init__()
        if not 1 <= knn <= size:
            raise ValueError(f"knn must be within [1, bank size {size}], got {knn}")
        self.dim = dim
        self.knn = knn
        self.similarity = nn.Linear(dim, size, bias=True)
        nn.init.zeros_(self.similarity.weight)
        nn.init.zeros_(self.similarity.bias)

    @property
    def size(self) -> int:
        return self.similarity.out_features

    @torch.no_grad()
    def set_bank(self, bank: torch.Tensor) -> None:
        """Store `bank` [size, dim]; the bias term carries each entry's squared norm."""
        if bank.shape != self.similarity.weight.shape:
            raise ValueError(
                f"bank shape {tuple(bank.shape)} does not fit {tuple(self.similarity.weight.shape)}"
            )
        self.similarity.weight.copy_(bank)
        self.similarity.bias.copy_(-0.5 * (bank * bank).sum(dim=1))

    @torch.no_grad()
    def sync_bias(self) -> None:
        """Reset each entry's bias to -|m|^2/2 of the entry the similarity layer really holds now.

        After the bank's matrix is factorized (a low-rank projection of every entry) the old bias would
        add |m|^2 - |m_projected|^2 to every distance, penalizing exactly the entries the projection
        changed most; with the synced bias the layer computes exact distances to the projected bank."""
        layer = self.similarity
        zero = torch.zeros(1, self.dim, dtype=torch.float32)
        entries = layer(torch.eye(self.dim)) - layer(zero)  # row i: how input axis i enters each entry
        biases = [
            p for name, p in layer.named_parameters() if name.endswith("bias") and p.shape == (self.size,)
        ]
        if not biases:
            raise ValueError(f"{type(layer).__name__} has no per-entry bias to sync")
        biases[-1].copy_(-0.5 * (entries * entries).sum(dim=0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] embeddings -> [N, 1, h, w] Euclidean distance to the nearest bank entry."""
        n, c, h, w = features.shape
        patches = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
        similarity = self.similarity(patches)
        norms = (patches * patches).sum(dim=2)
        if self.knn == 1:
            squared = norms - 2.0 * similarity.amax(dim=2)
            return squared.clamp_min(0.0).sqrt().reshape(n, 1, h, w)
        nearest = similarity.topk(self.knn, dim=2).values
        squared = norms.unsqueeze(2) - 2.0 * nearest
        return squared.clamp_min(0.0).sqrt().mean(dim=2).reshape(n, 1, h, w)
