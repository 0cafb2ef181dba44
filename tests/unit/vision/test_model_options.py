"""Detector options as settings: k-NN distance, embedding scaling, colour channels; old files still load."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from vision.config import ModelSettings
from vision.inspector import Inspector
from vision.models import AnomalyModel, AnomalyModelConfig, MemoryBank, load_checkpoint, save_checkpoint
from vision.models.feature_norm import FeatureScaler, local_color_stats
from vision.train import build_model_files, fit_model, model_config

SIZE = 64


def _texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    noise = rng.normal(128, 40, (size // 4, size // 4, 3))
    return np.clip(np.kron(noise, np.ones((4, 4, 1))), 0, 255).astype(np.uint8)


def test_knn_distance_is_the_mean_over_the_k_nearest_entries() -> None:
    generator = torch.Generator().manual_seed(0)
    bank_rows = torch.randn(32, 8, generator=generator)
    features = torch.randn(2, 8, 3, 3, generator=generator)
    patches = features.permute(0, 2, 3, 1).reshape(-1, 8)
    exact = torch.cdist(patches, bank_rows).sort(dim=1).values
    for k in (1, 4):
        bank = MemoryBank(8, 32, knn=k)
        bank.set_bank(bank_rows)
        got = bank(features).permute(0, 2, 3, 1).reshape(-1)
        assert torch.allclose(got, exact[:, :k].mean(dim=1), atol=1e-4)
    with pytest.raises(ValueError, match="knn"):
        MemoryBank(8, 32, knn=33)


def test_channel_scaling_gives_unit_spread_and_whitening_decorrelates() -> None:
    generator = torch.Generator().manual_seed(1)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    patches = torch.randn(4000, 3, generator=generator) @ mixing.T + 5.0
    channel = FeatureScaler(3, "channel")
    channel.fit(patches, [3], color_weight=0.0)
    assert torch.allclose(channel.apply_rows(patches).std(dim=0), torch.ones(3), atol=1e-3)
    whiten = FeatureScaler(3, "whiten")
    whiten.fit(patches, [3], color_weight=0.0)
    before, after = torch.corrcoef(patches.T)[0, 1], torch.corrcoef(whiten.apply_rows(patches).T)[0, 1]
    assert after.abs() < 0.5 * before.abs()  # shrinkage keeps it from vanishing entirely
    # the map on rows and on [N, C, H, W] maps is the same function
    grid = patches[:8].reshape(2, 2, 2, 3).permute(0, 3, 1, 2)
    assert torch.allclose(whiten(grid).permute(0, 2, 3, 1).reshape(-1, 3), whiten.apply_rows(patches[:8]))
    with pytest.raises(ValueError, match="unknown feature normalisation"):
        FeatureScaler(3, "pca")


def test_colour_statistics_see_a_local_tint_and_a_local_blur() -> None:
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 32, 32, generator=generator)
    changed = image.clone()
    changed[:, 0, :8, :8] += 0.2  # a red tint in the top-left cell
    changed[:, :, 24:, 24:] = changed[:, :, 24:, 24:].mean()  # the grain of the bottom-right cell is gone
    before, after = local_color_stats(image, 8, 1), local_color_stats(changed, 8, 1)
    difference = (after - before).abs()
    assert difference[0, 0, 0, 0] == pytest.approx(0.2, abs=1e-5)  # red mean, top-left
    assert difference[0, 3:, 3, 3].min() > 0.2  # std of every channel, bottom-right
    assert difference[0, :, 1:3, 1:3].max() < 1e-6  # the cells in between are untouched


def test_settings_reach_the_model_config_and_bad_values_are_refused() -> None:
    settings = ModelSettings(
        head="bank",
        feature_blocks=(4, 0, 2),
        neighbourhood=3,
        smoothing_sigma=2.0,
        position_strength=0.5,
        knn=3,
        feature_norm="block",
        color_stats=2.0,
        color_window=3,
    )
    config = model_config(settings)
    assert config.feature_blocks == (0, 2, 4) and config.knn == 3 and config.feature_norm == "block"
    assert config.color_channels == 6 and config.position_strength == 0.5
    bad_values = ({"neighbourhood": 2}, {"feature_blocks": (1, 9)}, {"feature_norm": "pca"}, {"knn": 0})
    for bad in (*bad_values, {"whiten_shrinkage": 0.0}):
        with pytest.raises(ValidationError):
            ModelSettings(**bad)
    with pytest.raises(ValueError, match="color_window"):
        AnomalyModelConfig(color_window=2)


def test_a_checkpoint_written_before_the_options_loads_with_the_old_behaviour(tmp_path: Path) -> None:
    model = AnomalyModel(AnomalyModelConfig(image_size=SIZE, memory_bank_size=16), pretrained=False)
    path = save_checkpoint(model, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    for name in (
        "knn",
        "feature_norm",
        "color_stats",
        "color_window",
        "position_strength",
        "whiten_shrinkage",
    ):
        del payload["config"][name]
    torch.save(payload, path)
    restored = load_checkpoint(path)
    assert restored.feature_scaler is None and restored.memory_bank.knn == 1
    assert restored.embedding_dim == model.embedding_dim


def test_every_option_at_once_exports_and_onnx_matches_pytorch(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = [_texture(rng) for _ in range(12)]
    settings = ModelSettings(
        head="bank",
        image_size=SIZE,
        memory_bank_size=64,
        feature_blocks=(0, 1, 2, 4),
        neighbourhood=3,
        knn=3,
        feature_norm="whiten",
        color_stats=2.0,
        color_window=3,
        position_strength=1.0,
    )
    path = build_model_files(images, tmp_path / "m.onnx", settings, "options", progress=False)
    dense = load_checkpoint(path.with_suffix(".pt"))
    assert dense.embedding_dim == 16 + 24 + 40 + 112 + 6
    probe = _texture(rng)
    probe[20:40, 20:40, 0] = 250  # a red patch: the colour channels and the backbone both see it
    with torch.no_grad():
        scores = dense(torch.from_numpy(np.stack([images[0], probe])))[1]
    assert scores[1] > scores[0]
    result = Inspector(path).inspect(np.ascontiguousarray(probe[:, :, ::-1]))
    assert result.score == pytest.approx(float(scores[1]), rel=1e-3)


def test_colour_channels_raise_a_faint_tint_a_plain_model_hardly_sees() -> None:
    rng = np.random.default_rng(4)
    images = [_texture(rng) for _ in range(16)]
    probe = _texture(rng)
    tinted = probe.astype(np.int16)
    tinted[16:48, 16:48] += np.array([14, -10, -10], np.int16)  # a faint tint over a quarter of the part
    batch = torch.from_numpy(np.stack([probe, np.clip(tinted, 0, 255).astype(np.uint8)]))

    def lift(**options: float) -> float:
        # The head colour channels were designed for: unscaled embeddings (whitening would equalise the
        # colour channels' weight with the rest), nearest entry, sigma 4 (sigma 8 blurs a 64 px part flat).
        plain = {"feature_norm": "none", "knn": 1, "smoothing_sigma": 4.0}
        settings = ModelSettings(
            head="bank", neighbourhood=1, image_size=SIZE, memory_bank_size=128, **plain, **options
        )
        model = fit_model(images, settings, False)
        with torch.no_grad():
            clean, faint = model(batch)[1].tolist()
        return faint / clean

    assert lift(color_stats=3.0, color_window=3) > lift()


def test_refitting_the_head_refits_whitening_on_the_new_features() -> None:
    """A compressed student refits its head on its own features: the scaler must be refitted from the
    raw patches (not stacked on the teacher's fit), so refitting an unchanged model changes nothing."""
    from compression.bank import refit_memory_bank
    from vision.train import extract_patches, prepare_images

    rng = np.random.default_rng(3)
    images = [_texture(rng) for _ in range(6)]
    settings = ModelSettings(
        head="bank", neighbourhood=1, image_size=SIZE, memory_bank_size=32, feature_norm="whiten"
    )
    model = fit_model(images, settings, progress=False)
    prepared = prepare_images(images, SIZE)
    probe = torch.from_numpy(prepare_images([_texture(rng)], SIZE))
    before_score = model(probe)[1]
    transform = model.feature_scaler.transform.clone()
    refit_memory_bank(model, prepared, seed=settings.seed, progress=False)
    after_score = model(probe)[1]
    assert torch.allclose(model.feature_scaler.transform, transform, atol=1e-5)
    assert torch.allclose(after_score, before_score, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a different backbone (as compression makes): the scaler follows it
        first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.weight.mul_(2.0)
    refit_memory_bank(model, prepared, seed=settings.seed, progress=False)
    assert not torch.allclose(model.feature_scaler.transform, transform, atol=1e-3)
    raw = copy.deepcopy(model)
    raw.feature_scaler.reset()
    expected = FeatureScaler(model.embedding_dim, "whiten")
    expected.fit(extract_patches(raw, prepared, progress=False), model.backbone.channels, 0.0)
    assert torch.allclose(model.feature_scaler.transform, expected.transform, atol=1e-4)
