"""Typed knobs of the compression pipeline, so every constant lives in one validated place."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compression.methods import METHOD_HELP, rules_from_mapping


class CompressionSettings(BaseModel):
    """How layers are chosen, ranked, healed and quantized. Defaults are the recipe the benchmark reports."""

    model_config = ConfigDict(extra="forbid")

    min_layer_params: int = Field(
        2048, ge=0, description="Layers smaller than this stay dense: factorizing them saves nothing."
    )
    conv_method: Literal["tucker2", "cp", "auto"] = Field(
        "tucker2", description="Factorization of kxk convs unless a `methods` rule says otherwise."
    )
    linear_method: Literal["svd", "tt", "auto"] = Field(
        "svd", description="Factorization of Linear / 1x1 convs unless a `methods` rule says otherwise."
    )
    methods: dict[str, str] = Field(
        default_factory=dict,
        description="Per-layer methods {pattern: method[:rank]}, e.g. {'blocks.5.*': 'tt', "
        "'memory_bank': 'svd', 'default_conv': 'auto'}; later patterns win. " + METHOD_HELP,
    )
    layer_latency_runs: int = Field(
        15, ge=1, description="Interleaved ORT runs per candidate when auto times a layer's options."
    )
    latency_cache: str | None = Field(
        None, description="JSON file caching per-layer ORT timings across runs (None: this run only)."
    )
    energy_start: float = Field(
        0.98, gt=0.0, le=1.0, description="Initial rank keeps this share of singular-value energy."
    )
    rank_multiple: int = Field(4, ge=1, description="Ranks are rounded to this (SIMD-friendly GEMMs).")
    sensitivity_fractions: tuple[float, ...] = Field(
        (0.125, 0.25, 0.5), description="Ranks probed per layer, as a share of the layer's full rank."
    )
    sensitivity_images: int = Field(8, ge=2, description="Held-out good images per sensitivity probe.")
    min_rank_fraction: float = Field(
        0.125, ge=0.0, lt=1.0, description="No layer goes below this share of its full rank."
    )
    greedy_step: float = Field(0.8, gt=0.0, lt=1.0, description="Rank ladder: each rung is this x the last.")
    heal_lr: float = Field(3e-4, gt=0.0)
    heal_batch_size: int = Field(8, ge=1)
    heal_map_weight: float = Field(1.0, ge=0.0, description="Weight of anomaly-map vs feature distillation.")
    heal_eval_every: int = Field(25, ge=1, description="Steps between validations while healing.")
    heal_patience: int = Field(4, ge=1, description="Validations without improvement before stopping early.")
    refit_bank: bool = Field(
        True, description="After healing, rebuild the memory bank from student features."
    )
    data_aware: bool = Field(
        True, description="SVD factors minimize the error on real layer inputs (whitened SVD)."
    )
    covariance_images: int = Field(32, ge=1, description="Held-back good images that measure layer inputs.")
    heal_augment: bool = Field(
        True, description="Heal on good images plus copies with pasted patches (keeps defects visible)."
    )
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Good images held back, as in training.")
    target_false_reject_rate: float = Field(0.01, gt=0.0, lt=0.5, description="Same threshold procedure.")
    calibration_images: int = Field(32, ge=1, description="Good images that calibrate int8 activations.")
    int8_max_auroc_drop: float = Field(
        0.01, ge=0.0, lt=1.0, description="An int8 op group is kept only within this image-AUROC drop."
    )
    int8_min_speedup: float = Field(
        0.03, ge=0.0, lt=1.0, description="An int8 op group is kept only if it cuts p50 by this share."
    )
    int8_latency_runs: int = Field(30, ge=3, description="Interleaved ORT runs per int8 decision.")
    latency_threads: int = Field(2, ge=1, description="ORT intra-op threads when latency is measured.")
    latency_warmup: int = Field(3, ge=0)
    latency_runs: int = Field(20, ge=1)
    seed: int = 0

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: dict[str, str]) -> dict[str, str]:
        """Syntax and method names are checked at load time; layer names when the model is known."""
        rules_from_mapping(value)
        return value
