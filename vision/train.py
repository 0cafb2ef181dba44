"""Fit the anomaly model on good images, calibrate its threshold, export ONNX plus a PyTorch checkpoint.

`fit_model` works on images in memory (the runtime's first-run auto-build with simulator parts);
`train_model` reads an MVTec-layout folder. Both end in `build_model_files`, so a model built either way
carries the same metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vision.bank_fit import fit_bank_head
from vision.build_inputs import (  # noqa: F401 (dataset_sha256: re-exported for callers)
    dataset_sha256,
    images_sha256,
    load_good_images,
    prepare_images,
    split_holdout,
)
from vision.calibration import threshold_from_good_scores
from vision.config import ModelSettings
from vision.export import (
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_THRESHOLD,
    META_TRAIN_DATA_SHA256,
    export_onnx,
)
from vision.head_choice import HEAD_FAMILY, HeadChoice, proxy_auroc, resolve_head
from vision.int8_export import quantize_deployed
from vision.models import AnomalyModel, AnomalyModelConfig, MemoryBank, save_checkpoint
from vision.proxy_defects import synthetic_defects

BATCH_SIZE = 8


# Backbone stride: feature maps pool evenly onto the patch grid only at multiples of it (ONNX needs that).
SIZE_MULTIPLE = 32


def model_config(settings: ModelSettings) -> AnomalyModelConfig:
    if settings.head == "auto":
        raise ValueError(
            "model.head is auto: decide it on the good images first (vision.head_choice.resolve_head)"
        )
    if settings.image_size % SIZE_MULTIPLE:
        raise ValueError(f"model.image_size must be a multiple of {SIZE_MULTIPLE}, got {settings.image_size}")
    coarse = settings.searches_coarse_first()
    return AnomalyModelConfig(
        backbone=settings.backbone,
        image_size=settings.image_size,
        feature_blocks=tuple(settings.feature_blocks),
        memory_bank_size=settings.memory_bank_size,
        neighbourhood=settings.neighbourhood,
        smoothing_sigma=settings.smoothing_sigma,
        position_strength=settings.position_strength,
        knn=settings.knn,
        feature_norm=settings.feature_norm,
        color_stats=settings.color_stats,
        color_window=settings.color_window,
        whiten_shrinkage=settings.whiten_shrinkage,
        coarse_entries=settings.coarse_entries if coarse else 0,
        refined_patches=settings.refined_patches if coarse else 0,
        head=settings.head,
        gaussian_components=settings.gaussian_components,
        gaussian_rank=settings.gaussian_rank,
        gaussian_shift=settings.gaussian_shift,
    )


def _batches(images: np.ndarray, desc: str, progress: bool):
    for start in tqdm(range(0, len(images), BATCH_SIZE), desc=desc, disable=not progress, leave=False):
        yield torch.from_numpy(images[start : start + BATCH_SIZE])


@torch.inference_mode()
def extract_patches(model: AnomalyModel, images: np.ndarray, progress: bool = True) -> torch.Tensor:
    """Every patch embedding of every image, [N * h * w, C]."""
    rows = []
    for batch in _batches(images, "features", progress):
        features = model.extract_features(batch)
        rows.append(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]))
    return torch.cat(rows)


@torch.inference_mode()
def score_images(model: nn.Module, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Image scores [N] of prepared uint8 images."""
    scores = [model(batch)[1] for batch in _batches(images, "scoring", progress)]
    return torch.cat(scores).numpy()


BankForm = Callable[[nn.Linear], nn.Module]  # how a deployed bank stores its entries (e.g. factorized)


