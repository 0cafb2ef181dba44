"""Ideas that change the detector beyond `ModelSettings`, tried on the hard suite's DEV categories only.

`hard_search.py` searches the settings the product exposes; the ideas here need code that does not exist
in the product yet, so each is tried on the default model first and kept only if it earns its place on
DEV (then it would become a setting and be measured once on HOLDOUT):

- `bank-rank`: a low-rank memory bank (SVD of the bank matrix, as `compression` factorizes it, with the
  residual counted; or whitened features truncated to the same subspace). It would cut the per-frame
  nearest-neighbour cost, the largest single cost of the default model.
- `texture`: a texture-statistics branch (local colour mean/std and gradient energy per 8 px cell over
  1/3/5-cell windows, a Gaussian fitted on good cells, per-position standardised), alone, and fused with
  the deep map by max or by sum (weight 0.5) after both are put in units of good images' max scores.
  Aimed at blur (texture loss) and faint stains.
- `bank-kmeans`: the coreset bank refined by k-means steps (density instead of coverage).
- `pool`: finer-than-grid features max-pooled onto the patch grid instead of averaged.
- `ensemble`: lite0 + lite2, threshold-normalised maps averaged (the plant verifier's ensemble rule).
- `tta`: test-time flips (horizontal; horizontal + vertical, maps flipped back and averaged) and a
  320 px input.

Every run is logged, helpful or not, in `benchmarks/vision/hard/branches.json` and `branches.md`.

    .venv/bin/python benchmarks/vision/hard_branches.py bank-rank|texture|tta [--categories tile,...]
    .venv/bin/python benchmarks/vision/hard_branches.py ensemble-holdout  # once, after `ensemble`
    .venv/bin/python benchmarks/vision/hard_branches.py report
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hard_search import HOLDOUT_FRACTION, CategoryData, dev_categories, load_category, score

from compression.factorize import apply_ranks
from vision import metrics
from vision.config import ModelSettings
from vision.data import hard_suite
from vision.data.mvtec import GOOD
from vision.models import AnomalyModel
from vision.models.smoothing import UpsampleBlur
from vision.train import fit_head, fit_model, model_config, prepare_images, split_holdout

HERE = Path(__file__).resolve().parent / "hard"
RESULTS_JSON = HERE / "branches.json"
RESULTS_MD = HERE / "branches.md"
BANK_RANKS = (16, 32, 48, 64, 96)
TEXTURE_WINDOWS = (1, 3, 5)
TEXTURE_SUM_WEIGHT = 0.5
TEXTURE_SHRINKAGE = 0.1
CELL = 8  # px per texture cell: the deep map's patch stride
# The default model when these ideas were tried: exact bank search (coarse-to-fine search became the
# default after the `search` experiment), so every recorded figure reproduces.
RECORDED_DEFAULT = ModelSettings(coarse_entries=0)

Maps = np.ndarray  # [N, 256, 256] float32
Entry = dict[str, Any]


def evaluate(data: CategoryData, maps: Maps) -> Entry:
    """Image AUROC (score = map max), pixel AUROC and image AUROC per defect kind."""
    scores = maps.reshape(len(maps), -1).max(axis=1)
    return {
        "image": metrics.image_auroc(data.labels, scores),
        "pixel": metrics.pixel_auroc(data.masks, maps),
        "kinds": metrics.auroc_per_kind(data.kinds, scores, good=GOOD),
    }


@dataclass
class Fitted:
    """A model fitted as `hard_search.run_variant` fits it, with the images of each split at its size."""

    model: AnomalyModel
    fit: np.ndarray
    calibration: np.ndarray
    test: np.ndarray


def fitted(data: CategoryData, settings: ModelSettings) -> Fitted:
    train = prepare_images(list(data.train), settings.image_size)
    fit_idx, calib_idx = split_holdout(len(train), HOLDOUT_FRACTION, settings.seed)
    model = fit_model(list(train[fit_idx]), settings, progress=False)
    return Fitted(
        model, train[fit_idx], train[calib_idx], prepare_images(list(data.test), settings.image_size)
    )


# ------------------------------------------------------------------------------------------- bank rank


def truncated(model: AnomalyModel, rank: int) -> AnomalyModel:
    """Whitened features and bank projected onto the bank's top-`rank` right singular vectors (the
    residual is dropped, unlike the SVD factorization, which keeps it in |f|^2)."""
    copied = copy.deepcopy(model)
    bank = copied.memory_bank.similarity.weight.detach().clone()
    basis = torch.linalg.svd(bank, full_matrices=False).Vh[:rank]
    projector = basis.T @ basis
    scaler = copied.feature_scaler
    assert scaler is not None and scaler.mode == "whiten", "bank-rank expects the whitened default head"
    scaler.transform.copy_(scaler.transform @ projector)
    copied.memory_bank.set_bank(bank @ projector)
    return copied


def run_bank_rank(data: CategoryData) -> dict[str, Entry]:
    run = fitted(data, RECORDED_DEFAULT)
    model, test = run.model, run.test
    rows = {"full": evaluate(data, score(model, test)[1])}
    singular = torch.linalg.svdvals(model.memory_bank.similarity.weight.detach())
    energy = (singular**2).cumsum(0) / (singular**2).sum()
    layer = "memory_bank.similarity"
    for rank in BANK_RANKS:
        factorized = apply_ranks(model, {layer: rank}, {layer: "svd"})
        rows[f"svd{rank}"] = {**evaluate(data, score(factorized, test)[1]), "energy": float(energy[rank - 1])}
        rows[f"trunc{rank}"] = evaluate(data, score(truncated(model, rank), test)[1])
    return rows


# --------------------------------------------------------------------------------------------- texture


@torch.no_grad()
def cell_statistics(model: AnomalyModel, images: np.ndarray, window: int) -> torch.Tensor:
    """[N, 7, H/8, W/8]: local mean and std of each colour channel and log mean gradient energy of the
    grey image, over `window` x `window` cells, on the model's illumination-normalised input."""
    out = []
    for start in range(0, len(images), 16):
        x = model.preprocess(torch.from_numpy(images[start : start + 16]))
        grey = x.mean(dim=1, keepdim=True)
        gradient = F.pad((grey[..., :, 1:] - grey[..., :, :-1]).abs(), (0, 1)) + F.pad(
            (grey[..., 1:, :] - grey[..., :-1, :]).abs(), (0, 0, 0, 1)
        )
        parts = [F.avg_pool2d(x, CELL), F.avg_pool2d(x * x, CELL), F.avg_pool2d(gradient, CELL)]
        if window > 1:
            parts = [
                F.avg_pool2d(p, window, stride=1, padding=window // 2, count_include_pad=False) for p in parts
            ]
        mean, square, energy = parts
        std = (square - mean * mean).clamp_min(0).add(1e-6).sqrt()
        out.append(torch.cat([mean, std, energy.add(1e-3).log()], dim=1))
    return torch.cat(out)


class TextureBranch:
    """A Gaussian over good cells' statistics; map = Mahalanobis distance, standardised per position."""

    def __init__(self, model: AnomalyModel, fit: np.ndarray, window: int) -> None:
        self.model, self.window = model, window
        cells = cell_statistics(model, fit, window)
        rows = cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1]).double()
        self.mean = rows.mean(dim=0)
        covariance = torch.cov((rows - self.mean).T)
        level = covariance.diagonal().mean()
        shrunk = (1 - TEXTURE_SHRINKAGE) * covariance + TEXTURE_SHRINKAGE * level * torch.eye(len(covariance))
        self.precision = torch.linalg.inv(shrunk)
        distances = self.distance(cells)[:, 0]

        def smooth(grid: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(grid[None, None], 3, 1, 1, count_include_pad=False)[0, 0]

        self.position_mean = smooth(distances.mean(dim=0))
        spread = smooth(distances.std(dim=0))
        self.position_std = spread.clamp_min(0.5 * spread.median())
        self.blur = UpsampleBlur(model.config.smoothing_sigma)

    def distance(self, cells: torch.Tensor) -> torch.Tensor:
        centred = cells.permute(0, 2, 3, 1).double() - self.mean
        squared = torch.einsum("nhwc,cd,nhwd->nhw", centred, self.precision, centred)
        return squared.clamp_min(0).sqrt().float()[:, None]

    def maps(self, images: np.ndarray) -> Maps:
        z = (
            self.distance(cell_statistics(self.model, images, self.window)) - self.position_mean
        ) / self.position_std
        upsampled = F.interpolate(z, size=images.shape[1:3], mode="bilinear", align_corners=False)
        return self.blur(upsampled)[:, 0].numpy()


def in_good_units(maps: Maps, calibration_maps: Maps) -> Maps:
    """Maps in units of the held-back good images' max scores (mean 0, std 1), so branches can be fused."""
    peaks = calibration_maps.reshape(len(calibration_maps), -1).max(axis=1)
    return (maps - peaks.mean()) / max(float(peaks.std()), 1e-6)


def run_texture(data: CategoryData) -> dict[str, Entry]:
    run = fitted(data, RECORDED_DEFAULT)
    model, calibration, test = run.model, run.calibration, run.test
    deep = in_good_units(score(model, test)[1], score(model, calibration)[1])
    rows = {"deep": evaluate(data, deep)}
    for window in TEXTURE_WINDOWS:
        branch = TextureBranch(model, run.fit, window)
        texture = in_good_units(branch.maps(test), branch.maps(calibration))
        rows[f"tex{window}"] = evaluate(data, texture)
        rows[f"max{window}"] = evaluate(data, np.maximum(deep, texture))
        rows[f"sum{window}"] = evaluate(data, deep + TEXTURE_SUM_WEIGHT * texture)
    return rows


# ------------------------------------------------------------------------------------------------- tta


def flipped_maps(model: AnomalyModel, test: np.ndarray, axes: tuple[int, ...]) -> Maps:
    """Maps of the test images flipped along `axes` (1 = rows, 2 = columns), flipped back."""
    flipped = np.ascontiguousarray(np.flip(test, axis=axes))
    return np.flip(score(model, flipped)[1], axis=axes)


def run_tta(data: CategoryData) -> dict[str, Entry]:
    rows: dict[str, Entry] = {}
    for size in (256, 320):
        run = fitted(data, RECORDED_DEFAULT.model_copy(update={"image_size": size}))
        model, test = run.model, run.test
        plain = score(model, test)[1]
        horizontal = flipped_maps(model, test, (2,))
        rows[f"s{size}"] = evaluate(data, plain)
        rows[f"s{size}_hflip"] = evaluate(data, (plain + horizontal) / 2)
        if size == 256:
            vertical = flipped_maps(model, test, (1,))
            rows[f"s{size}_hvflip"] = evaluate(data, (plain + horizontal + vertical) / 3)
    return rows


# --------------------------------------------------------------------------------------------- k-means


@torch.no_grad()
def lloyd(patches: torch.Tensor, centres: torch.Tensor, iterations: int) -> torch.Tensor:
    """`iterations` k-means steps from `centres` (an emptied cluster keeps its centre)."""
    for _ in range(iterations):
        nearest = torch.cat(
            [
                (chunk @ centres.T - 0.5 * (centres * centres).sum(dim=1)).argmax(dim=1)
                for chunk in torch.split(patches, 8192)
            ]
        )
        sums = torch.zeros_like(centres).index_add_(0, nearest, patches)
        counts = torch.bincount(nearest, minlength=len(centres)).to(patches.dtype)
        filled = counts > 0
        centres = centres.clone()
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def run_bank_kmeans(data: CategoryData) -> dict[str, Entry]:
    import vision.bank_fit as bank_module

    coreset = bank_module.coreset_bank
    rows = {}
    for iterations in (0, 1, 5):

        def refined(
            patches: np.ndarray, size: int, seed: int, progress: object = None, steps: int = iterations
        ) -> np.ndarray:
            start = torch.from_numpy(coreset(patches, size, seed))
            return lloyd(torch.from_numpy(patches), start, steps).numpy()

        bank_module.coreset_bank = refined  # type: ignore[assignment]
        try:
            run = fitted(data, RECORDED_DEFAULT)
            model, test = run.model, run.test
        finally:
            bank_module.coreset_bank = coreset  # type: ignore[assignment]
        rows["coreset" if iterations == 0 else f"kmeans{iterations}"] = evaluate(data, score(model, test)[1])
    return rows


# -------------------------------------------------------------------------------------------- ensemble


def run_ensemble(data: CategoryData) -> dict[str, Entry]:
    """lite0 and lite2 (default head, bank 2048) and their mean, each map divided by its own calibrated
    threshold: the rule of the plant verifier's ensemble (`edgeinspect verify --model A --model B`)."""
    from vision.calibration import threshold_from_good_scores

    rows, normalised = {}, []
    for backbone in ("efficientnet_lite0", "efficientnet_lite2"):
        settings = RECORDED_DEFAULT.model_copy(update={"backbone": backbone})
        run = fitted(data, settings)
        model, calibration, test = run.model, run.calibration, run.test
        scores, _ = score(model, calibration)
        threshold = threshold_from_good_scores(scores, settings.target_false_reject_rate)
        maps = score(model, test)[1] / threshold
        rows[backbone.removeprefix("efficientnet_")] = evaluate(data, maps)
        normalised.append(maps)
    rows["mean"] = evaluate(data, np.mean(normalised, axis=0))
    member_peaks = [m.reshape(len(m), -1).max(axis=1) for m in normalised]
    # The verifier's rule exactly: the mean of each model's image score over its threshold; and the
    # "any member flags it" rule (max), which needs no threshold of its own either.
    for name, peaks in (("verifier", np.mean(member_peaks, axis=0)), ("any", np.max(member_peaks, axis=0))):
        rows[name] = {
            **rows["mean"],
            "image": metrics.image_auroc(data.labels, peaks),
            "kinds": metrics.auroc_per_kind(data.kinds, peaks, good=GOOD),
        }
    # At the operating point (each score over its threshold >= 1): what the line sees.
    for name, peaks in zip(("lite0", "lite2"), member_peaks, strict=True):
        rows[name].update(operating_point(data.labels, peaks))
    rows["verifier"].update(operating_point(data.labels, np.mean(member_peaks, axis=0)))
    rows["any"].update(operating_point(data.labels, np.max(member_peaks, axis=0)))
    return rows


def operating_point(labels: np.ndarray, normalised: np.ndarray) -> Entry:
    """F1 of the defect class, share of defects caught and of good parts rejected at threshold 1."""
    flagged, defect = normalised >= 1.0, np.asarray(labels, dtype=bool)
    caught, rejected = float(flagged[defect].mean()), float(flagged[~defect].mean())
    true_positive = float((flagged & defect).sum())
    f1 = 2 * true_positive / max(1.0, float(flagged.sum() + defect.sum()))
    return {"f1": f1, "caught": caught, "good_rejected": rejected}


PARETO_SCORES = Path(__file__).resolve().parents[1] / "pareto" / "work"
ENSEMBLE_MEMBERS = ("lite0-b2048", "lite2-b2048")


def ensemble_on_holdout(
    work: Path, members: tuple[str, ...] = ENSEMBLE_MEMBERS
) -> dict[str, dict[str, Entry]]:
    """The verifier's ensemble rule measured once on HOLDOUT, from the Pareto benchmark's recorded ONNX
    scores and thresholds of the two members (nothing is fitted or chosen here). Image AUROC only: the
    Pareto benchmark keeps scores, not maps."""
    import onnx

    from vision.export import META_THRESHOLD

    table: dict[str, dict[str, Entry]] = {}
    for category in hard_suite.HOLDOUT:
        records, normalised = {}, []
        for member in members:
            record = json.loads((work / "scores" / member / f"{category}.json").read_text())
            model = onnx.load(str(work / "models" / member / f"{category}.onnx"), load_external_data=False)
            threshold = float({p.key: p.value for p in model.metadata_props}[META_THRESHOLD])
            normalised.append(np.asarray(record["scores"]) / threshold)
            records[member] = record
        labels, kinds = (
            np.asarray(records[members[0]]["labels"]),
            records[members[0]]["kinds"],
        )
        rows: dict[str, Entry] = {}
        for member, values in zip(members, normalised, strict=True):
            rows[member.split("-")[0]] = _image_entry(labels, kinds, values)
        rows["verifier"] = _image_entry(labels, kinds, np.mean(normalised, axis=0))
        rows["any"] = _image_entry(labels, kinds, np.max(normalised, axis=0))
        table[category] = rows
    return table


def _image_entry(labels: np.ndarray, kinds: list[str], scores: np.ndarray) -> Entry:
    return {
        "image": metrics.image_auroc(labels, scores),
        "pixel": float("nan"),
        "kinds": metrics.auroc_per_kind(kinds, scores, good=GOOD),
        **operating_point(labels, scores),
    }


# ------------------------------------------------------------------------------------------------ pool


class _MaxPoolingFunctional:
    """`torch.nn.functional` with the plain `avg_pool2d(x, k)` calls turned into max pools: in
    `AnomalyModel.extract_features` that is the pooling of finer-than-grid blocks onto the patch grid."""

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)

    def avg_pool2d(self, x: torch.Tensor, kernel: int, **options: Any) -> torch.Tensor:
        return F.max_pool2d(x, kernel) if not options else F.avg_pool2d(x, kernel, **options)


