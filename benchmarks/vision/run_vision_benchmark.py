"""Train and evaluate the anomaly model on every synthetic category; record the figures.

Writes `benchmarks/vision/results.json` and `results.md` (per category and the mean). Usage:

    .venv/bin/python benchmarks/vision/run_vision_benchmark.py [--data DIR] [--categories pcb,tile]
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
from vision.data.synthetic import CATEGORIES, write_dataset
from vision.evaluate import evaluate
from vision.train import train_model

HERE = Path(__file__).resolve().parent
COLUMNS = ("image_auroc", "pixel_auroc", "aupro_0.3", "f1_at_threshold", "false_reject_rate", "best_f1")


def _row(name: str, values: dict[str, Any]) -> str:
    cells = [f"{values[c]:.4f}" if values.get(c) is not None else "n/a" for c in COLUMNS]
    latency = values.get("latency_p50_ms")
    train = values.get("train_s")
    return f"| {name} | " + " | ".join(cells) + f" | {latency:.1f} | {train:.0f} |"


def results_markdown(results: dict[str, Any]) -> str:
    header = "| Category | " + " | ".join(COLUMNS) + " | latency p50 ms | train s |"
    lines = [
        "# Vision benchmark (synthetic categories)",
        "",
        f"Backbone `{results['settings']['backbone']}`, input {results['settings']['image_size']} px, "
        f"memory bank {results['settings']['memory_bank_size']}, {results['threads']} threads, "
        f"{results['machine']}.",
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    for name, values in results["categories"].items():
        lines.append(_row(name, values))
    lines.append(_row("**mean**", results["mean"]))
    return "\n".join(lines) + "\n"


def run(data_dir: Path, out_dir: Path, categories: list[str], settings: ModelSettings, threads: int) -> dict:
    torch.set_num_threads(threads)
    write_dataset(data_dir, categories=categories, image_size=settings.image_size, progress=True)
    per_category: dict[str, dict[str, Any]] = {}
    for category in categories:
        model_path = out_dir / "models" / f"{category}.onnx"
        started = time.perf_counter()
        train_model(data_dir, category, model_path, settings, progress=True)
        train_s = time.perf_counter() - started
        report = evaluate(data_dir, category, model_path, out_dir / "eval" / category, threads=threads)
        per_category[category] = {
            **{c: report[c] for c in COLUMNS},
            "latency_p50_ms": report["latency_ms"]["p50"],
            "latency_p99_ms": report["latency_ms"]["p99"],
            "train_s": train_s,
            "threshold": report["threshold"],
        }
        print(json.dumps({category: per_category[category]}), flush=True)
    keys = [*COLUMNS, "latency_p50_ms", "latency_p99_ms", "train_s"]
    mean = {k: float(np.mean([v[k] for v in per_category.values() if v[k] is not None])) for k in keys}
    return {
        "settings": settings.model_dump(),
        "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "categories": per_category,
        "mean": mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Dataset folder (default: a temp dir).")
    parser.add_argument("--out", type=Path, default=None, help="Models/eval output (default: a temp dir).")
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-bank-size", type=int, default=None)
    args = parser.parse_args()
    settings = ModelSettings()
    if args.memory_bank_size:
        settings = settings.model_copy(update={"memory_bank_size": args.memory_bank_size})
    categories = [c for c in args.categories.split(",") if c]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or Path(tmp) / "data"
        out_dir = args.out or Path(tmp) / "out"
        results = run(data_dir, out_dir, categories, settings, args.threads)
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    markdown = results_markdown(results)
    (HERE / "results.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
