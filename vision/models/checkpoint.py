"""PyTorch checkpoint beside each ONNX file: the config plus the state dict, what compression starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vision.models.anomaly import AnomalyModel, AnomalyModelConfig

CHECKPOINT_FORMAT = "edgeinspect.anomaly_model/1"


def save_checkpoint(model: AnomalyModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `{format, config, state_dict, extra}`; `extra` holds e.g. the calibrated threshold."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.as_dict(),
        "state_dict": model.state_dict(),
        "extra": dict(extra or {}),
    }
    torch.save(payload, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint payload, checked for our format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an EdgeInspect anomaly-model checkpoint ({CHECKPOINT_FORMAT})")
    return payload


def load_checkpoint(path: str | Path) -> AnomalyModel:
    """Rebuild the model from its config and load every tensor strictly (no pretrained weights needed)."""
    payload = read_checkpoint(path)
    model = AnomalyModel(AnomalyModelConfig.from_dict(payload["config"]), pretrained=False)
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval()