def run_pool(data: CategoryData) -> dict[str, Entry]:
    import vision.models.anomaly as anomaly_module

    rows = {}
    run = fitted(data, RECORDED_DEFAULT)
    model, test = run.model, run.test
    rows["avg"] = evaluate(data, score(model, test)[1])
    anomaly_module.F = _MaxPoolingFunctional()  # type: ignore[assignment]
    try:
        run = fitted(data, RECORDED_DEFAULT)
        model, test = run.model, run.test
        rows["max"] = evaluate(data, score(model, test)[1])
    finally:
        anomaly_module.F = F
    return rows


# ---------------------------------------------------------------------------------------------- search

SEARCH_VARIANTS = ((256, 128), (256, 256), (512, 256), (512, 384))


def run_search(data: CategoryData) -> dict[str, Entry]:
    """Exact bank search against coarse-to-fine (`cC-rR`: C coarse entries, R refined patches)."""
    exact = fitted(data, RECORDED_DEFAULT).model
    rows = {"exact": evaluate(data, score(exact, fitted_test(data))[1])}
    for coarse, refine in SEARCH_VARIANTS:
        settings = ModelSettings(coarse_entries=coarse, refined_patches=refine)
        model = fitted(data, settings).model
        rows[f"c{coarse}-r{refine}"] = evaluate(data, score(model, fitted_test(data))[1])
    return rows


