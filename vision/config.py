"""Typed settings for the anomaly model: what to build, at which size, and how to calibrate it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# EfficientNet-Lite backbones have seven blocks of MBConv stages.
BACKBONE_BLOCKS = 7
# Pixels per patch of the anomaly model's grid (AnomalyModelConfig.patch_stride).
PATCH_STRIDE = 8


class ModelSettings(BaseModel):
    """How the defect model is built and where the deployed ONNX file lives."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field("models/default.onnx", description="ONNX model; relative to data_dir.")
    auto_build: bool = Field(True, description="Train and export a model on first run if `path` is missing.")
    build_template: str = Field(
        "models/build-template",
        description="Build template folder for building captured products on the station without torch "
        "(`edgeinspect template`; written on first run where torch is installed); relative to data_dir.",
    )
    backbone: Literal["efficientnet_lite0", "efficientnet_lite2"] = "efficientnet_lite0"
    image_size: int = Field(256, ge=64, le=1024, description="Square input size the model sees.")
    memory_bank_size: int = Field(2048, ge=16, le=100_000, description="Coreset patches kept.")
    feature_blocks: tuple[int, ...] = Field(
        (1, 2, 4), min_length=1, description="Backbone blocks whose outputs form the patch embedding."
    )
    neighbourhood: int = Field(
        3, ge=1, le=9, description="Patches averaged around each one (odd; 3 chosen on real DEV images)."
    )
    smoothing_sigma: float = Field(8.0, ge=0.0, le=32.0, description="Gaussian blur of the map, pixels.")
    position_strength: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Per-position standardisation of the map: None decides from how texture-like the "
        "good parts are; 0 off, 1 full.",
    )
    knn: int = Field(3, ge=1, le=64, description="Distance = mean over the k nearest bank entries.")
    feature_norm: Literal["none", "channel", "block", "whiten"] = Field(
        "whiten", description="Rescaling of the embedding fitted on good patches."
    )
    color_stats: float = Field(
        0.0, ge=0.0, le=16.0, description="Weight of local colour mean/std channels; 0 leaves them out."
    )
    color_window: int = Field(1, ge=1, le=15, description="Cells each colour statistic summarises (odd).")
    whiten_shrinkage: float = Field(
        0.1, gt=0.0, le=1.0, description="feature_norm=whiten: share of isotropic variance mixed in."
    )
    coarse_entries: int = Field(
        256,
        ge=0,
        le=100_000,
        description="Banks larger than this are searched coarse-to-fine: every patch against the bank's "
        "first `coarse_entries` entries (a coarse coreset), then only the `refined_patches` most "
        "anomalous-looking patches against the whole bank. 0 always compares every patch with every entry.",
    )
    refined_patches: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Coarse-to-fine search: patches per image compared with the whole bank (at least this "
        "many patches per image, or the search is exact).",
    )
    head: Literal["auto", "bank", "gaussian"] = Field(
        "auto",
        description="gaussian: distance to the good patches at the same position (parts held in a fixture, "
        "e.g. cells, tiles, PCBs in a nest): a per-position Gaussian, no memory bank; bank: distance to the "
        "nearest good patches anywhere in the frame (textures, parts that move); auto (the default): decided "
        "from the good images by how aligned they are; near the boundary both are fitted and the other head "
        "replaces the ratio's only if it separates synthetic defects on held-back good images better by more "
        "than 0.03 (vision.head_choice; benchmarks/real/head_choice.md).",
    )
    gaussian_components: int = Field(
        128, ge=1, le=1024, description="head=gaussian: principal directions each position's Gaussian keeps."
    )
    gaussian_rank: int = Field(
        32,
        ge=0,
        le=1024,
        description="head=gaussian: each position keeps only this many of its strongest precision directions "
        "(those its good patches vary least in), a per-position truncation of the head: memory and time "
        "divided by gaussian_components / gaussian_rank. 0 (or >= gaussian_components) = all of them. "
        "128 directions at 32 are the size of 64 whole ones and more accurate on real DEV parts (MTD image "
        "AUROC 0.945 -> 0.952, recall at 1 % false rejects 0.41 -> 0.49; benchmarks/real/search.md).",
    )
    gaussian_shift: int = Field(
        0,
        ge=0,
        le=2,
        description="head=gaussian: a patch may match the Gaussian of a position this many grid cells (8 px) "
        "away, for parts that sit a little off from frame to frame.",
    )
    target_false_reject_rate: float = Field(
        0.01, gt=0.0, lt=0.5, description="Share of good parts allowed above the calibrated threshold."
    )
    train_images: int = Field(120, ge=8, description="Good images used when the model is auto-built.")
    compression_budget: str | None = Field(
        None,
        description="Auto-build: compress and heal the model to this budget: params=0.5 (tensor "
        "factorization), channels=0.5 (half of each block's hidden channels pruned), or both; "
        "None deploys the dense model.",
    )
    int8: bool | Literal["auto"] = Field(
        False,
        description="Quantize the backbone to int8 after building (the head's matrices stored as int8 "
        "weights), the threshold recalibrated on the int8 scores: on real parts 1.15-1.45x faster (by host) "
        "and a fifth of the file for 0.1-0.9 points of image AUROC on the worst set "
        "(benchmarks/real/front.md). Plant and station builds alike (vision/int8_export.py). 'auto': int8 "
        "where the build keeps the per-position Gaussian head (real DEV loss 0.1-0.3 points; its teach "
        "flows work on int8 files), float for the memory bank (1.2 points lost on KolektorSDD DEV, and an "
        "int8 bank cannot be taught).",
    )
    heal_steps: int = Field(200, ge=0, le=100_000, description="Auto-build: healing steps after compression.")
    compression_methods: dict[str, str] = Field(
        default_factory=dict,
        description="Auto-build: factorization per layer {pattern: method[:rank]}, e.g. "
        "{'blocks.5.*': 'tt:8', 'memory_bank': 'svd', 'default_conv': 'auto'}; methods svd, tucker2, cp, "
        "tt, auto, dense. Checked against the model's layers before anything is trained.",
    )
    seed: int = 0

    @field_validator("feature_blocks")
    @classmethod
    def _blocks_exist(cls, blocks: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(blocks)) != len(blocks) or not all(0 <= b < BACKBONE_BLOCKS for b in blocks):
            raise ValueError(f"feature_blocks must be distinct block indices in 0..{BACKBONE_BLOCKS - 1}")
        return tuple(sorted(blocks))

    @field_validator("neighbourhood", "color_window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a window centred on the patch), got {value}")
        return value

    @model_validator(mode="after")
    def _coarse_search_fits(self) -> ModelSettings:
        if 0 < self.coarse_entries < self.knn:
            raise ValueError(
                f"coarse_entries must be 0 (exact search) or at least knn ({self.knn}), "
                f"got {self.coarse_entries}"
            )
        return self

    def searches_coarse_first(self) -> bool:
        """Coarse-to-fine only pays where there is something to skip: a bank larger than the coarse
        entries and more patches per image than are refined (and a bank: the gaussian head has none)."""
        patches = (self.image_size // PATCH_STRIDE) ** 2
        bank = self.head == "bank"
        return bank and 0 < self.coarse_entries < self.memory_bank_size and self.refined_patches < patches

    def quantizes(self, head: str) -> bool:
        """Whether a build that kept `head` ("bank" or "gaussian") writes the int8 file (`int8`)."""
        return self.int8 is True or (self.int8 == "auto" and head == "gaussian")
