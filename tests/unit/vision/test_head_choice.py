"""`model.head: auto` picks the per-position Gaussian for aligned parts and the bank for textures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.config import ModelSettings
from vision.head_choice import ALIGNED_BELOW, choose_head, resolve_head
from vision.inspector import Inspector
from vision.train import build_model_files, model_config

SIZE = 64


def _aligned_parts(count: int, seed: int = 0) -> np.ndarray:
    """The same part at the same place in every frame, with sensor noise."""
    rng = np.random.default_rng(seed)
    part = np.full((SIZE, SIZE, 3), 40, np.uint8)
    cv2.rectangle(part, (10, 14), (54, 50), (200, 180, 60), -1)
    cv2.circle(part, (32, 32), 9, (30, 30, 220), -1)
    cv2.line(part, (0, 58), (63, 58), (255, 255, 255), 2)
    noise = rng.normal(0, 4, (count, SIZE, SIZE, 3))
    return np.clip(part[None] + noise, 0, 255).astype(np.uint8)


def _texture(count: int, seed: int = 0) -> np.ndarray:
    """Crops at random places of one large random texture: every position sees everything."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3)).astype(np.uint8), (0, 0), 2)
    corners = rng.integers(0, 512 - SIZE, (count, 2))
    return np.stack([big[y : y + SIZE, x : x + SIZE] for y, x in corners])


@pytest.mark.parametrize(("images", "head"), [(_aligned_parts(16), "gaussian"), (_texture(16), "bank")])
def test_auto_picks_the_head_that_fits_how_aligned_the_parts_are(images, head) -> None:
    choice = choose_head(images, ModelSettings(image_size=SIZE))
    assert choice.head == head
    assert (choice.alignment < ALIGNED_BELOW) == (head == "gaussian")
    assert f"{choice.alignment:.3f}" in choice.reason


def test_a_named_head_is_kept_and_auto_must_be_decided_before_a_model_is_built() -> None:
    settings, choice = resolve_head(ModelSettings(head="bank", image_size=SIZE), _aligned_parts(4))
    assert settings.head == "bank" and choice is None
    with pytest.raises(ValueError, match="head is auto"):
        model_config(ModelSettings(image_size=SIZE))


def test_the_built_file_names_the_head_auto_chose_and_why(tmp_path) -> None:
    path = build_model_files(
        list(_aligned_parts(12, seed=1)),
        tmp_path / "m.onnx",
        ModelSettings(image_size=SIZE),
        "t",
        progress=False,
    )
    metadata = Inspector(path).info.metadata
    assert metadata["edgeinspect.head"] == "gaussian"
    assert metadata["edgeinspect.head_choice"].startswith("auto: alignment ")