def fitted_test(data: CategoryData) -> np.ndarray:
    return prepare_images(list(data.test), ModelSettings().image_size)


# ------------------------------------------------------------------------------------------------ grid

GRID_VARIANTS: dict[str, tuple[int, int]] = {  # name -> (patch stride px, refined patches; 0 = exact)
    "stride8": (8, 256),
    "stride4-exact": (4, 0),
    "stride4-r1024": (4, 1024),
}


def fitted_on_grid(data: CategoryData, stride: int, refined: int) -> AnomalyModel:
    """The default model with its patch grid at `stride` px (not a setting yet), fitted as `fitted` does."""
    settings = ModelSettings()
    base = model_config(settings)
    coarse = base.coarse_entries if refined else 0
    config = replace(base, patch_stride=stride, coarse_entries=coarse, refined_patches=refined)
    train = prepare_images(list(data.train), settings.image_size)
    fit_idx, _ = split_holdout(len(train), HOLDOUT_FRACTION, settings.seed)
    torch.manual_seed(settings.seed)
    model = AnomalyModel(config, pretrained=True)
    fit_head(model, train[fit_idx], settings.seed, progress=False)
    return model.eval()


def run_grid(data: CategoryData) -> dict[str, Entry]:
    """A finer patch grid (stride 4: 4x the patches, block 1 at its own resolution) for thin scratches
    and small spots, affordable only with the coarse-to-fine search."""
    test = fitted_test(data)
    return {
        name: evaluate(data, score(fitted_on_grid(data, stride, refined), test)[1])
        for name, (stride, refined) in GRID_VARIANTS.items()
    }


