"""Evaluate an exported model exactly as the edge box runs it (ONNX Runtime through `Inspector`).

Works on any folder in the MVTec AD layout and writes `metrics.json`, `metrics.md` and overlay PNGs, so
a model's numbers and pictures come from the very file that will be deployed. Besides the pooled metrics
it reports image AUROC per defect kind (each `test/<kind>/` folder against the good test images) and the
worst images: the highest-scoring good ones (false rejects) and the lowest-scoring defective ones (misses),
with overlays in `worst/`, because a mean hides exactly the cases a line complains about; and, where the
defects have masks, detection against defect size (`vision.defect_size`, `score_vs_size.png`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vision import defect_size, metrics
from vision.data.mvtec import GOOD, MvtecCategory, load_image, load_mask
from vision.inspector import Inspector
from vision.overlay import render_overlay

TRUTH_COLOR_BGR = (0, 255, 0)


def _heatmap_indices(labels: list[int], count: int) -> set[int]:
    """An even spread over the defective images and the good ones, about half each."""
    if count <= 0:
        return set()
    defective = [i for i, label in enumerate(labels) if label == 1]
    good = [i for i, label in enumerate(labels) if label == 0]
    wanted_defective = min(len(defective), max(count - min(len(good), count // 2), 0))
    wanted_good = min(len(good), count - wanted_defective)
    chosen: set[int] = set()
    for group, wanted in ((defective, wanted_defective), (good, wanted_good)):
        if wanted:
            chosen.update(group[int(i)] for i in np.linspace(0, len(group) - 1, wanted).round())
    return chosen


def _write_heatmap(path: Path, image_rgb: np.ndarray, result: Any, mask: np.ndarray) -> None:
    image_bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    overlay = render_overlay(image_bgr, result.anomaly_map, result.threshold, result.boxes)
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(overlay, contours, -1, TRUTH_COLOR_BGR, 1)
    cv2.imwrite(str(path), np.hstack([image_bgr, overlay]))


def worst_images(labels: Sequence[int], scores: Sequence[float], count: int) -> tuple[list[int], list[int]]:
    """(the `count` highest-scoring good images, highest first; the `count` lowest-scoring defective ones,
    lowest first) as indices. Equal scores keep the dataset order, so the choice is reproducible."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if len(labels) != len(scores):
        raise ValueError(f"labels and scores differ in length: {len(labels)} vs {len(scores)}")
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels)
    good, defective = np.flatnonzero(truth == 0), np.flatnonzero(truth == 1)
    false_rejects = good[np.argsort(-values[good], kind="stable")][:count]
    misses = defective[np.argsort(values[defective], kind="stable")][:count]
    return [int(i) for i in false_rejects], [int(i) for i in misses]


def _per_kind(
    dataset: MvtecCategory, scores: np.ndarray, threshold: float
) -> dict[str, dict[str, float | int | None]]:
    kinds = [item.defect_type for item in dataset.test]
    has_good = GOOD in kinds
    aurocs = metrics.auroc_per_kind(kinds, scores, good=GOOD) if has_good else {}
    report: dict[str, dict[str, float | int | None]] = {}
    for kind in dict.fromkeys(k for k in kinds if k != GOOD):
        chosen = np.array([k == kind for k in kinds])
        report[kind] = {
            "images": int(chosen.sum()),
            "image_auroc": aurocs.get(kind),
            "detected_at_threshold": float((scores[chosen] >= threshold).mean()),
        }
    return report


_WORST_PREFIX = {"false_rejects": "false_reject", "misses": "miss"}


def _write_worst(
    out: Path, dataset: MvtecCategory, size: int, results: list[Any], labels: list[int], count: int
) -> dict[str, list[dict[str, Any]]]:
    """Overlays of the false rejects and misses into `out/worst/`; their list for the report."""
    worst_dir = out / "worst"
    if worst_dir.exists():
        for old in worst_dir.glob("*.png"):  # a rerun must not leave the previous run's pictures behind
            old.unlink()
    worst_dir.mkdir(parents=True, exist_ok=True)
    false_rejects, misses = worst_images(labels, [r.score for r in results], count)
    listed: dict[str, list[dict[str, Any]]] = {"false_rejects": [], "misses": []}
    for group, indices in (("false_rejects", false_rejects), ("misses", misses)):
        for rank, index in enumerate(indices, start=1):
            item, result = dataset.test[index], results[index]
            stem = Path(item.path).stem
            name = f"{_WORST_PREFIX[group]}_{rank:02d}_{item.defect_type}_{stem}.png"
            mask = (
                load_mask(item.mask_path, size)
                if item.mask_path is not None
                else np.zeros((size, size), bool)
            )
            _write_heatmap(worst_dir / name, load_image(item.path, size), result, mask)
            listed[group].append(
                {
                    "path": str(Path(item.path).relative_to(dataset.root)),
                    "defect_type": item.defect_type,
                    "score": float(result.score),
                    "flagged": bool(result.score >= result.threshold),
                    "overlay": f"worst/{name}",
                }
            )
    return listed


