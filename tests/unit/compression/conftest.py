"""A small PatchCore-shaped model (uint8 NHWC -> map, score) so the generic compression parts are tested
fast, without the pretrained backbone; it uses the real vision MemoryBank."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression.layer_bench import LatencyCache, shaped_module
from vision.models import MemoryBank


@dataclass(frozen=True)
class ToyConfig:
    image_size: int = 32


class ToyAnomalyModel(nn.Module):
    def __init__(self, bank_size: int = 64) -> None:
        super().__init__()
        self.config = ToyConfig()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(64, 16, 1, groups=4),  # grouped: must stay dense
            nn.ReLU(),
            nn.Conv2d(16, 96, 1),
            nn.ReLU(),
            nn.Conv2d(96, 48, 1),
        )
        self.memory_bank = MemoryBank(48, bank_size)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.backbone(x)

    def score_features(
        self, features: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        distances = self.memory_bank(features)
        anomaly_map = F.interpolate(distances, size=size, mode="bilinear", align_corners=False)
        return anomaly_map, anomaly_map.flatten(1).amax(dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_features(self.extract_features(images), (images.shape[1], images.shape[2]))


def toy_images(count: int, seed: int, defect: bool = False) -> np.ndarray:
    """Smooth gradients (good) and the same with a bright square (defect)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, 32)[None, :, None]
    images = []
    for _ in range(count):
        image = (rng.uniform(60, 120) + 80 * grid * rng.uniform(0.5, 1.0, size=(1, 1, 3))).repeat(32, 0)
        image = image + rng.normal(0, 3, size=image.shape)
        if defect:
            y, x = rng.integers(4, 24, size=2)
            image[y : y + 6, x : x + 6] = 250
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.fixture(scope="module")
def toy_model() -> ToyAnomalyModel:
    torch.manual_seed(0)
    model = ToyAnomalyModel().eval()
    with torch.no_grad():
        good = torch.from_numpy(toy_images(16, seed=1))
        patches = model.extract_features(good).permute(0, 2, 3, 1).reshape(-1, 48)
        model.memory_bank.set_bank(patches[torch.randperm(len(patches))[:64]])
    return model


def params_proportional_timings(
    layer: nn.Module,
    input_shape: object,
    options: list[tuple[str, int]],
    threads: int = 2,
    runs: int = 15,
    warmup: int = 2,
    cache: LatencyCache | None = None,
) -> dict[tuple[str, int], float]:
    """`time_options` with measurements injected: each option costs its parameter count in microseconds,
    so `auto` decides the same way on every machine (real microsecond timings of a 32 px toy layer swing
    enough to drop options and move the reachable floor; test_auto.py tests `time_options` itself)."""
    sizes = {option: sum(p.numel() for p in shaped_module(layer, *option).parameters()) for option in options}
    return {option: 1e-3 * size for option, size in sizes.items()}


@pytest.fixture
def deterministic_layer_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compression pipeline times layers with `params_proportional_timings` instead of ONNX Runtime."""
    monkeypatch.setattr("compression.pipeline.time_options", params_proportional_timings)