EXPERIMENTS: dict[str, Callable[[CategoryData], dict[str, Entry]]] = {
    "bank-rank": run_bank_rank,
    "texture": run_texture,
    "tta": run_tta,
    "pool": run_pool,
    "bank-kmeans": run_bank_kmeans,
    "ensemble": run_ensemble,
    "search": run_search,
    "grid": run_grid,
}
WHAT: dict[str, str] = {
    "bank-rank": "low-rank memory bank: `svdR` = bank matrix factorized at rank R (residual kept), "
    "`truncR` = whitened features and bank truncated to that subspace",
    "texture": "texture-statistics branch over 1/3/5-cell windows: `texW` alone, `maxW` / `sumW` fused "
    "with the deep map (`deep`)",
    "tta": "test-time flips (`_hflip`, `_hvflip`) and input size 256 vs 320",
    "pool": "block 1 (stride 4) brought onto the stride-8 patch grid by max pooling instead of averaging "
    "(aimed at thin scratches and small spots; no added cost per frame)",
    "bank-kmeans": "the greedy coreset bank (`coreset`, the default) refined by 1 or 5 k-means steps over "
    "all good patches (`kmeansN`): entries move to where normal patches are dense instead of covering "
    "outliers; same bank size, no added cost per frame",
    "search": "nearest-neighbour search over the bank: `exact` (every patch against all 2,048 entries, "
    "the default when tried) against coarse-to-fine `cC-rR` (every patch against the bank's first C "
    "entries, a coarse coreset, then the R most anomalous-looking patches against the whole bank; the "
    "rest mapped onto the exact scale by a line fitted on held-out good patches); a cheaper search per "
    "frame",
    "grid": "patch grid: `stride8` (the default: 32 x 32 patches, coarse-to-fine 256/256) against a "
    "stride-4 grid (64 x 64 patches; block 1 at its own resolution, blocks 2 and 4 upsampled), searched "
    "exactly or coarse-to-fine with 1,024 refined patches; aimed at thin scratches and small spots",
    "ensemble-holdout": "the verifier's ensemble rules (lite0 + lite2, bank 2048) on HOLDOUT: "
    "`verifier` = mean, `any` = max",
    "ensemble": "lite0 and lite2 (default head, bank 2048), each map over its own calibrated threshold, "
    "combined as the plant verifier can: `mean` of the maps, `verifier` = mean of the image scores "
    "(`--ensemble mean`), `any` = their max (`--ensemble any`); about twice the cost per frame",
}


