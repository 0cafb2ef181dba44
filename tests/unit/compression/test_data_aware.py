"""Data-aware factorization: whitened SVD, layer input statistics, exact distances to a projected bank,
and the pasted-patch images that healing and its label-free check use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compression.activations import input_covariances
from compression.augment import paste_patches
from compression.factorize import apply_ranks
from compression.layers import SVDLinear
from vision.models import MemoryBank


def _correlated_inputs(n: int = 2000, dim: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator) * torch.logspace(0, -2, dim)[:, None]
    return torch.randn(n, dim, generator=generator) @ mixing


def test_whitened_svd_is_exact_at_full_rank_and_beats_plain_svd_on_the_data() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(32, 48)
    x = _correlated_inputs()
    covariance = x.T.double() @ x.double() / len(x)
    full = SVDLinear.from_layer(layer, 32, input_covariance=covariance)
    assert torch.allclose(full(x), layer(x), atol=1e-4)
    with torch.no_grad():
        aware = SVDLinear.from_layer(layer, 6, input_covariance=covariance)
        aware_error = (aware(x) - layer(x)).pow(2).mean()
        plain_error = (SVDLinear.from_layer(layer, 6)(x) - layer(x)).pow(2).mean()
    assert aware_error < 0.5 * plain_error


def test_whitened_svd_rejects_a_covariance_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="does not fit 32 inputs"):
        SVDLinear.from_layer(nn.Linear(32, 8), 4, input_covariance=torch.eye(16))


def test_input_covariances_are_the_second_moment_of_what_the_layer_sees(toy_model) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    seen: list[torch.Tensor] = []
    layer = toy_model.backbone[8]
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    covariances = input_covariances(toy_model, ["backbone.8"], images, batch_size=3, progress=False)
    handle.remove()
    rows = torch.cat([s.permute(0, 2, 3, 1).reshape(-1, s.shape[1]) for s in seen]).double()
    assert torch.allclose(covariances["backbone.8"], rows.T @ rows / len(rows), rtol=1e-6, atol=1e-9)


def test_a_factorized_bank_gives_exact_distances_to_its_projected_entries() -> None:
    torch.manual_seed(0)
    bank_rows = _correlated_inputs(64, 24, seed=1)
    bank = MemoryBank(24, 64)
    bank.set_bank(bank_rows)
    model = nn.Module()
    model.memory_bank = bank
    compressed = apply_ranks(model, {"memory_bank.similarity": 6}, {"memory_bank.similarity": "svd"})
    factors = compressed.memory_bank.similarity
    projected = factors.second.weight @ factors.first.weight
    features = torch.randn(2, 24, 3, 3)
    patches = features.permute(0, 2, 3, 1).reshape(-1, 24)
    expected = torch.cdist(patches, projected).amin(dim=1)
    got = compressed.memory_bank(features).permute(0, 2, 3, 1).reshape(-1)
    assert torch.allclose(got, expected, atol=1e-3)
    # without the sync the stale bias shifts every distance by the entry's lost energy
    stale = compressed.memory_bank.similarity
    stale.second.bias.data = bank.similarity.bias.detach().clone()
    assert not torch.allclose(compressed.memory_bank(features).reshape(-1), expected, atol=1e-3)


def test_pasted_patches_change_only_the_masked_pixels() -> None:
    rng = np.random.default_rng(0)
    images = np.stack([np.full((64, 64, 3), value, dtype=np.uint8) for value in (20, 120, 220)])
    pasted, masks = paste_patches(images, rng)
    assert pasted.shape == images.shape and masks.shape == images.shape[:3]
    assert masks.any(axis=(1, 2)).all(), "every image gets at least one patch"
    assert np.array_equal(pasted[~masks], images[~masks])
    assert (pasted != images).any()
    with pytest.raises(ValueError, match="uint8 images"):
        paste_patches(images[0], rng)
