"""How good a (compressed) anomaly model is: image/pixel AUROC with labels, output fidelity without.

Fidelity (relative error of the anomaly map against the uncompressed model) is smooth and needs no
labels, so it drives per-layer sensitivity; AUROC is what the line cares about, so budgets and reports
use it whenever labelled images exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

BATCH_SIZE = 8


@torch.inference_mode()
def model_outputs(
    model: nn.Module, images: np.ndarray, batch_size: int = BATCH_SIZE
) -> tuple[np.ndarray, ...]:
    """(anomaly maps [N,H,W], scores [N]) of uint8 NHWC images through a PyTorch anomaly model."""
    maps, scores = [], []
    model.eval()
    for start in range(0, len(images), batch_size):
        anomaly_map, score = model(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])))
        maps.append(anomaly_map[:, 0].float().numpy())
        scores.append(score.float().numpy())
    return np.concatenate(maps), np.concatenate(scores)


def relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(output - reference) / max(np.linalg.norm(reference), 1e-12))


def auroc_metrics(
    scores: np.ndarray, maps: np.ndarray, labels: np.ndarray | None, masks: np.ndarray | None
) -> dict[str, float]:
    from vision import metrics

    result: dict[str, float] = {}
    if labels is not None and len(np.unique(labels)) == 2:
        result["image_auroc"] = float(metrics.image_auroc(labels, scores))
        if masks is not None and masks.any():
            result["pixel_auroc"] = float(metrics.pixel_auroc(masks, maps))
    return result


@dataclass
class Evaluator:
    """Fixed images (+ optional labels/masks) and the reference model's outputs on them."""

    images: np.ndarray
    reference_maps: np.ndarray
    reference_scores: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        reference: nn.Module,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> Evaluator:
        maps, scores = model_outputs(reference, images)
        return cls(images, maps, scores, labels, masks)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and len(np.unique(self.labels)) == 2

    @property
    def metric_name(self) -> str:
        return "image_auroc" if self.has_labels else "fidelity"

    def evaluate(self, model: nn.Module, with_auroc: bool = True) -> dict[str, float]:
        """`fidelity` = 1 - relative anomaly-map error; `image_auroc`/`pixel_auroc` when labelled."""
        maps, scores = model_outputs(model, self.images)
        result = {
            "map_error": relative_error(maps, self.reference_maps),
            "score_error": relative_error(scores, self.reference_scores),
        }
        result["fidelity"] = 1.0 - result["map_error"]
        if with_auroc:
            result.update(auroc_metrics(scores, maps, self.labels, self.masks))
        return result

    def reference_metric(self) -> float:
        if self.has_labels:
            return auroc_metrics(self.reference_scores, self.reference_maps, self.labels, None)["image_auroc"]
        return 1.0

    def drop(self, model: nn.Module) -> float:
        """Primary-metric drop against the reference (AUROC points as a 0-1 share, or map error)."""
        return self.reference_metric() - self.evaluate(model, with_auroc=self.has_labels)[self.metric_name]
