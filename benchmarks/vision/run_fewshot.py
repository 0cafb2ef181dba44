"""Few-shot curve: image AUROC against the number of good training images, on the HOLDOUT categories.

A new line starts with a handful of good parts; how many does the default detector need? Each point
trains the default `ModelSettings` exactly as `edgeinspect train` does (`build_model_files`: 80 % fit,
20 % held back to calibrate the threshold) on the first N good images of the category, then evaluates
the exported ONNX file on the whole test split with `vision.evaluate` (the edge box's code path). The
subsets are nested, so a point differs from the previous one only by the images added.

Writes `benchmarks/vision/hard/fewshot.json`, `fewshot.md` and `fewshot.png`. Usage:

    .venv/bin/python benchmarks/vision/run_fewshot.py [--data /tmp/fewshot] [--counts 10,25,50,100,200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vision.config import ModelSettings
from vision.data import hard_suite
from vision.data.mvtec import MvtecCategory, load_image
from vision.data.synthetic import write_dataset
from vision.evaluate import evaluate
from vision.train import build_model_files, dataset_sha256

HERE = Path(__file__).resolve().parent / "hard"
COUNTS: tuple[int, ...] = (10, 25, 50, 100, 200)
METRICS = ("image_auroc", "pixel_auroc", "false_reject_rate")


def parse_counts(text: str) -> list[int]:
    """'10,25,50' -> [10, 25, 50]; every count must be >= 2 (one image to fit, one to calibrate)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"counts must be comma-separated integers, got {text!r}") from None
    if not counts or counts[0] < 2:
        raise ValueError(f"every count must be >= 2, got {text!r}")
    return counts


def ensure_data(root: Path, categories: list[str], n_train: int) -> None:
    """Write the categories with `n_train` good training images unless a folder already holds enough."""
    missing = [
        c
        for c in categories
        if not (root / c).is_dir() or len(MvtecCategory.load(root, c).train_good) < n_train
    ]
    if missing:
        write_dataset(root, categories=missing, n_train=n_train, suite="hard", progress=False)


def run_point(
    root: Path, category: str, count: int, settings: ModelSettings, work: Path, threads: int
) -> dict[str, Any]:
    """Train on the first `count` good images, evaluate on the full test split."""
    dataset = MvtecCategory.load(root, category)
    paths = sorted(dataset.train_good)[:count]
    images = [load_image(p, settings.image_size) for p in paths]
    model_path = work / f"{category}_{count}.onnx"
    started = time.perf_counter()
    build_model_files(
        images,
        model_path,
        settings,
        model_name=f"fewshot-{category}-{count}",
        train_data_sha256=dataset_sha256(paths, root),
        progress=False,
    )
    train_s = time.perf_counter() - started
    report = evaluate(
        root, category, model_path, work / f"eval_{category}_{count}", progress=False, threads=threads
    )
    return {**{m: report[m] for m in METRICS}, "train_s": train_s}


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def fewshot_markdown(results: dict[str, Any]) -> str:
    counts = [str(c) for c in results["counts"]]
    lines = [
        "# Few-shot curve (hard suite, HOLDOUT categories)",
        "",
        f"Default detector ({results['settings_note']}); N good images given to the trainer (80 % fit, "
        "20 % calibrate), the first N of each category's 200; evaluated on the full test split "
        f"({results['test_images']} images per category). {results['machine']}, "
        f"{results['threads']} threads.",
        "",
        "Image AUROC:",
        "",
        "| Category | " + " | ".join(f"N={c}" for c in counts) + " |",
        "|" + "---|" * (len(counts) + 1),
    ]
    for name, row in [*results["categories"].items(), ("**mean**", results["mean"])]:
        lines.append(f"| {name} | " + " | ".join(_cell(row[c]["image_auroc"]) for c in counts) + " |")
    for metric, title in (
        ("pixel_auroc", "Pixel AUROC (mean)"),
        ("false_reject_rate", "False rejects at the calibrated threshold (mean)"),
    ):
        lines += ["", f"{title}: " + ", ".join(f"N={c}: {_cell(results['mean'][c][metric])}" for c in counts)]
    lines += ["", "![few-shot curve](fewshot.png)"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """One line per category (thin) and the mean (thick), image AUROC against N on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = results["counts"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, row in results["categories"].items():
        ax.plot(counts, [row[str(c)]["image_auroc"] for c in counts], marker="o", lw=1.2, label=name)
    ax.plot(
        counts,
        [results["mean"][str(c)]["image_auroc"] for c in counts],
        "k-",
        marker="s",
        lw=2.8,
        label="mean",
    )
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("good training images (N)")
    ax.set_ylabel("image AUROC")
    ax.set_title("Few-shot: hard suite, holdout categories")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="hard-suite folder (written if short)")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--categories", default=",".join(hard_suite.HOLDOUT))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        counts = parse_counts(args.counts)
    except ValueError as exc:
        parser.error(str(exc))
    categories = [c for c in args.categories.split(",") if c]
    for category in categories:
        hard_suite.split_of(category)  # unknown names fail here with the valid list
    torch.set_num_threads(args.threads)
    settings = ModelSettings()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "data"
        ensure_data(root, categories, max(counts))
        rows: dict[str, dict[str, Any]] = {}
        for category in categories:
            rows[category] = {}
            for count in counts:
                rows[category][str(count)] = run_point(
                    root, category, count, settings, Path(tmp), args.threads
                )
                print(json.dumps({category: {count: rows[category][str(count)]}}), flush=True)
        test_images = len(MvtecCategory.load(root, categories[0]).test)
    mean = {
        str(c): {m: float(np.mean([rows[k][str(c)][m] for k in rows])) for m in (*METRICS, "train_s")}
        for c in counts
    }
    results = {
        "suite": "hard",
        "split": "holdout",
        "counts": counts,
        "settings": settings.model_dump(mode="json"),
        "settings_note": f"`{settings.backbone}`, bank {settings.memory_bank_size}, "
        "`ModelSettings()` defaults",
        "test_images": test_images,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "categories": rows,
        "mean": mean,
    }
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "fewshot.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "fewshot.md").write_text(fewshot_markdown(results))
    plot(results, HERE / "fewshot.png")
    print(fewshot_markdown(results))


if __name__ == "__main__":
    main()
