"""Per-position map standardisation: calm positions speak up, busy ones calm down, aligned parts untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vision.config import ModelSettings
from vision.models import AnomalyModel, AnomalyModelConfig, load_checkpoint, save_checkpoint
from vision.models.position_norm import PositionNormalizer, alignment_strength
from vision.train import fit_model


def test_standardisation_equalises_positions_and_strength_blends_to_identity() -> None:
    normalizer = PositionNormalizer((4, 4))
    mean = torch.full((4, 4), 10.0)
    std = torch.ones(4, 4)
    std[:, 0] = 4.0  # a noisy border column
    normalizer.set_statistics(mean, std, strength=1.0)
    distances = torch.full((1, 1, 4, 4), 14.0)  # 4 above the mean everywhere
    out = normalizer(distances)[0, 0]
    assert out[:, 0].max() < out[:, 3].min()  # the same excess counts less where good parts vary more

    normalizer.set_statistics(mean, std, strength=0.0)
    assert torch.allclose(normalizer(distances), distances)
    with pytest.raises(ValueError, match="do not fit"):
        normalizer.set_statistics(torch.zeros(3, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="strength"):
        normalizer.set_statistics(mean, std, strength=2.0)


def test_alignment_strength_tells_aligned_parts_from_textures() -> None:
    generator = torch.Generator().manual_seed(0)
    layout = torch.randn(1, 64, 8, generator=generator) * 3.0
    aligned = layout + 0.3 * torch.randn(20, 64, 8, generator=generator)
    texture = torch.randn(20, 64, 8, generator=generator)
    assert alignment_strength(aligned) == 0.0
    assert alignment_strength(texture) == 1.0
    with pytest.raises(ValueError, match="images >= 2"):
        alignment_strength(torch.zeros(1, 4, 2))


def _texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    noise = rng.normal(128, 40, (size // 4, size // 4, 1))
    return np.clip(np.kron(noise, np.ones((4, 4, 3))), 0, 255).astype(np.uint8)


def test_fit_sets_statistics_on_textures_and_checkpoints_keep_them(tmp_path) -> None:
    rng = np.random.default_rng(1)
    model = fit_model(
        [_texture(rng) for _ in range(10)],
        ModelSettings(head="bank", neighbourhood=1, image_size=64, memory_bank_size=64),
        False,
    )
    assert model.position_norm is not None
    assert not torch.allclose(model.position_norm.gain, torch.ones_like(model.position_norm.gain))
    restored = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"))
    image = torch.from_numpy(_texture(rng)[None])
    with torch.no_grad():
        assert torch.allclose(model(image)[1], restored(image)[1])


def test_checkpoint_from_before_position_normalisation_still_loads(tmp_path) -> None:
    legacy = AnomalyModel(
        AnomalyModelConfig(image_size=64, memory_bank_size=16, neighbourhood=3, position_normalization=False),
        pretrained=False,
    )
    path = save_checkpoint(legacy, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["position_normalization"]  # written by the earlier code
    torch.save(payload, path)
    restored = load_checkpoint(path)
    assert restored.position_norm is None and restored.config.neighbourhood == 3