# ---------------------------------------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def markdown(log: dict[str, Any]) -> str:
    lines = [
        "# Detector ideas beyond the settings (chosen on DEV categories only)",
        "",
        f"DEV = {', '.join(hard_suite.DEV)}; HOLDOUT categories were never scored here. Each idea is "
        "applied to the default model of the time (lite0, bank 2048, whitened, k=3, sigma 8, exact bank "
        "search) fitted as `hard_search.py` fits it. Only the lite0 + lite2 ensemble beat the default on "
        "DEV (+0.6 point image AUROC with the mean rule; at the operating point the `any` rule has the best "
        "F1), at about twice the cost per frame: a plant verifier's model, not the station's. It was then "
        "measured once on HOLDOUT (`ensemble-holdout`). `search` is a speed idea, kept because it lost "
        "nothing on DEV: coarse-to-fine search `c256-r256` scored image AUROC 0.851 as exact search did "
        "(pixel 0.921 vs 0.923) for about 4 ms less per frame; it became the default and was measured once "
        "on HOLDOUT by `benchmarks/pareto`. `grid` (a stride-4 patch grid, affordable only with that "
        "search) scored 0.849 against 0.851 (carpet -3.5, faint stains -4 points) and was dropped. "
        "Everything else was dropped unmeasured on HOLDOUT. "
        "Generated by `benchmarks/vision/hard_branches.py`.",
    ]
    kinds = hard_suite.DEFECT_KINDS
    for name, experiment in log.items():
        categories = list(experiment["categories"])
        lines += ["", f"## {name}", "", WHAT[name.split(" ")[0]] + ".", ""]
        if experiment.get("note"):
            lines += [experiment["note"], ""]
        lines.append(
            "| variant | "
            + " | ".join(categories)
            + " | mean image | mean pixel | "
            + " | ".join(kinds)
            + " |"
        )
        lines.append("|" + "---|" * (len(categories) + 3 + len(kinds)))
        variants = list(experiment["categories"][categories[0]])
        for variant in variants:
            rows = [experiment["categories"][c][variant] for c in categories]
            per_kind = [_mean([r["kinds"][k] for r in rows if k in r["kinds"]]) for k in kinds]
            lines.append(
                f"| {variant} | "
                + " | ".join(f"{r['image']:.3f}" for r in rows)
                + f" | {_mean([r['image'] for r in rows]):.3f} | {_mean([r['pixel'] for r in rows]):.3f} | "
                + " | ".join(f"{v:.3f}" for v in per_kind)
                + " |"
            )
        lines += operating_point_table(experiment, categories, variants)
    return "\n".join(lines) + "\n"


