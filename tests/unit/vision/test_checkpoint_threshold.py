"""The .pt checkpoint keeps the dense model's own threshold when a compact model is deployed.

`edgeinspect compress` starts from that checkpoint and reuses its threshold as the baseline's, so a threshold
calibrated on the compact model's scores would be silently wrong there.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from vision.config import ModelSettings
from vision.data.synthetic import LineSimulator
from vision.export import META_THRESHOLD
from vision.models.checkpoint import read_checkpoint
from vision.train import build_model_files

pytestmark = pytest.mark.slow


class ScaledScores(nn.Module):
    """A stand-in 'compact' model: the dense one with every score tripled."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        anomaly_map, score = self.inner(images)
        return anomaly_map * 3.0, score * 3.0


def test_checkpoint_threshold_belongs_to_the_dense_model(tmp_path: Path) -> None:
    settings = ModelSettings(image_size=96, memory_bank_size=32, train_images=12)
    simulator = LineSimulator("bracket", seed=3, defect_rate=0.0, image_size=96)
    images = [simulator.next_part().image for _ in range(12)]
    out = build_model_files(
        images,
        tmp_path / "m.onnx",
        settings,
        "t",
        progress=False,
        compact=lambda dense, _: ScaledScores(dense),
    )
    deployed = float(next(p.value for p in onnx.load(str(out)).metadata_props if p.key == META_THRESHOLD))
    extra = read_checkpoint(out.with_suffix(".pt"))["extra"]
    assert extra["deployed_threshold"] == pytest.approx(deployed)
    assert extra["threshold"] == pytest.approx(deployed / 3.0, rel=1e-4)
