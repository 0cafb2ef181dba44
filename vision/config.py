"""Typed settings for the anomaly model: what to build, at which size, and how to calibrate it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelSettings(BaseModel):
    """How the defect model is built and where the deployed ONNX file lives."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field("models/default.onnx", description="ONNX model; relative to data_dir.")
    auto_build: bool = Field(True, description="Train and export a model on first run if `path` is missing.")
    backbone: Literal["efficientnet_lite0", "efficientnet_lite2"] = "efficientnet_lite0"
    image_size: int = Field(256, ge=64, le=1024, description="Square input size the model sees.")
    memory_bank_size: int = Field(2048, ge=16, le=100_000, description="Coreset patches kept.")
    target_false_reject_rate: float = Field(
        0.01, gt=0.0, lt=0.5, description="Share of good parts allowed above the calibrated threshold."
    )
    train_images: int = Field(120, ge=8, description="Good images used when the model is auto-built.")
    compression_budget: str | None = Field(
        None,
        description="Auto-build: tensor-compress and heal the model to this budget (e.g. params=0.5); "
        "None deploys the dense model.",
    )
    heal_steps: int = Field(200, ge=0, le=100_000, description="Auto-build: healing steps after compression.")
    compression_methods: dict[str, str] = Field(
        default_factory=dict,
        description="Auto-build: factorization per layer {pattern: method[:rank]}, e.g. "
        "{'blocks.5.*': 'tt:8', 'memory_bank': 'svd', 'default_conv': 'auto'}; methods svd, tucker2, cp, "
        "tt, auto, dense. Checked against the model's layers before anything is trained.",
    )
    seed: int = 0
