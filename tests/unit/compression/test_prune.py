"""Structured pruning of a real (pretrained) EfficientNet-Lite backbone's hidden channels."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from compression.budget import parse_budget
from compression.errors import BudgetError
from compression.prune import (
    CHANNEL_MULTIPLE,
    channel_importance,
    keep_hidden,
    kept_width,
    prunable_blocks,
    prune_hidden_channels,
)
from vision.config import ModelSettings
from vision.models import AnomalyModel
from vision.train import model_config

SIZE = 64


@pytest.fixture(scope="module")
def lite0() -> AnomalyModel:
    settings = ModelSettings(head="bank", neighbourhood=1, image_size=SIZE, memory_bank_size=16)
    return AnomalyModel(model_config(settings), pretrained=True).eval()


def _images(count: int, seed: int) -> np.ndarray:
    """Smooth shaded parts with a few edges: enough structure for the features to differ by channel."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
    images = []
    for _ in range(count):
        image = (ramp[None, :, None] * rng.uniform(0.3, 1.0) + rng.uniform(0, 60)).repeat(SIZE, 0)
        image = np.broadcast_to(image, (SIZE, SIZE, 3)).copy()
        x, y = rng.integers(8, SIZE - 24, 2)
        image[y : y + 16, x : x + 16] = rng.uniform(0, 255, 3)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


def _features(model: AnomalyModel, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.extract_features(torch.from_numpy(images))


def test_kept_width_rounds_to_whole_channel_groups() -> None:
    assert kept_width(96, 0.5) == 48
    assert kept_width(144, 0.35) == 48  # 50.4 -> 6 groups of 8
    assert kept_width(96, 0.01) == CHANNEL_MULTIPLE  # never below one group
    assert kept_width(20, 1.0) == 20  # never above what there is
    with pytest.raises(ValueError, match="must be in"):
        kept_width(96, 0.0)


def test_budget_channels_term() -> None:
    budget = parse_budget("channels=50%")
    assert budget.channels == 0.5 and not budget.factorizes
    both = parse_budget("channels=0.5,params=0.6")
    assert both.factorizes and both.describe() == "params=0.6,channels=0.5"
    with pytest.raises(BudgetError, match=r"channels=1\.5 must be a share"):
        parse_budget("channels=1.5")


def test_pruning_halves_every_block_and_keeps_the_feature_shapes(lite0: AnomalyModel) -> None:
    images = _images(6, seed=0)
    before = _features(lite0, images)
    student = copy.deepcopy(lite0)
    pruned = prune_hidden_channels(student, 0.5, images)
    assert pruned and [b.name for b in pruned] == [name for name, _ in prunable_blocks(student)]
    for block, (_, module) in zip(pruned, prunable_blocks(student), strict=True):
        assert block.kept == kept_width(block.hidden, 0.5) < block.hidden
        assert module.conv_pw.weight.shape[0] == module.conv_dw.weight.shape[0] == block.kept
        assert module.conv_pwl.weight.shape[1] == module.bn2.running_mean.shape[0] == block.kept
    after = _features(student, images)
    assert after.shape == before.shape  # the head reads the same widths
    params = sum(p.numel() for p in lite0.backbone.parameters())
    assert sum(p.numel() for p in student.backbone.parameters()) < 0.7 * params


def test_keeping_every_channel_changes_nothing(lite0: AnomalyModel) -> None:
    images = _images(4, seed=1)
    student = copy.deepcopy(lite0)
    prune_hidden_channels(student, 1.0, images)
    assert torch.equal(_features(student, images), _features(lite0, images))


def test_the_measured_channels_carry_more_of_the_features_than_the_rest(lite0: AnomalyModel) -> None:
    """Keeping the most important half changes the features far less than keeping the least important."""
    images = _images(6, seed=2)
    reference = _features(lite0, images)
    chosen = copy.deepcopy(lite0)
    prune_hidden_channels(chosen, 0.5, images)
    reversed_choice = copy.deepcopy(lite0)
    importance = channel_importance(reversed_choice, images)
    for name, block in prunable_blocks(reversed_choice):
        width = kept_width(block.conv_dw.out_channels, 0.5)
        least = torch.sort(torch.topk(-importance[name], width).indices).values
        keep_hidden(block, least)

    def error(model: AnomalyModel) -> float:
        return float(((_features(model, images) - reference) ** 2).mean() / (reference**2).mean())

    assert error(chosen) < 0.5 * error(reversed_choice)


def test_a_model_without_inverted_residual_blocks_is_refused(toy_model) -> None:
    with pytest.raises(ValueError, match="no inverted-residual blocks"):
        prune_hidden_channels(toy_model, 0.5, np.zeros((2, 32, 32, 3), np.uint8))
