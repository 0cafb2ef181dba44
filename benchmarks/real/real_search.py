"""Detector search on REAL images: one named variant of `ModelSettings` at a time, DEV split only.

Synthetic surfaces separate methods but do not predict real photographs (a head tuned on them fell 8 points
behind anomalib's PaDiM and PatchCore on real parts), so choices are made here, on three real sets imported
for benchmark use only (never shipped):

    DEV     = elpv_mono, mtd_dev, ksdd_dev           (choose here)
    HOLDOUT = elpv_poly, mtd_holdout, ksdd_holdout   (`--holdout` scores the chosen variants once)

ELPV electroluminescence cells (`edgeinspect dataset import elpv`, CC BY-NC-SA), MTD magnetic tiles
(`... import mtd`), KolektorSDD commutators (`... import ksdd`, CC BY-NC-SA).

The harness is `benchmarks/vision/hard_search.py`'s (fit with the real `vision.train.fit_model` on the 80/20
split `train_model` uses, score with the PyTorch module the ONNX file is exported from, backbone outputs
memoised across variants). Figures per variant: image AUROC of good vs defective (rating 1), AUROC of the
uncertain ratings (2/3 "likely", 1/3 "unlikely") apart, and recall at <= 1 % false rejects on the test good
cells; pixel AUROC where the set has masks (MTD, KolektorSDD). Every variant is logged, kept or dropped, in
`benchmarks/real/search.json` and `search.md`. Usage:

    .venv/bin/edgeinspect dataset import elpv --out /tmp/real   (and mtd, ksdd --source CHECKOUT)
    .venv/bin/python benchmarks/real/real_search.py --data /tmp/real --variants default,exact
    .venv/bin/python benchmarks/real/real_search.py --data /tmp/real --variants default,best --holdout
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vision"))

from hard_search import BackboneCache, CategoryData, _cell, caching_model_class, load_category, score

import vision.train as train_module
from vision import metrics
from vision.config import ModelSettings
from vision.train import prepare_images, split_holdout

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "search.json"
RESULTS_MD = HERE / "search.md"
DEV = ("elpv_mono", "mtd_dev", "ksdd_dev")
HOLDOUT = ("elpv_poly", "mtd_holdout", "ksdd_holdout")
HOLDOUT_FRACTION = 0.2  # as `train_model`
MAX_FALSE_REJECTS = 0.01
ELPV_KINDS = ("defective", "likely", "unlikely")  # "defective" alone is ELPV's strict defect class

# name -> (ModelSettings overrides on today's default, why it was tried).
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    # Overrides of ModelSettings(); the bank-era variants name their head and neighbourhood explicitly, as
    # the default moved to the Gaussian head on 2026-12-06.
    "bank": (
        {"head": "bank", "neighbourhood": 1},
        "the bank head, today's default until 2026-12-06 (chosen on synthetic DEV surfaces)",
    ),
    "exact": (
        {"head": "bank", "neighbourhood": 1, "coarse_entries": 0},
        "exact bank search instead of coarse-to-fine",
    ),
    "no_illum": (
        {"head": "bank", "neighbourhood": 1, "normalize_illumination": False},
        "keep each image's brightness and contrast",
    ),
    "nbhd3": ({"head": "bank", "neighbourhood": 3}, "PatchCore's 3x3 locally aware aggregation"),
    "norm_none": ({"head": "bank", "neighbourhood": 1, "feature_norm": "none"}, "no whitening"),
    "pos_0": (
        {"head": "bank", "neighbourhood": 1, "position_strength": 0.0},
        "no per-position standardisation",
    ),
    "pos_1": (
        {"head": "bank", "neighbourhood": 1, "position_strength": 1.0},
        "full per-position standardisation",
    ),
    "knn1": ({"head": "bank", "neighbourhood": 1, "knn": 1}, "nearest entry only"),
    "sigma_4": ({"head": "bank", "neighbourhood": 1, "smoothing_sigma": 4.0}, "less smoothing"),
    "bank_8192": ({"head": "bank", "neighbourhood": 1, "memory_bank_size": 8192}, "4x the bank"),
    "blocks_123": (
        {"head": "bank", "neighbourhood": 1, "feature_blocks": (1, 2, 3)},
        "block 3 instead of 4 (less semantic, finer)",
    ),
    "blocks_1234": ({"head": "bank", "neighbourhood": 1, "feature_blocks": (1, 2, 3, 4)}, "add block 3"),
    "blocks_234": (
        {"head": "bank", "neighbourhood": 1, "feature_blocks": (2, 3, 4)},
        "drop the shallowest block",
    ),
    "size_320": ({"head": "bank", "neighbourhood": 1, "image_size": 320}, "320 px input"),
    "lite2": ({"head": "bank", "neighbourhood": 1, "backbone": "efficientnet_lite2"}, "the heavier backbone"),
    "gaussian": ({"head": "gaussian", "neighbourhood": 1}, "per-position Gaussian, 64 principal directions"),
    "gaussian_k32": (
        {"head": "gaussian", "gaussian_components": 32, "neighbourhood": 1},
        "Gaussian, 32 directions",
    ),
    "gaussian_k128": (
        {"head": "gaussian", "gaussian_components": 128, "neighbourhood": 1},
        "Gaussian, 128 directions",
    ),
    "gaussian_nbhd3": (
        {"head": "gaussian", "neighbourhood": 3},
        "Gaussian on 3x3-aggregated patches (today's default since 2026-12-06)",
    ),
    "gaussian_s4": (
        {"head": "gaussian", "smoothing_sigma": 4.0, "neighbourhood": 1},
        "Gaussian, less smoothing",
    ),
    "gaussian_norm_none": (
        {"head": "gaussian", "feature_norm": "none", "neighbourhood": 1},
        "Gaussian without whitening",
    ),
    "g_nbhd3_k32": (
        {"head": "gaussian", "neighbourhood": 3, "gaussian_components": 32},
        "the round-2 best with half the directions (a quarter of the head's memory)",
    ),
    "g_nbhd5": ({"head": "gaussian", "neighbourhood": 5}, "Gaussian on 5x5-aggregated patches"),
    "g_nbhd3_s12": (
        {"head": "gaussian", "neighbourhood": 3, "smoothing_sigma": 12.0},
        "Gaussian, 3x3 aggregation, more smoothing",
    ),
    "g_nbhd3_320": (
        {"head": "gaussian", "neighbourhood": 3, "image_size": 320},
        "Gaussian, 3x3 aggregation, 320 px (ELPV cells are 300 px: a finer patch grid, no new detail)",
    ),
    "g_nbhd3_b1234": (
        {"head": "gaussian", "neighbourhood": 3, "feature_blocks": (1, 2, 3, 4)},
        "Gaussian, 3x3 aggregation, block 3 added",
    ),
    "default": (
        {},
        "today's default: ModelSettings() (`head: auto`: the Gaussian on ELPV and MTD, the bank with 3x3 "
        "aggregation on KolektorSDD since the boundary moved to 0.72: benchmarks/real/head_choice.md)",
    ),
    "g3_384": (
        {"image_size": 384},
        "today's default at 384 px: MTD's small defects (blowholes, cracks under 8 px at 256 px input) are "
        "never caught (the eval's score-vs-size table)",
    ),
    "g3_512": ({"image_size": 512}, "today's default at 512 px (a 64x64 patch grid)"),
    # Round 6 (2026-12-06, night): KolektorSDD, tall commutators with fine cracks, where the bank leads.
    "bank_512": ({"head": "bank", "neighbourhood": 1, "image_size": 512}, "the bank head at 512 px"),
    "bank3_512": ({"head": "bank", "image_size": 512}, "the bank head, 3x3 aggregation, 512 px"),
    "g3_lite2": (
        {"backbone": "efficientnet_lite2"},
        "today's default on EfficientNet-Lite2 (about 3x Lite0's compute: the heavy parent compression "
        "would have to make fast)",
    ),
    # Round 9 (2026-12-07, later): the map's blur against pixel AUROC on the masked real sets.
    "g3_s4": ({"smoothing_sigma": 4.0}, "today's default, half the map blur (thin cracks, pixel AUROC)"),
    "g3_s2": ({"smoothing_sigma": 2.0}, "today's default, a quarter of the map blur"),
    "g3_s12": ({"smoothing_sigma": 12.0}, "today's default, 1.5x the map blur (large low-contrast defects)"),
    "g3_s16": ({"smoothing_sigma": 16.0}, "today's default, twice the map blur"),
    "g3_224": ({"image_size": 224}, "today's default at 224 px: 1.3x less compute"),
    "g3_192": ({"image_size": 192}, "today's default at 192 px: 1.8x less compute"),
    "g3_shift1": (
        {"gaussian_shift": 1},
        "today's default, a patch may match its position's Gaussian 1 cell (8 px) away",
    ),
    "g3_k128": (
        {"gaussian_components": 128},
        "today's default with 128 principal directions (4x the head's memory; a stride-4 try's control)",
    ),
    "g3_k64": (
        {"gaussian_components": 64, "gaussian_rank": 0},
        "the default until round 15: 64 whole directions",
    ),
    "g3_k128_r32": (
        {"gaussian_components": 128, "gaussian_rank": 32},
        "128 directions, each position keeping its 32 strongest precision directions (the head's size at 64)",
    ),
    "g3_k128_r16": (
        {"gaussian_components": 128, "gaussian_rank": 16},
        "128 directions, each position keeping its 16 strongest (half the head's size at 64)",
    ),
    "g3_b1245": (
        {"feature_blocks": (1, 2, 4, 5)},
        "today's default plus block 5 (192 channels at stride 32: larger, more semantic context)",
    ),
    "g3_b12456": (
        {"feature_blocks": (1, 2, 4, 5, 6)},
        "today's default plus blocks 5 and 6 (the last block before the classifier's head)",
    ),
    "g3_gaussian": (
        {"head": "gaussian"},
        "today's default with the Gaussian head named outright (what `auto` gives a set it judges aligned)",
    ),
}


NATIVE_SIZE = 300  # loaded at this size; each variant resizes to its input size (ELPV cells are 300 px)
# KolektorSDD's 500 x 1260 px commutators keep their fine cracks for the larger input sizes tried.
NATIVE_SIZES = {"ksdd_dev": 768, "ksdd_holdout": 768}


def split_overrides(overrides: dict[str, Any]) -> tuple[ModelSettings, dict[str, Any]]:
    """(settings, the rest): overrides of `AnomalyModelConfig` fields that `ModelSettings` does not expose."""
    exposed = {k: v for k, v in overrides.items() if k in ModelSettings.model_fields}
    return ModelSettings(**exposed), {k: v for k, v in overrides.items() if k not in exposed}


def run_variant(data: CategoryData, settings: ModelSettings, config: dict[str, Any]) -> dict[str, Any]:
    train = prepare_images(list(data.train), settings.image_size)
    fit_idx, held_idx = split_holdout(len(train), HOLDOUT_FRACTION, settings.seed)
    started = time.perf_counter()
    original = train_module.model_config
    train_module.model_config = lambda s: dataclasses.replace(original(s), **config)  # type: ignore[misc]
    try:  # `auto` decided as `edgeinspect train` decides it (since round 16)
        _, _, model = train_module.fit_deciding_head(train, fit_idx, held_idx, settings, progress=False)
    finally:
        train_module.model_config = original  # type: ignore[misc]
    fitted = time.perf_counter()
    scores, maps = score(model, prepare_images(list(data.test), settings.image_size))
    kinds = np.array(data.kinds)
    result: dict[str, Any] = {"fit_s": fitted - started, "score_s": time.perf_counter() - fitted}
    elpv = "defective" in data.kinds
    # ELPV's strict class is "defective" (rating 1); its uncertain ratings are reported apart.
    strict = (kinds == "good") | (kinds == "defective") if elpv else np.ones(len(kinds), bool)
    result["auroc_defective"] = metrics.image_auroc(data.labels[strict], scores[strict])
    result["recall_at_1pct_fr"] = metrics.recall_at_false_reject_rate(
        data.labels[strict], scores[strict], MAX_FALSE_REJECTS
    )
    result["per_kind"] = metrics.auroc_per_kind(data.kinds, scores, good="good")
    if data.masks.any():
        result["pixel_auroc"] = metrics.pixel_auroc(data.masks, maps)
    for kind in ELPV_KINDS[1:] if elpv else ():
        result[f"auroc_{kind}"] = result["per_kind"].get(kind)
    return result


def _category_cell(figures: dict[str, Any] | None) -> str:
    """`AUROC / recall@1%FR` and, where the set has masks, `/ pixel AUROC`."""
    if figures is None:
        return "—"
    cell = f"{_cell(figures['auroc_defective'])} / {_cell(figures['recall_at_1pct_fr'])}"
    return cell + (f" / px {_cell(figures['pixel_auroc'])}" if "pixel_auroc" in figures else "")


def search_markdown(log: dict[str, Any]) -> str:
    lines = [
        "# Detector search on real images (ELPV solar cells, MTD magnetic tiles, KolektorSDD commutators)",
        "",
        f"DEV = {', '.join(DEV)} (choices made here); HOLDOUT = {', '.join(HOLDOUT)} (scored once, for the "
        "variants named in the holdout table). Each variant is today's default `ModelSettings` with the "
        "listed overrides, fitted with `vision.train.fit_model` on the 80/20 split of `train_model` and "
        "scored with the PyTorch module the ONNX export is made from. Per category: image AUROC of good vs "
        "defective (ELPV: rating 1 only) / recall = defects caught at <= 1 % false rejects of the test good "
        "images / pixel AUROC where the set has masks (MTD, KolektorSDD). Mean = mean image AUROC over the "
        "categories run. Generated by `benchmarks/real/real_search.py`.",
        "",
    ]
    for split in ("dev", "holdout"):
        rows = [(n, e) for n, e in log["variants"].items() if e.get(split)]
        if not rows:
            continue
        categories = DEV if split == "dev" else HOLDOUT
        base = log["variants"].get("bank", {}).get(split, {})
        lines += [
            f"## {split.upper()} ({', '.join(categories)})",
            "",
            "| Variant | Overrides | mean AUROC (sets run) | Δ vs bank (same sets) | "
            + " | ".join(categories)
            + " | fit s | why |",
            "|---|---|---|---|" + "---|" * len(categories) + "---|---|",
        ]
        for name, entry in rows:
            figures = entry[split]
            mean = float(np.mean([f["auroc_defective"] for f in figures.values()]))
            shared = [c for c in figures if c in base]
            delta = ""
            if shared:
                gain = np.mean([figures[c]["auroc_defective"] - base[c]["auroc_defective"] for c in shared])
                partial = len(shared) < len(categories)
                delta = f"{gain:+.3f}" + (f" ({', '.join(shared)} only)" if partial else "")
            overrides = ", ".join(f"{k}={v}" for k, v in entry["overrides"].items()) or "—"
            cells = " | ".join(_category_cell(figures.get(c)) for c in categories)
            fit = sum(f["fit_s"] for f in figures.values())
            lines.append(
                f"| {name} | {overrides} | {mean:.3f} | {delta} | {cells} | {fit:.0f} | {entry['why']} |"
            )
        lines.append("")
    notes = log.get("notes", [])
    if notes:
        lines += ["## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def load_log() -> dict[str, Any]:
    if RESULTS_JSON.exists():
        return json.loads(RESULTS_JSON.read_text())
    return {"dev": list(DEV), "holdout": list(HOLDOUT), "variants": {}}


def save_log(log: dict[str, Any]) -> None:
    RESULTS_JSON.write_text(json.dumps(log, indent=2) + "\n")
    RESULTS_MD.write_text(search_markdown(log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", required=True, help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--data", type=Path, default=Path("/tmp/real"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", action="store_true", help="score HOLDOUT (once, for chosen variants)")
    parser.add_argument("--redo", action="store_true", help="re-run variants already in the log")
    parser.add_argument("--categories", default=None, help="comma-separated subset of the split's sets")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")
    torch.set_num_threads(args.threads)
    split, categories = ("holdout", HOLDOUT) if args.holdout else ("dev", DEV)
    if args.categories:
        wanted = args.categories.split(",")
        if not set(wanted) <= set(categories):
            parser.error(f"--categories must be among {', '.join(categories)}")
        categories = tuple(wanted)
    cache = BackboneCache()
    train_module.AnomalyModel = caching_model_class(cache)  # type: ignore[misc]
    log = load_log()
    loaded: dict[str, CategoryData] = {}
    for name in names:
        overrides, why = VARIANTS[name]
        entry = log["variants"].setdefault(name, {"overrides": overrides, "why": why})
        entry.update(overrides=overrides, why=why)
        figures = entry.setdefault(split, {})
        for category in categories:
            if category in figures and not args.redo:
                continue
            if category not in loaded:
                size = NATIVE_SIZES.get(category, NATIVE_SIZE)
                loaded[category] = load_category(args.data, category, size)
            figures[category] = run_variant(loaded[category], *split_overrides(overrides))
            figures[category]["load_average_1min"] = os.getloadavg()[0]
            print(json.dumps({"variant": name, "split": split, category: figures[category]}), flush=True)
            save_log(log)


if __name__ == "__main__":
    main()
