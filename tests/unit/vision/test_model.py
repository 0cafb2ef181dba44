"""The anomaly model: pretrained weights load by position, shapes hold, a defect scores above clean."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from vision.config import ModelSettings
from vision.models import (
    AnomalyModel,
    AnomalyModelConfig,
    create_classifier,
    greedy_coreset,
    load_checkpoint,
    rename_state_dict,
    save_checkpoint,
)
from vision.models.backbone import pretrained_weights_path
from vision.train import fit_model

IMAGENET_TABBY_CAT = 285


def make_part(rng: np.random.Generator, size: int = 64, defect: bool = False) -> np.ndarray:
    """A checkerboard part with sensor noise; a defect is a bright red blob in the upper right."""
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size, 3), 150, np.uint8)
    image[((xx // 8 + yy // 8) % 2) == 0] = (90, 110, 130)
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    if defect:
        cv2.circle(image, (size * 3 // 4, size // 4), size // 10, (250, 30, 30), -1)
    return image


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite2"])
def test_renamed_weights_load_strictly_and_classify_the_cat(backbone: str) -> None:
    classifier = create_classifier(backbone, pretrained=True)
    cat = cv2.resize(skimage.data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy((cat.astype(np.float32) / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert int(classifier(x).argmax()) == IMAGENET_TABBY_CAT


def test_lite2_weights_rename_onto_timm_shapes() -> None:
    import timm

    source = torch.load(pretrained_weights_path("efficientnet_lite2"), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite2", pretrained=False).state_dict()
    renamed = rename_state_dict(source, target)
    assert list(renamed) == list(target)
    assert next(iter(source)) == "_conv_stem.weight" and next(iter(renamed)) == "conv_stem.weight"


def test_rename_refuses_a_shape_mismatch() -> None:
    source = {"a": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="shape mismatch"):
        rename_state_dict(source, {"b": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="differ in length"):
        rename_state_dict(source, {})


def test_output_shapes_and_feature_map() -> None:
    model = AnomalyModel(AnomalyModelConfig(image_size=64, memory_bank_size=16), pretrained=False)
    images = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        anomaly_map, score = model(images)
        features = model.extract_features(images)
    assert anomaly_map.shape == (2, 1, 64, 96) and anomaly_map.dtype == torch.float32
    assert score.shape == (2,)
    assert features.shape == (2, model.embedding_dim, 8, 12)
    assert torch.allclose(score, anomaly_map.flatten(1).amax(dim=1))


def test_memory_bank_linear_matches_brute_force_distance() -> None:
    model = AnomalyModel(AnomalyModelConfig(image_size=64, memory_bank_size=32), pretrained=False)
    bank = torch.randn(32, model.embedding_dim)
    model.memory_bank.set_bank(bank)
    features = torch.randn(1, model.embedding_dim, 4, 5)
    distances = model.memory_bank(features)
    patches = features.permute(0, 2, 3, 1).reshape(-1, model.embedding_dim)
    expected = torch.cdist(patches, bank).min(dim=1).values.reshape(1, 1, 4, 5)
    assert torch.allclose(distances, expected, atol=1e-3)


def test_greedy_coreset_covers_separate_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = torch.cat([c + torch.randn(200, 2, generator=generator) for c in centres])
    chosen = greedy_coreset(points, 3, progress=False)
    assert sorted(int(i) // 200 for i in chosen) == [0, 1, 2]
    with pytest.raises(ValueError, match="non-empty"):
        greedy_coreset(torch.zeros(0, 2), 3, progress=False)


def test_defect_region_scores_higher_than_clean_and_checkpoint_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    settings = ModelSettings(image_size=64, memory_bank_size=64)
    model = fit_model([make_part(rng) for _ in range(6)], settings, progress=False)
    clean, defective = make_part(rng), make_part(rng, defect=True)
    with torch.no_grad():
        maps, scores = model(torch.from_numpy(np.stack([clean, defective])))
    assert scores[1] > 1.5 * scores[0]
    defect_map = maps[1, 0]
    assert defect_map[12:20, 44:52].mean() > 2 * defect_map[40:60, 4:24].mean()

    path = save_checkpoint(model, tmp_path / "model.pt", extra={"threshold": 1.0})
    restored = load_checkpoint(path)
    with torch.no_grad():
        _, restored_scores = restored(torch.from_numpy(np.stack([clean, defective])))
    assert torch.allclose(scores, restored_scores)


def test_fit_model_rejects_bad_images() -> None:
    settings = ModelSettings(image_size=64, memory_bank_size=16)
    with pytest.raises(ValueError, match="image 1: frame must be uint8"):
        fit_model(
            [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.float32)], settings, progress=False
        )
    with pytest.raises(ValueError, match="no images"):
        fit_model([], settings, progress=False)