def _score_vs_size(
    out: Path, dataset: MvtecCategory, size: int, scores: np.ndarray, threshold: float
) -> dict[str, Any] | None:
    """Detection per defect-size band and the scatter plot; None when no defect has a mask."""
    measured = [
        (defect_size.measure(item.mask_path, size), float(score), item.defect_type)
        for item, score in zip(dataset.test, scores, strict=True)
        if item.label == 1 and item.mask_path is not None
    ]
    kept = [(s, score, kind) for s, score, kind in measured if s is not None]
    if not kept:
        return None
    sizes, values, kinds = [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
    defect_size.write_plot(sizes, values, kinds, threshold, out / "score_vs_size.png")
    return {"bands": defect_size.size_bands(sizes, values, threshold), "plot": "score_vs_size.png"}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def evaluate(
    data_root: str | Path,
    category: str,
    model_path: str | Path,
    out_dir: str | Path,
    heatmaps: int = 8,
    progress: bool = True,
    threads: int = 2,
    worst: int = 5,
) -> dict[str, Any]:
    """Score every test image of `<data_root>/<category>/test`; return and write the metrics.

    `worst` false rejects and as many misses are written as overlays to `<out_dir>/worst/`."""
    if worst < 0:
        raise ValueError(f"worst must be >= 0, got {worst}")
    dataset = MvtecCategory.load(Path(data_root), category)
    if not dataset.test:
        raise ValueError(f"{Path(data_root) / category / 'test'} holds no test images")
    inspector = Inspector(model_path, threads=threads)
    info = inspector.info
    size = info.input_size
    out = Path(out_dir)
    heatmap_dir = out / "heatmaps"
    heatmap_dir.mkdir(parents=True, exist_ok=True)

    labels = [int(item.label) for item in dataset.test]
    sampled = _heatmap_indices(labels, heatmaps)
    scores, maps, masks, latencies, inference, results = [], [], [], [], [], []
    for index, item in enumerate(tqdm(dataset.test, desc=f"evaluating {category}", disable=not progress)):
        image = load_image(item.path, size)
        mask = load_mask(item.mask_path, size) if item.mask_path is not None else np.zeros((size, size), bool)
        started = time.perf_counter()
        result = inspector.inspect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        latencies.append((time.perf_counter() - started) * 1000.0)
        inference.append(result.inference_ms)
        scores.append(result.score)
        results.append(result)
        maps.append(result.anomaly_map.astype(np.float32))
        masks.append(mask.astype(bool))
        if index in sampled:
            name = f"{index:04d}_{item.defect_type}_{Path(item.path).stem}.png"
            _write_heatmap(heatmap_dir / name, image, result, masks[-1])

    truth = np.asarray(labels)
    image_scores = np.asarray(scores)
    # Pixel metrics over the images whose pixels are known: good ones, and defects with a mask.
    known = [i for i, item in enumerate(dataset.test) if item.label == 0 or item.mask_path is not None]
    pixel_maps, pixel_masks = np.stack([maps[i] for i in known]), np.stack([masks[i] for i in known])
    has_defects, has_good = bool(truth.any()), bool((truth == 0).any())
    has_both = has_defects and has_good
    best_f1, best_threshold = metrics.best_f1_threshold(truth, image_scores) if has_defects else (None, None)
    report: dict[str, Any] = {
        "category": category,
        "model": {"name": info.name, "version": info.version, "sha256": info.sha256, "path": str(model_path)},
        "images": {"total": len(labels), "defective": int(truth.sum()), "good": int((truth == 0).sum())},
        "image_auroc": metrics.image_auroc(truth, image_scores) if has_both else None,
        "pixel_auroc": metrics.pixel_auroc(pixel_masks, pixel_maps) if pixel_masks.any() else None,
        "aupro_0.3": metrics.aupro(pixel_masks, pixel_maps, max_fpr=0.3) if pixel_masks.any() else None,
        "threshold": info.threshold,
        "f1_at_threshold": metrics.f1_at_threshold(truth, image_scores, info.threshold)
        if has_defects
        else None,
        "false_reject_rate": metrics.false_reject_rate(truth, image_scores, info.threshold)
        if has_good
        else None,
        "best_f1": best_f1,
        "best_f1_threshold": best_threshold,
        "per_defect_kind": _per_kind(dataset, image_scores, info.threshold),
        "worst": _write_worst(out, dataset, size, results, labels, worst),
        "score_vs_defect_size": _score_vs_size(out, dataset, size, image_scores, info.threshold),
        "latency_ms": {"p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)},
        "inference_ms": {"p50": _percentile(inference, 50), "p99": _percentile(inference, 99)},
        "threads": threads,
    }
    report = json.loads(json.dumps(report, default=float))  # plain floats, no numpy scalars
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "metrics.md").write_text(metrics_markdown(report))
    return report


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def metrics_markdown(report: dict[str, Any]) -> str:
    """A short human-readable report of one evaluation."""
    rows = [
        ("Image AUROC", _fmt(report["image_auroc"])),
        ("Pixel AUROC", _fmt(report["pixel_auroc"])),
        ("AUPRO@0.3", _fmt(report["aupro_0.3"])),
        ("Threshold (calibrated)", _fmt(report["threshold"])),
        ("F1 at threshold", _fmt(report["f1_at_threshold"])),
        ("False-reject rate at threshold", _fmt(report["false_reject_rate"])),
        ("Best F1", _fmt(report["best_f1"])),
        ("Best-F1 threshold", _fmt(report["best_f1_threshold"])),
        (
            "Latency p50 / p99 (ms)",
            f"{_fmt(report['latency_ms']['p50'], 1)} / {_fmt(report['latency_ms']['p99'], 1)}",
        ),
        (
            "Inference p50 / p99 (ms)",
            f"{_fmt(report['inference_ms']['p50'], 1)} / {_fmt(report['inference_ms']['p99'], 1)}",
        ),
    ]
    images = report["images"]
    lines = [
        f"# Evaluation: {report['category']}",
        "",
        f"Model `{report['model']['name']}` version `{report['model']['version']}` "
        f"(sha256 `{report['model']['sha256'][:12]}…`), {images['total']} test images "
        f"({images['defective']} defective, {images['good']} good), {report['threads']} threads.",
        "",
        "| Metric | Value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        *_per_kind_markdown(report.get("per_defect_kind", {})),
        *_size_markdown(report.get("score_vs_defect_size")),
        *_worst_markdown(report.get("worst", {})),
    ]
    return "\n".join(lines)


def _per_kind_markdown(per_kind: dict[str, Any]) -> list[str]:
    if not per_kind:
        return []
    lines = [
        "## Per defect kind",
        "",
        "Image AUROC of each kind against the good test images; detected = share at or above the threshold.",
        "",
        "| Defect kind | Images | Image AUROC | Detected at threshold |",
        "|---|---|---|---|",
    ]
    for kind, values in per_kind.items():
        lines.append(
            f"| {kind} | {values['images']} | {_fmt(values['image_auroc'])} | "
            f"{_fmt(values['detected_at_threshold'], 2)} |"
        )
    return [*lines, ""]


def _size_markdown(by_size: dict[str, Any] | None) -> list[str]:
    if not by_size:
        return []
    lines = [
        "## Detection against defect size",
        "",
        "Bands by the defect's equivalent diameter (a disc of the same area) at the model's input; a patch "
        f"is {defect_size.PATCH_STRIDE} px. Score / threshold >= 1 is flagged. Plot: "
        f"[{by_size['plot']}]({by_size['plot']}).",
        "",
        "| Size at input | Images | Detected at threshold | Median score / threshold "
        "| Median size in source |",
        "|---|---|---|---|---|",
    ]
    for row in by_size["bands"]:
        lines.append(
            f"| {row['band']} | {row['images']} | {_fmt(row['detected_at_threshold'], 2)} | "
            f"{_fmt(row['median_score_over_threshold'], 2)} | {row['source_diameter_px_median']:.0f} px |"
        )
    return [*lines, ""]


def _worst_markdown(worst: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    titles = {
        "false_rejects": "Highest-scoring good images (false rejects when flagged)",
        "misses": "Lowest-scoring defective images (misses when not flagged)",
    }
    for group, title in titles.items():
        entries = worst.get(group, [])
        if not entries:
            continue
        lines += [
            f"## {title}",
            "",
            "| # | Image | Kind | Score | Flagged | Overlay |",
            "|---|---|---|---|---|---|",
        ]
        for rank, entry in enumerate(entries, start=1):
            flagged = "yes" if entry["flagged"] else "no"
            lines.append(
                f"| {rank} | `{entry['path']}` | {entry['defect_type']} | {entry['score']:.4f} | {flagged} | "
                f"[{Path(entry['overlay']).name}]({entry['overlay']}) |"
            )
        lines.append("")
    return lines
