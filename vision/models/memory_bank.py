"""Nearest-neighbour distance to a bank of normal patch embeddings, written as matrix products.

The bank lives in an `nn.Linear` (weight = bank rows, bias = -|m|^2/2), so
`|f - m|^2 = |f|^2 - 2 (f.m - |m|^2/2)` turns the search into `Linear` + `max`: cheap on ONNX Runtime and a
plain layer that compression can factorize like any other.

Coarse-to-fine search (`coarse_entries` > 0) avoids the full [patches x bank] product, the largest cost
per frame: every patch is first compared with the bank's first `coarse_entries` rows only (the bank is
stored in greedy coreset order, so any prefix is itself a coreset that covers the normal patches
coarsely), then the `refined_patches` patches that look most anomalous are compared with the whole bank.
The refined patches (where the image score and the defect outline come from) get their exact distance;
the others keep the coarse distance mapped onto the exact scale by a line fitted on held-out good patches
(the coarse distance is an upper bound of the exact one). A factorized bank searches coarsely too when its
layer can compute its first outputs alone (`LeadingOutputs`: a truncated SVD can, a tensor train cannot).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from vision.bank_fit import coarse_line

Normalize = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class LeadingOutputs(Protocol):
    """A factorized linear layer that computes its first `count` outputs without the others (what the
    coarse stage needs from a compressed bank: the similarities to its first entries only)."""

    def leading_outputs(self, x: torch.Tensor, count: int) -> torch.Tensor: ...


def leading_similarities(layer: nn.Module, patches: torch.Tensor, rows: int) -> torch.Tensor:
    """`layer(patches)[..., :rows]` without computing the other outputs."""
    if isinstance(layer, nn.Linear):
        return patches @ layer.weight[:rows].T + layer.bias[:rows]
    if isinstance(layer, LeadingOutputs):
        return layer.leading_outputs(patches, rows)
    raise TypeError(f"{type(layer).__name__} cannot compute its first outputs alone")


def _identity(distances: torch.Tensor) -> torch.Tensor:
    return distances


class MemoryBank(nn.Module):
    """Distance of every patch embedding to its nearest bank entry (or the mean over its `knn` nearest).

    k > 1 softens a patch that happens to sit on one stray bank entry: a lone outlier the coreset kept
    (coresets keep outliers by design) no longer makes an unusual patch look normal."""

    def __init__(
        self, dim: int, size: int, knn: int = 1, coarse_entries: int = 0, refined_patches: int = 0
    ) -> None:
        super().__init__()
        if not 1 <= knn <= size:
            raise ValueError(f"knn must be within [1, bank size {size}], got {knn}")
        if coarse_entries and not knn <= coarse_entries < size:
            raise ValueError(
                f"coarse_entries must be 0 (exact search) or within [knn {knn}, bank size {size}), "
                f"got {coarse_entries}"
            )
        if coarse_entries and refined_patches < 1:
            raise ValueError(f"coarse search needs refined_patches >= 1, got {refined_patches}")
        self.dim = dim
        self.knn = knn
        self.coarse_entries = coarse_entries
        self.refined_patches = refined_patches
        self.similarity = nn.Linear(dim, size, bias=True)
        nn.init.zeros_(self.similarity.weight)
        nn.init.zeros_(self.similarity.bias)
        if coarse_entries:
            # exact ~ coarse * scale + offset on good patches; the identity until fitted.
            self.register_buffer("coarse_scale", torch.ones(()))
            self.register_buffer("coarse_offset", torch.zeros(()))

    @property
    def size(self) -> int:
        return self.similarity.out_features

    @property
    def searches_coarse_first(self) -> bool:
        """Coarse-to-fine needs the similarities to the bank's first entries alone: a dense bank or a
        truncated-SVD one gives them; a tensor-train bank searches every entry."""
        return self.coarse_entries > 0 and isinstance(self.similarity, nn.Linear | LeadingOutputs)

    @torch.no_grad()
    def set_bank(self, bank: torch.Tensor) -> None:
        """Store `bank` [size, dim] (greedy coreset order); the bias carries each entry's squared norm."""
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

    @torch.no_grad()
    def fit_coarse_correction(self, coarse: torch.Tensor, exact: torch.Tensor) -> None:
        """Fit `exact ~ coarse * scale + offset` on good patches the bank has not seen
        (`vision.bank_fit.coarse_line`)."""
        if not self.coarse_entries:
            raise ValueError("this bank searches exactly (coarse_entries=0): nothing to correct")
        self.set_coarse_line(coarse_line(coarse.cpu().numpy(), exact.cpu().numpy()))

    @torch.no_grad()
    def set_coarse_line(self, line: tuple[float, float] | None) -> None:
        """Store a fitted (scale, offset); None keeps the coarse distance as it is (an upper bound)."""
        if line is not None:
            self.coarse_scale.fill_(line[0])
            self.coarse_offset.fill_(line[1])

    def _nearest(self, norms: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        """[..., entries] similarities and [...] squared norms -> [...] k-NN distance."""
        if self.knn == 1:
            return (norms - 2.0 * similarity.amax(dim=-1)).clamp_min(0.0).sqrt()
        nearest = similarity.topk(self.knn, dim=-1).values
        return (norms.unsqueeze(-1) - 2.0 * nearest).clamp_min(0.0).sqrt().mean(dim=-1)

    def exact_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, P, C] patches -> [N, P] distance over the whole bank."""
        return self._nearest((patches * patches).sum(dim=-1), self.similarity(patches))

    def coarse_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, P, C] patches -> [N, P] distance over the bank's first `coarse_entries` rows (uncorrected)."""
        similarity = leading_similarities(self.similarity, patches, self.coarse_entries)
        return self._nearest((patches * patches).sum(dim=-1), similarity)

    def forward(self, features: torch.Tensor, normalize: Normalize | None = None) -> torch.Tensor:
        """[N, C, h, w] embeddings -> [N, 1, h, w] distance to the bank, passed through `normalize`
        (a per-position map [N, 1, h, w] -> [N, 1, h, w], monotone at each position: it decides which
        patches look most anomalous, so they are the ones refined)."""
        normalize = normalize or _identity
        n, c, h, w = features.shape
        patches = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
        if not self.searches_coarse_first:
            return normalize(self.exact_distances(patches).reshape(n, 1, h, w))
        coarse = self.coarse_distances(patches) * self.coarse_scale + self.coarse_offset
        chosen = normalize(coarse.reshape(n, 1, h, w)).reshape(n, h * w).topk(self.refined_patches, dim=1)
        index = chosen.indices
        picked = patches.gather(1, index.unsqueeze(2).expand(-1, -1, c))
        refined = coarse.scatter(1, index, self.exact_distances(picked))
        return normalize(refined.reshape(n, 1, h, w))
