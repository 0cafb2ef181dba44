"""Build a model on the station from its own good parts, with ONNX Runtime and numpy alone (no torch).

Input: a build template (`vision.build_template`, exported once at the plant) and good images. The
template's own graph computes the raw patch embeddings (the input of its whitening convolution); the
whitening, the per-position Gaussian, the head choice and the threshold are fitted by the same numpy
functions the plant's build uses (`vision.head_fit`, `vision.head_choice`, `vision.calibration`), on the
same fit / held-back split (`vision.build_inputs`). The fitted numbers are written into the template's
named initializers, and the result is an ordinary model file with the plant's metadata: the plant and
the station build the same model from the same images (scores agree to 1e-4,
tests/unit/vision/test_station_build.py). With `model.int8` the fitted file goes through the plant's int8
step (`vision.int8_export`: ONNX Runtime's quantizer, the threshold recalibrated on the held-back images'
int8 scores) before it takes its name.

Both heads build here. The per-position Gaussian's fit is smooth in its inputs: a station's model scores
within 1e-4 of the plant's (measured 1e-5). The memory bank's greedy coreset may break a near-tie the other
way on the last bits of the features (ONNX Runtime's differ from PyTorch's there) and pick the other of
two near-equal patches; measured, scores still agree within 1.1e-5 at 256 px (the test allows 1e-3).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision import onnx_proto
from vision.bank_fit import bank_bias, fit_bank_head
from vision.build_inputs import images_sha256, prepare_images, split_holdout
from vision.calibration import threshold_from_good_scores
from vision.config import ModelSettings
from vision.export import (
    META_BUILD_SETTINGS,
    META_BUILD_TEMPLATE,
    META_FEATURE_GROUPS,
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_THRESHOLD,
    META_TRAIN_DATA_SHA256,
    sha256_file,
)
from vision.head_choice import HEAD_FAMILY, HeadChoice, choice_sample, decide_head, proxy_auroc
from vision.head_fit import apply_scaler, fit_position_gaussian, fit_scaler, gaussian_shape
from vision.ort_session import cpu_session, image_scores, run_each
from vision.proxy_defects import synthetic_defects
from vision.template_graph import BuildTemplate, StationBuildError, load_kit

__all__ = [
    "BuildTemplate",
    "StationBuild",
    "StationBuildError",
    "build_on_station",
    "load_kit",
    "raw_patches",
]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class StationBuild:
    path: Path
    threshold: float
    head_choice: HeadChoice | None
    fit_images: int
    held_back: tuple[int, ...]  # indices of the held-back images (not fitted on; the threshold's)
    held_back_scores: tuple[float, ...]  # their scores, in the same order
    seconds: float

    @property
    def held_back_images(self) -> int:
        return len(self.held_back)


def raw_patches(
    template: BuildTemplate, images: np.ndarray, threads: int = 1, progress: Progress | None = None
) -> np.ndarray:
    """Raw patch embeddings [N, P, C] of prepared images [N, size, size, 3], read off the template."""
    model = onnx_proto.copy_model(template.model)
    onnx_proto.add_float_output(model, template.features)
    maps = run_each(
        cpu_session(model.SerializeToString(), threads),
        template.features,
        images,
        _done(progress, "features"),
    )
    return np.stack([m[0].reshape(m.shape[1], -1).T for m in maps])  # [C, h, w] -> [P, C]


def fitted_values(template: BuildTemplate, fit_patches: np.ndarray) -> dict[str, np.ndarray]:
    """Every fitted number of the template's model, by role, from raw good patches [N, P, C]: the
    plant's fits (`vision.head_fit`, `vision.bank_fit`) in the plant's order."""
    settings = template.settings
    n, positions, dim = fit_patches.shape
    rows = fit_patches.reshape(-1, dim)
    shift, transform = fit_scaler(
        rows, template.groups, "whiten", settings.color_stats, shrinkage=settings.whiten_shrinkage
    )
    shift, transform = shift.astype(np.float32), transform.astype(np.float32)
    scaled = apply_scaler(rows, shift, transform).reshape(n, positions, dim)
    # The whitening convolution's weight is transform^T, as the scaler's forward folds it.
    values = {"shift": shift, "transform": transform, "whiten_weight": transform.T.reshape(dim, dim, 1, 1)}
    if template.head == "gaussian":
        components, rank = gaussian_shape(dim, settings.gaussian_components, settings.gaussian_rank)
        basis, mean, factor = fit_position_gaussian(scaled, components, rank=rank)
        return {**values, "basis": basis, "mean": mean[:, None, :], "factor": factor}
    return {**values, **_bank_values(template, scaled)}


def _bank_values(template: BuildTemplate, scaled: np.ndarray) -> dict[str, np.ndarray]:
    settings, roles = template.settings, template.roles
    coarse = settings.coarse_entries if "coarse_weight" in roles else 0
    grid = template.dims("gain")[-2:] if "gain" in roles else None
    head = fit_bank_head(
        scaled,
        settings.memory_bank_size,
        settings.knn,
        coarse,
        grid,
        settings.position_strength,
        settings.seed,
    )
    bias = bank_bias(head.bank)
    values = {"bank_weight": head.bank.T, "bank_bias": bias}
    if coarse:
        scale, offset = head.coarse if head.coarse is not None else (1.0, 0.0)
        values.update(
            coarse_weight=head.bank[:coarse].T,
            coarse_bias=bias[:coarse],
            coarse_scale=np.array(scale, np.float32),
            coarse_offset=np.array(offset, np.float32),
        )
    if grid is not None:
        identity = (np.ones(grid, np.float32), np.zeros(grid, np.float32))  # an aligned part: raw map
        gain, offset = (
            (head.gain, head.offset) if head.gain is not None and head.offset is not None else identity
        )
        values.update(gain=gain.reshape(1, 1, *grid), offset=offset.reshape(1, 1, *grid))
    return values


def _scores(
    model: Any, images: np.ndarray, threads: int, stage: str, progress: Progress | None = None
) -> np.ndarray:
    return image_scores(model.SerializeToString(), images, threads, _done(progress, stage))


def _done(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """`progress` for one stage, as `run_each` reports it."""
    return None if progress is None else lambda done, total: progress(stage, done, total)


def _fit_better_head(
    kit: Mapping[str, BuildTemplate],
    fit_patches: np.ndarray,
    held_back: np.ndarray,
    choice: HeadChoice,
    threads: int,
    progress: Progress | None = None,
) -> tuple[HeadChoice, Any]:
    """Both heads fitted; kept: the one whose scores better separate the held-back good images from
    synthetic defects drawn on them, as the plant's build decides (`vision.train`)."""
    defects = synthetic_defects(held_back, kit["gaussian"].settings.seed)
    models, figures = {}, {}
    for head in HEAD_FAMILY:
        models[head] = kit[head].written(fitted_values(kit[head], fit_patches))
        stage = f"comparing heads: {head}"
        figures[head] = proxy_auroc(
            _scores(models[head], held_back, threads, stage, progress),
            _scores(models[head], defects, threads, stage, progress),
        )
    choice = choice.compared(figures)
    return choice, models[choice.head]


