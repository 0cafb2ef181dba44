"""PyTorch modules of the anomaly model (training side only; the edge box runs the ONNX export)."""

from vision.models.anomaly import AnomalyModel, AnomalyModelConfig
from vision.models.backbone import FeatureBackbone, create_classifier, rename_state_dict
from vision.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from vision.models.coreset import greedy_coreset
from vision.models.memory_bank import MemoryBank
from vision.models.position_norm import PositionNormalizer, alignment_strength

__all__ = [
    "AnomalyModel",
    "AnomalyModelConfig",
    "FeatureBackbone",
    "MemoryBank",
    "PositionNormalizer",
    "alignment_strength",
    "create_classifier",
    "greedy_coreset",
    "load_checkpoint",
    "read_checkpoint",
    "rename_state_dict",
    "save_checkpoint",
]