def fit_bank(
    model: AnomalyModel, patches: torch.Tensor, image_count: int, seed: int, bank_form: BankForm | None
) -> None:
    """The memory bank, the per-position statistics and the coarse search's line, fitted by
    `vision.bank_fit.fit_bank_head` (the station's build fits the same way) and stored in the modules.

    With `bank_form` the line is refitted on the probe bank stored as the deployed one will be: a
    factorized bank's distances run larger than a dense one's, and a line fitted on dense distances would
    pull every unrefined patch far below its refined neighbours. (The position statistics stay
    dense-fitted, as every compressed model measured so far was built.)"""
    bank, position_norm = model.memory_bank, getattr(model, "position_norm", None)
    assert bank is not None, "a memory bank is fitted for the bank head"
    grid = position_norm.gain.shape[-2:] if position_norm is not None else None
    head = fit_bank_head(
        patches.reshape(image_count, -1, patches.shape[-1]).numpy(),
        bank.size,
        bank.knn,
        bank.coarse_entries if bank.searches_coarse_first else 0,
        (int(grid[0]), int(grid[1])) if grid is not None else None,
        model.config.position_strength if position_norm is not None else None,  # toy models lack both
        seed,
    )
    bank.set_bank(torch.from_numpy(head.bank))
    if position_norm is not None and head.gain is not None and head.offset is not None:
        position_norm.set_gain_offset(head.gain, head.offset)
    if not bank.searches_coarse_first or head.held_out is None:
        return
    if bank_form is None:
        bank.set_coarse_line(head.coarse)
        return
    probe = MemoryBank(
        bank.dim,
        bank.size,
        knn=bank.knn,
        coarse_entries=bank.coarse_entries,
        refined_patches=bank.refined_patches,
    )
    probe.set_bank(torch.from_numpy(head.held_out.probe_bank))
    probe.similarity = bank_form(probe.similarity)
    if not probe.searches_coarse_first:  # a tensor-train bank searches every entry: no line to fit
        return
    probe.sync_bias()
    with torch.inference_mode():
        held = torch.split(torch.from_numpy(head.held_out.held), BATCH_SIZE)
        exact = torch.cat([probe.exact_distances(chunk) for chunk in held])
        coarse = torch.cat([probe.coarse_distances(chunk) for chunk in held])
    bank.fit_coarse_correction(coarse, exact)


def fit_model(images: Sequence[np.ndarray], settings: ModelSettings, progress: bool = True) -> AnomalyModel:
    """Build the model on good RGB uint8 images: pretrained features, then the head (`auto` is decided on
    these images)."""
    settings, _ = resolve_head(settings, images)
    config = model_config(settings)
    prepared = prepare_images(images, config.image_size)
    torch.manual_seed(settings.seed)
    model = AnomalyModel(config, pretrained=True)
    fit_head(model, prepared, settings.seed, progress=progress)
    return model.eval()


def fit_head(
    model: AnomalyModel,
    prepared: np.ndarray,
    seed: int,
    progress: bool = True,
    bank_form: BankForm | None = None,
) -> None:
    """Fit everything after the backbone on good images: feature scaling, coreset bank, position
    statistics. Shared by the first fit and by compression, whose student refits its head on its own
    (slightly different) features; `memory_bank.similarity` must be a plain `nn.Linear` here, and
    `bank_form` says how the caller will store it (the coarse search's line is fitted for that form). Parts a
    model lacks (no scaler, no position statistics) are skipped."""
    scaler = getattr(model, "feature_scaler", None)
    if scaler is not None:
        scaler.reset()  # fitted on raw patches, so extract them unscaled
    patches = extract_patches(model, prepared, progress=progress)
    if scaler is not None:
        # Fitted on the raw good patches, then applied to them: the bank lives in the scaled space.
        config = model.config
        scaler.fit(patches, model.backbone.channels, config.color_stats, shrinkage=config.whiten_shrinkage)
        patches = scaler.apply_rows(patches)
    gaussian = getattr(model, "position_gaussian", None)  # models built elsewhere (tests' toys) lack it
    if gaussian is not None:
        gaussian.fit(patches.reshape(len(prepared), -1, patches.shape[-1]))
        return
    fit_bank(model, patches, len(prepared), seed, bank_form)


def _calibrate(model: nn.Module, good_images: np.ndarray, settings: ModelSettings) -> float:
    """The threshold at `target_false_reject_rate` over held-back good images, for this model's scores."""
    scores = score_images(model, good_images)
    return float(threshold_from_good_scores(scores, settings.target_false_reject_rate))


def fit_better_head(
    fit_images: np.ndarray,
    held_back: np.ndarray,
    settings: ModelSettings,
    choice: HeadChoice,
    progress: bool,
) -> tuple[ModelSettings, HeadChoice, AnomalyModel]:
    """Both heads fitted; kept: the one whose scores better separate the held-back good images from
    synthetic defects drawn on them (`vision.proxy_defects`), as the station's build decides."""
    defects = synthetic_defects(held_back, settings.seed)
    models: dict[str, AnomalyModel] = {}
    figures: dict[str, float] = {}
    for head in HEAD_FAMILY:
        models[head] = fit_model(list(fit_images), settings.model_copy(update={"head": head}), progress)
        figures[head] = proxy_auroc(
            score_images(models[head], held_back), score_images(models[head], defects)
        )
    choice = choice.compared(figures)
    return settings.model_copy(update={"head": choice.head}), choice, models[choice.head]


