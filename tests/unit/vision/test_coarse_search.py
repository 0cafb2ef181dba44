"""Coarse-to-fine bank search: refined patches are exact, the rest are corrected upper bounds; it is a
setting that fails at start-up when it cannot fit, and the exported file scores as PyTorch does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from compression.layers import SVDLinear, TTLinear
from vision.config import ModelSettings
from vision.inspector import Inspector
from vision.models import AnomalyModelConfig, MemoryBank, load_checkpoint
from vision.train import build_model_files, model_config

DIM, ENTRIES = 8, 64


def _bank(coarse: int, refined: int, knn: int = 2) -> MemoryBank:
    generator = torch.Generator().manual_seed(0)
    bank = MemoryBank(DIM, ENTRIES, knn=knn, coarse_entries=coarse, refined_patches=refined)
    bank.set_bank(torch.randn(ENTRIES, DIM, generator=generator))
    return bank


def _features(outlier: float = 0.0) -> torch.Tensor:
    features = torch.randn(2, DIM, 4, 4, generator=torch.Generator().manual_seed(1))
    features[1, :, 2, 3] += outlier  # one patch far from every entry
    return features


def _patches(features: torch.Tensor) -> torch.Tensor:
    return features.permute(0, 2, 3, 1).reshape(features.shape[0], -1, DIM)


def test_coarse_distance_is_an_upper_bound_and_refining_every_patch_is_exact() -> None:
    exact_bank, coarse_bank = _bank(0, 0), _bank(16, 16)
    features = _features()
    patches = _patches(features)
    assert (coarse_bank.coarse_distances(patches) >= exact_bank.exact_distances(patches) - 1e-5).all()
    with torch.no_grad():
        coarse_bank.coarse_offset.fill_(100.0)  # whatever the correction, every patch is refined
        assert torch.allclose(coarse_bank(features), exact_bank(features), atol=1e-5)


def test_the_most_anomalous_patches_are_refined_and_the_rest_follow_the_fitted_line() -> None:
    bank = _bank(16, 2)
    features = _features(outlier=25.0)
    patches = _patches(features)
    coarse, exact = bank.coarse_distances(patches), bank.exact_distances(patches)
    bank.fit_coarse_correction(coarse, 0.5 * coarse + 1.0)
    assert float(bank.coarse_scale) == pytest.approx(0.5) and float(bank.coarse_offset) == pytest.approx(1.0)
    got = bank(features).reshape(2, -1)
    corrected = 0.5 * coarse + 1.0
    for image in range(2):
        refined = corrected[image].topk(2).indices
        assert torch.allclose(got[image, refined], exact[image, refined], atol=1e-5)
        rest = torch.ones(16, dtype=torch.bool)
        rest[refined] = False
        assert torch.allclose(got[image, rest], corrected[image, rest], atol=1e-5)
    assert int(got[1].argmax()) == 2 * 4 + 3  # the outlier is refined and stays the image's maximum


def test_a_per_position_normalisation_decides_which_patches_are_refined() -> None:
    bank = _bank(16, 1)
    features = _features()
    weight = torch.ones(1, 1, 4, 4)
    weight[..., 0, 0] = 1000.0  # this position is the most anomalous once normalised, whatever its distance
    got = bank(features, lambda d: d * weight).reshape(2, -1)
    exact = bank.exact_distances(_patches(features))
    assert torch.allclose(got[:, 0], exact[:, 0] * 1000.0, rtol=1e-5)


def test_an_svd_bank_searches_coarse_first_as_its_dense_bank_does() -> None:
    dense, factorized = _bank(16, 2), _bank(16, 2)
    factorized.similarity = SVDLinear.from_layer(factorized.similarity, DIM)  # full rank: the same bank
    factorized.sync_bias()
    assert factorized.searches_coarse_first
    features, patches = _features(outlier=25.0), _patches(_features(outlier=25.0))
    assert torch.allclose(factorized.coarse_distances(patches), dense.coarse_distances(patches), atol=1e-4)
    assert torch.allclose(factorized(features), dense(features), atol=1e-4)
    truncated = _bank(16, 2)
    truncated.similarity = SVDLinear.from_layer(truncated.similarity, 4)
    truncated.sync_bias()
    with torch.no_grad():  # the coarse stage reads the truncated bank's first entries, not the dense ones
        first = truncated.similarity(patches)[..., :16]
    assert torch.allclose(truncated.similarity.leading_outputs(patches, 16), first, atol=1e-5)


def test_a_tensor_train_bank_searches_every_entry() -> None:
    bank = _bank(16, 2)
    bank.similarity = TTLinear.from_layer(bank.similarity, 4)
    bank.sync_bias()
    assert not bank.searches_coarse_first
    features = _features()
    assert torch.allclose(bank(features).reshape(2, -1), bank.exact_distances(_patches(features)))


def test_bad_search_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="coarse_entries"):
        MemoryBank(DIM, ENTRIES, knn=3, coarse_entries=ENTRIES)
    with pytest.raises(ValueError, match="refined_patches"):
        MemoryBank(DIM, ENTRIES, coarse_entries=16, refined_patches=0)
    with pytest.raises(ValidationError, match="coarse_entries"):
        ModelSettings(head="bank", knn=3, coarse_entries=2)
    with pytest.raises(ValueError, match="refined_patches"):
        AnomalyModelConfig(image_size=64, memory_bank_size=64, coarse_entries=16, refined_patches=65)


def test_the_search_is_exact_where_coarse_to_fine_would_skip_nothing() -> None:
    coarse = model_config(ModelSettings(head="bank", memory_bank_size=2048))  # the shipped default
    assert (coarse.coarse_entries, coarse.refined_patches) == (256, 256)
    for settings in (
        ModelSettings(head="bank", memory_bank_size=256),  # a bank no larger than the coarse entries
        ModelSettings(head="bank", image_size=128),  # 16 x 16 = 256 patches: every one would be refined
        ModelSettings(head="bank", coarse_entries=0),
    ):
        config = model_config(settings)
        assert (config.coarse_entries, config.refined_patches) == (0, 0)


def _texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    noise = rng.normal(128, 40, (size // 4, size // 4, 3))
    return np.clip(np.kron(noise, np.ones((4, 4, 1))), 0, 255).astype(np.uint8)


def test_a_coarse_search_model_is_fitted_saved_and_exported_like_any_other(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images = [_texture(rng) for _ in range(16)]
    settings = ModelSettings(
        head="bank",
        neighbourhood=1,
        image_size=64,
        memory_bank_size=128,
        coarse_entries=16,
        refined_patches=8,
    )
    path = build_model_files(images, tmp_path / "m.onnx", settings, "coarse", progress=False)
    model = load_checkpoint(path.with_suffix(".pt"))
    bank = model.memory_bank
    assert bank.searches_coarse_first and (bank.coarse_entries, bank.refined_patches) == (16, 8)
    # fitted on held-out good patches: coarse distances over-estimate, so the line pulls them down
    assert float(bank.coarse_scale) != 1.0 or float(bank.coarse_offset) != 0.0
    probe = _texture(rng)
    probe[20:40, 20:40] = 250  # a bright blotch
    with torch.no_grad():
        scores = model(torch.from_numpy(np.stack([images[0], probe])))[1]
    assert scores[1] > scores[0]
    result = Inspector(path).inspect(np.ascontiguousarray(probe[:, :, ::-1]))
    assert result.score == pytest.approx(float(scores[1]), rel=1e-3)


def test_a_compressed_bank_fits_its_coarse_line_on_its_own_distances() -> None:
    """A low-rank bank's distances run larger than the dense bank's; its line must map its own coarse
    distances onto its own exact ones, or every unrefined patch is pulled below the refined ones."""
    from compression.bank import refit_memory_bank
    from vision.train import extract_patches, fit_model, prepare_images

    rng = np.random.default_rng(7)
    images = [_texture(rng) for _ in range(16)]
    settings = ModelSettings(
        head="bank",
        neighbourhood=1,
        image_size=64,
        memory_bank_size=128,
        coarse_entries=16,
        refined_patches=8,
    )
    model = fit_model(images, settings, progress=False)
    dense_line = (float(model.memory_bank.coarse_scale), float(model.memory_bank.coarse_offset))
    model.memory_bank.similarity = SVDLinear.from_layer(model.memory_bank.similarity, 2)
    refit_memory_bank(model, prepare_images(images, 64), seed=settings.seed, progress=False)
    bank = model.memory_bank
    assert bank.searches_coarse_first and isinstance(bank.similarity, SVDLinear)
    unseen = extract_patches(model, prepare_images([_texture(rng) for _ in range(8)], 64), progress=False)
    with torch.no_grad():
        coarse, exact = bank.coarse_distances(unseen[None]), bank.exact_distances(unseen[None])
    own = coarse * bank.coarse_scale + bank.coarse_offset
    dense = coarse * dense_line[0] + dense_line[1]
    assert abs(float((own - exact).mean())) < abs(float((dense - exact).mean()))
