"""Plain result types shared by the inspector, evaluation and the edge runtime (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    """An anomalous region in frame pixels (x, y is the top-left corner)."""

    x: int
    y: int
    width: int
    height: int
    score: float

    def as_dict(self) -> dict[str, float | int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height, "score": self.score}


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a deployed model; travels in every alert so a consumer knows what decided."""

    name: str
    version: str
    sha256: str
    threshold: float
    input_size: int
    metadata: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass
class InspectionResult:
    """What the model says about one frame. `anomaly_map` has the frame's height and width."""

    score: float
    threshold: float
    is_defect: bool
    boxes: list[Box]
    anomaly_map: np.ndarray
    inference_ms: float