def fit_deciding_head(
    prepared: np.ndarray,
    fit_idx: np.ndarray,
    calib_idx: np.ndarray,
    settings: ModelSettings,
    head_choice: HeadChoice | None = None,
    progress: bool = True,
) -> tuple[ModelSettings, HeadChoice | None, AnomalyModel]:
    """(settings with a concrete head, the choice, the model fitted on `prepared[fit_idx]`): `auto` decided
    as every build decides it, by the alignment ratio on all the images (or `head_choice`, the caller's)
    and near its boundary by both heads compared on synthetic defects drawn on `prepared[calib_idx]`."""
    settings, choice = resolve_head(settings, prepared)
    choice = choice or head_choice
    if choice is not None and choice.near and len(calib_idx) >= 2:
        return fit_better_head(prepared[fit_idx], prepared[calib_idx], settings, choice, progress)
    return settings, choice, fit_model(list(prepared[fit_idx]), settings, progress=progress)


def build_model_files(
    images: Sequence[np.ndarray],
    out_path: str | Path,
    settings: ModelSettings,
    model_name: str,
    train_data_sha256: str | None = None,
    holdout_fraction: float = 0.2,
    progress: bool = True,
    compact: Callable[[AnomalyModel, np.ndarray], nn.Module] | None = None,
    compact_note: str = "",
    head_choice: HeadChoice | None = None,
) -> Path:
    """Hold back good images, fit on the rest, calibrate on the held-back ones, write .onnx and .pt.

    With `model.int8` the .onnx file is the int8 one, its threshold recalibrated on the same held-back
    good images (`vision.int8_export`, the step a station build runs too).

    `model.head: auto` is decided here on the images, unless the caller decided it (`head_choice`); near
    the alignment boundary both heads are fitted and the one that better separates synthetic defects on
    the held-back images is kept. `{family}` in `model_name` becomes the kept head's method family.

    `compact(model, fit_images)` (e.g. tensor compression) turns the fitted model into the one that is
    deployed; it is calibrated like the dense one. The .pt checkpoint always holds the dense model, the
    starting point for `edgeinspect compress`, with the dense model's own threshold: a threshold
    calibrated on the compact model's scores means nothing for the dense one."""
    out_path = Path(out_path)
    prepared = prepare_images(images, settings.image_size)
    fit_idx, calib_idx = split_holdout(len(prepared), holdout_fraction, settings.seed)
    settings, choice, dense = fit_deciding_head(prepared, fit_idx, calib_idx, settings, head_choice, progress)
    model_name = model_name.replace("{family}", HEAD_FAMILY[settings.head])
    model = compact(dense, prepared[fit_idx]) if compact is not None else dense
    threshold = _calibrate(model, prepared[calib_idx], settings)
    dense_threshold = threshold if model is dense else _calibrate(dense, prepared[calib_idx], settings)
    metadata = {
        META_THRESHOLD: repr(float(threshold)),
        META_MODEL_NAME: model_name,
        META_MODEL_VERSION: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        META_TRAIN_DATA_SHA256: train_data_sha256 or images_sha256(prepared),
        "edgeinspect.backbone": settings.backbone,
        "edgeinspect.head": settings.head,
        **({"edgeinspect.head_choice": choice.reason} if choice is not None else {}),
        **(
            {"edgeinspect.memory_bank_size": str(settings.memory_bank_size)}
            if settings.head == "bank"
            else {}
        ),
        "edgeinspect.calibration": (
            f"good-image quantile at false-reject rate {settings.target_false_reject_rate} "
            f"over {len(calib_idx)} held-back images"
        ),
    }
    if compact is not None:
        metadata["edgeinspect.compression"] = compact_note or "compressed"
    export_onnx(model, out_path, metadata, settings.image_size)
    save_checkpoint(
        dense,
        out_path.with_suffix(".pt"),
        extra={"threshold": dense_threshold, "deployed_threshold": threshold, "metadata": metadata},
    )
    if settings.quantizes(settings.head):
        quantize_deployed(out_path, prepared[calib_idx], settings.target_false_reject_rate, threads=2)
    return out_path


def train_model(
    data_root: str | Path,
    category: str,
    out_path: str | Path,
    settings: ModelSettings,
    progress: bool = True,
    holdout_fraction: float = 0.2,
) -> Path:
    """Train on `<data_root>/<category>/train/good`; write `out_path` (ONNX) and its `.pt` checkpoint."""
    images, _, data_sha256 = load_good_images(data_root, category, settings.image_size, progress)
    return build_model_files(
        images,
        out_path,
        settings,
        model_name=f"{{family}}-{settings.backbone}-{category}",  # the file's name announces the head
        train_data_sha256=data_sha256,
        holdout_fraction=holdout_fraction,
        progress=progress,
    )