def _metadata(
    meta: dict[str, str],
    template: BuildTemplate,
    head: str,
    choice: HeadChoice | None,
    threshold: float,
    held_back: int,
) -> dict[str, str]:
    """The template's metadata made a model's: the plant's keys (`vision.train.build_model_files`) and
    where it was built; the template's own keys dropped."""
    settings = template.settings
    for key in (META_BUILD_TEMPLATE, META_BUILD_SETTINGS, META_FEATURE_GROUPS, "edgeinspect.head_choice"):
        meta.pop(key, None)
    meta.update(
        {
            META_THRESHOLD: repr(threshold),
            META_MODEL_VERSION: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "edgeinspect.backbone": settings.backbone,
            "edgeinspect.head": head,
            **({"edgeinspect.memory_bank_size": str(settings.memory_bank_size)} if head == "bank" else {}),
            **({"edgeinspect.head_choice": choice.reason} if choice is not None else {}),
            "edgeinspect.calibration": (
                f"good-image quantile at false-reject rate {settings.target_false_reject_rate} "
                f"over {held_back} held-back images"
            ),
            "edgeinspect.built_on": (
                f"station (numpy + ONNX Runtime), template sha256 {sha256_file(template.path)}"
            ),
        }
    )
    return meta


def _quantize(
    path: Path, held_back: np.ndarray, settings: ModelSettings, threads: int
) -> tuple[float, np.ndarray]:
    """The plant's int8 step on the fitted file at `path` (imported here: it needs the `onnx` package,
    which only a station that builds int8 models installs)."""
    try:
        from vision.int8_export import quantize_deployed
    except ImportError as exc:
        path.unlink(missing_ok=True)
        raise StationBuildError(
            f"model.int8 needs the `onnx` package on the station ({exc}): install the station role's "
            "packages (bash scripts/setup.sh --role station)"
        ) from exc
    try:
        return quantize_deployed(path, held_back, settings.target_false_reject_rate, threads)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def build_on_station(
    kit: Mapping[str, BuildTemplate],
    images: Sequence[np.ndarray],
    out_path: str | Path,
    product: str,
    train_data_sha256: str | None = None,
    holdout_fraction: float = 0.2,
    threads: int = 1,
    progress: Progress | None = None,
) -> StationBuild:
    """Fit a model on good RGB images, calibrate it on the held-back ones, write it atomically to
    `out_path`. The steps and the split are the plant's (`vision.train.build_model_files`)."""
    started = time.monotonic()
    first = next(iter(kit.values()))
    settings = first.settings
    prepared = prepare_images(images, settings.image_size)
    fit_idx, calib_idx = split_holdout(len(prepared), holdout_fraction, settings.seed)
    patches = raw_patches(first, prepared, threads, progress)  # every template's backbone is the same
    choice: HeadChoice | None = None
    head = settings.head
    if head == "auto":
        sample = choice_sample(np.arange(len(prepared)))  # the indices of the images the plant measures
        choice = decide_head(patches[sample])
        head = choice.head
    if head not in kit:
        raise StationBuildError(
            f"these parts need the {head} head ({choice.reason if choice else 'model.head'}), and the build "
            f"template has only {sorted(kit)}: export both with `edgeinspect template`"
        )
    if progress is not None:
        progress("fit", 0, 1)
    if choice is not None and choice.near and len(calib_idx) >= 2 and set(HEAD_FAMILY) <= set(kit):
        choice, model = _fit_better_head(
            kit, patches[fit_idx], prepared[calib_idx], choice, threads, progress
        )
        head = choice.head
    else:
        model = kit[head].written(fitted_values(kit[head], patches[fit_idx]))
    template = kit[head]
    scores = _scores(model, prepared[calib_idx], threads, "calibration", progress).tolist()
    threshold = float(threshold_from_good_scores(np.asarray(scores), settings.target_false_reject_rate))
    meta = _metadata(onnx_proto.metadata(model), template, head, choice, threshold, len(calib_idx))
    meta[META_MODEL_NAME] = f"{HEAD_FAMILY[head]}-{settings.backbone}-{product}"
    meta[META_TRAIN_DATA_SHA256] = train_data_sha256 or images_sha256(prepared)
    onnx_proto.set_metadata(model, meta)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, suffix=".onnx.tmp", delete=False) as handle:
        handle.write(model.SerializeToString())
    if settings.quantizes(head):  # quantized before the file takes its name, as the plant's is
        if progress is not None:
            progress("int8", 0, 1)
        threshold, int8_scores = _quantize(Path(handle.name), prepared[calib_idx], settings, threads)
        scores = [float(s) for s in int8_scores]
    os.replace(handle.name, out_path)
    return StationBuild(
        out_path,
        threshold,
        choice,
        len(fit_idx),
        tuple(int(i) for i in calib_idx),
        tuple(scores),
        time.monotonic() - started,
    )