def operating_point_table(
    experiment: dict[str, Any], categories: list[str], variants: list[str]
) -> list[str]:
    """Means over categories of F1 / defects caught / good parts rejected at each row's threshold."""
    measured = [v for v in variants if all("f1" in experiment["categories"][c][v] for c in categories)]
    if not measured:
        return []
    lines = ["", "At the operating point (score over threshold >= 1), means over the categories:", ""]
    lines += ["| variant | F1 | defects caught | good parts rejected |", "|---|---|---|---|"]
    for variant in measured:
        rows = [experiment["categories"][c][variant] for c in categories]
        f1, caught, rejected = (_mean([r[k] for r in rows]) for k in ("f1", "caught", "good_rejected"))
        lines.append(f"| {variant} | {f1:.3f} | {100 * caught:.1f} % | {100 * rejected:.1f} % |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "ensemble-holdout", "report"])
    parser.add_argument("--work", type=Path, default=PARETO_SCORES, help="ensemble-holdout: Pareto cache")
    parser.add_argument(
        "--members", default=",".join(ENSEMBLE_MEMBERS), help="ensemble-holdout: Pareto variant names"
    )
    parser.add_argument("--data", type=Path, default=Path("/tmp/vsearch/dev"))
    parser.add_argument("--categories", default=",".join(hard_suite.DEV))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    log: dict[str, Any] = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if args.experiment == "ensemble-holdout":
        members = tuple(args.members.split(","))
        key = "ensemble-holdout" + ("" if members == ENSEMBLE_MEMBERS else f" ({' + '.join(members)})")
        log[key] = {
            "categories": ensemble_on_holdout(args.work, members),
            "note": "HOLDOUT, measured once after the DEV run above, from the Pareto benchmark's recorded "
            f"ONNX scores (`benchmarks/pareto/work`, members {', '.join(members)}); image AUROC only "
            "(pixel n/a).",
        }
        RESULTS_JSON.write_text(json.dumps(log, indent=1) + "\n")
    elif args.experiment != "report":
        categories = dev_categories(parser, args, "ideas are tried on DEV categories only")
        entry = log.setdefault(args.experiment, {"categories": {}})
        for category in categories:
            entry["categories"][category] = EXPERIMENTS[args.experiment](load_category(args.data, category))
            summary = {k: round(v["image"], 4) for k, v in entry["categories"][category].items()}
            print(json.dumps({"experiment": args.experiment, category: summary}), flush=True)
            HERE.mkdir(parents=True, exist_ok=True)
            RESULTS_JSON.write_text(json.dumps(log, indent=1) + "\n")
    RESULTS_MD.write_text(markdown(log))


if __name__ == "__main__":
    main()
