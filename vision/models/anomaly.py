"""PatchCore-style anomaly model: pretrained patch features, distance to a bank of normal patches.

One module from uint8 pixels to (anomaly map, score) so the exported ONNX file carries its own
preprocessing and the edge box only resizes frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vision.head_fit import gaussian_shape
from vision.models.backbone import INPUT_MEAN, INPUT_STD, FeatureBackbone
from vision.models.feature_norm import COLOR_CHANNELS, FEATURE_NORMS, FeatureScaler, local_color_stats
from vision.models.memory_bank import MemoryBank
from vision.models.position_gaussian import PositionGaussian
from vision.models.position_norm import PositionNormalizer
from vision.models.smoothing import UpsampleBlur

# Contrast (std of pixel values in [0, 1]) of a typical photograph; normalised images are scaled to it.
TYPICAL_STD = 0.25
MIN_CONTRAST = 0.02


# What a checkpoint that lacks a field was built with (so older checkpoints still load strictly).
LEGACY_DEFAULTS: dict[str, Any] = {
    "position_normalization": False,
    "position_strength": None,
    "knn": 1,
    "feature_norm": "none",
    "color_stats": 0.0,
    "color_window": 1,
    "whiten_shrinkage": 0.1,
    "coarse_entries": 0,
    "refined_patches": 0,
    "head": "bank",
    "gaussian_components": 64,
    "gaussian_shift": 0,
    "gaussian_rank": 0,
}
HEADS = ("bank", "gaussian")


@dataclass(frozen=True)
class AnomalyModelConfig:
    """Everything needed to rebuild the module before loading its state dict."""

    backbone: str = "efficientnet_lite0"
    image_size: int = 256
    feature_blocks: tuple[int, ...] = (1, 2, 4)
    patch_stride: int = 8
    memory_bank_size: int = 2048
    # 1 = no neighbourhood averaging: at stride 8 a 3x3 average diluted thin cracks and missing resistors
    # below the normal variation (measured: pcb image AUROC 0.95 -> 0.999 at 32 training images).
    neighbourhood: int = 1
    smoothing_sigma: float = 4.0
    normalize_illumination: bool = True
    position_normalization: bool = True
    # None: standardise by how texture-like the good patches are (`alignment_strength`); else fixed.
    position_strength: float | None = None
    knn: int = 1  # distance = mean over the k nearest bank entries
    feature_norm: str = "none"  # none | channel | block | whiten (fitted on good patches)
    color_stats: float = 0.0  # weight of the local colour mean/std channels; 0 = not added
    color_window: int = 1  # cells (of patch_stride px) each colour statistic summarises
    whiten_shrinkage: float = 0.1  # feature_norm=whiten: share of isotropic variance mixed in
    coarse_entries: int = 0  # bank rows every patch is searched against first; 0 = exact search
    refined_patches: int = 0  # coarse search: patches then searched against the whole bank
    # bank: distance to the nearest good patches anywhere; gaussian: Mahalanobis distance to the good
    # patches at the same position (`vision.models.position_gaussian`), for parts in a fixture.
    head: str = "bank"
    gaussian_components: int = 64  # head=gaussian: principal directions each position's Gaussian keeps
    gaussian_shift: int = 0  # head=gaussian: grid cells a patch may sit from its position and still match
    # head=gaussian: precision directions each position keeps (its strongest); 0 = all `gaussian_components`
    gaussian_rank: int = 0

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "gaussian" and self.coarse_entries:
            raise ValueError("coarse_entries searches a memory bank; the gaussian head has none (use 0)")
        if self.gaussian_rank < 0:
            raise ValueError(f"gaussian_rank must be >= 0 (0 = all components), got {self.gaussian_rank}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {self.feature_norm!r}")
        if self.position_strength is not None and not 0.0 <= self.position_strength <= 1.0:
            raise ValueError(f"position_strength must be within [0, 1], got {self.position_strength}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd number >= 1, got {self.neighbourhood}")
        if self.color_window < 1 or self.color_window % 2 == 0:
            raise ValueError(f"color_window must be an odd number >= 1, got {self.color_window}")
        if not 0.0 < self.whiten_shrinkage <= 1.0:
            raise ValueError(f"whiten_shrinkage must be within (0, 1], got {self.whiten_shrinkage}")
        if self.color_stats < 0.0:
            raise ValueError(f"color_stats must be >= 0, got {self.color_stats}")
        # coarse_entries against knn and the bank size is MemoryBank's check; the patch grid is known here.
        patches = (self.image_size // self.patch_stride) ** 2
        if self.coarse_entries and not 1 <= self.refined_patches <= patches:
            raise ValueError(
                f"refined_patches must be within [1, {patches} patches per image], got {self.refined_patches}"
            )

    @property
    def color_channels(self) -> int:
        return COLOR_CHANNELS if self.color_stats > 0.0 else 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnomalyModelConfig:
        values = dict(data)
        for name, legacy in LEGACY_DEFAULTS.items():
            values.setdefault(name, legacy)  # checkpoints written before the field existed
        values["feature_blocks"] = tuple(values.get("feature_blocks", cls.feature_blocks))
        return cls(**values)


class AnomalyModel(nn.Module):
    """uint8 NHWC RGB [N,H,W,3] -> (anomaly_map [N,1,H,W] float32, score [N] float32)."""

    def __init__(self, config: AnomalyModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.backbone = FeatureBackbone(config.backbone, config.feature_blocks, pretrained=pretrained)
        self.feature_stride = config.patch_stride
        self.embedding_dim = sum(self.backbone.channels) + config.color_channels
        self.feature_scaler: FeatureScaler | None = None
        if config.feature_norm != "none" or config.color_channels:
            self.feature_scaler = FeatureScaler(self.embedding_dim, config.feature_norm)
        grid = (config.image_size // config.patch_stride, config.image_size // config.patch_stride)
        self.memory_bank: MemoryBank | None = None
        self.position_gaussian: PositionGaussian | None = None
        if config.head == "gaussian":
            components, rank = gaussian_shape(
                self.embedding_dim, config.gaussian_components, config.gaussian_rank
            )
            self.position_gaussian = PositionGaussian(
                self.embedding_dim, components, grid, shift=config.gaussian_shift, rank=rank
            )
        else:
            self.memory_bank = MemoryBank(
                self.embedding_dim,
                config.memory_bank_size,
                knn=config.knn,
                coarse_entries=config.coarse_entries,
                refined_patches=config.refined_patches,
            )
        self.blur = UpsampleBlur(config.smoothing_sigma)
        self.position_norm: PositionNormalizer | None = None
        if config.position_normalization and self.memory_bank is not None:  # a Gaussian is per position
            self.position_norm = PositionNormalizer(grid)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC RGB -> normalised float NCHW, as the backbone was trained."""
        # The steps below, written out: x / 255, minus its per-channel mean, divided by its contrast, times
        # TYPICAL_STD, plus INPUT_MEAN; then (x - INPUT_MEAN) / INPUT_STD. The constants are folded into one
        # scale so the graph passes over the frame as few times as it can.
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        if self.config.normalize_illumination:
            # Lighting and tint drift between frames is not a defect: remove each image's per-channel
            # mean and its overall contrast, then restore typical values so the backbone sees a normal image.
            x = x - x.mean(dim=(2, 3), keepdim=True)
            # The floor keeps a blank frame (lens cap, no part) from having its sensor noise blown up.
            contrast = (x.flatten(1).std(dim=1) / 255.0).clamp_min(MIN_CONTRAST).reshape(-1, 1, 1, 1)
            return x * (TYPICAL_STD / INPUT_STD / 255.0) / contrast
        return x * (1.0 / (255.0 * INPUT_STD)) - INPUT_MEAN / INPUT_STD

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings [N, C, H/stride, W/stride] before scoring (what healing distills)."""
        x = self.preprocess(images)
        maps = self.backbone(x)
        size = (images.shape[1] // self.feature_stride, images.shape[2] // self.feature_stride)
        pooled = []
        for feature, stride in zip(maps, self.backbone.strides, strict=True):
            if self.config.neighbourhood > 1:
                feature = F.avg_pool2d(
                    feature,
                    self.config.neighbourhood,
                    stride=1,
                    padding=self.config.neighbourhood // 2,
                    count_include_pad=False,
                )
            if stride < self.feature_stride:
                # Finer than the patch grid: average, so small details still count.
                feature = F.avg_pool2d(feature, self.feature_stride // stride)
            if feature.shape[-2:] != size:
                feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
            pooled.append(feature)
        if self.config.color_channels:
            pooled.append(local_color_stats(x, self.feature_stride, self.config.color_window))
        features = torch.cat(pooled, dim=1)
        return self.feature_scaler(features) if self.feature_scaler is not None else features

    def score_features(
        self, features: torch.Tensor, output_size: tuple[int, int]
    ) -> tuple[torch.Tensor, ...]:
        """Embeddings -> (smoothed anomaly map at `output_size`, image score = its max)."""
        if self.position_gaussian is not None:
            distances = self.position_gaussian(features)
        else:
            assert self.memory_bank is not None
            distances = self.memory_bank(features, self.position_norm)
        anomaly_map = self.blur(distances, output_size)  # bilinear upsampling and blur in one
        score = anomaly_map.flatten(1).amax(dim=1)
        return anomaly_map, score

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extract_features(images)
        anomaly_map, score = self.score_features(features, (images.shape[1], images.shape[2]))
        return anomaly_map, score
