"""ONNX latency of search variants against today's default, interleaved in one process.

The box this runs on is shared and loaded, so an absolute p50 says little; running the models in turn on
the same frame (`compression.onnx_bench.interleaved_times`) lets background load hit them alike, and the
ratio to the baseline is what carries over to an idle edge box (design limit: dense default p50 <= 15 ms
on 2 threads). Latency does not depend on how well a model is fitted, so each model is fitted on a few
DEV images only. Writes `benchmarks/vision/hard/latency.json` and `latency.md`. Usage:

    .venv/bin/python benchmarks/vision/hard_latency.py --variants baseline,knn3 [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hard_search import SEARCH_BASE, VARIANTS

from compression.onnx_bench import interleaved_times
from vision.config import ModelSettings
from vision.data.mvtec import MvtecCategory, load_image
from vision.train import build_model_files

HERE = Path(__file__).resolve().parent / "hard"
FIT_IMAGES = 16


def build(name: str, images: list[np.ndarray], work: Path) -> Path:
    overrides, _ = VARIANTS[name]
    settings = ModelSettings(**{**SEARCH_BASE, **overrides})
    resized = [load_image_array(image, settings.image_size) for image in images]
    return build_model_files(resized, work / f"{name}.onnx", settings, f"latency-{name}", progress=False)


def load_image_array(image: np.ndarray, size: int) -> np.ndarray:
    """`image` at the model's input size (the suite is written at 256 px)."""
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def latency_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# ONNX latency of search variants (interleaved, one process)",
        "",
        f"ONNX Runtime CPU, batch 1, {results['threads']} threads, {results['runs']} interleaved rounds on "
        f"one {results['frame']} frame; 1-minute load average {results['load_average_1min']:.1f} on "
        f"{os.cpu_count()} CPUs (absolute times are inflated by other work; the ratio is what carries over).",
        "",
        "Interleaved sessions run with thread spinning off (an idle session's spinning threads would steal",
        "the cores from the one being timed). `alone p50` is each model in its own session with ONNX",
        "Runtime's default options, one after the other: how the edge box runs its one model.",
        "",
        "| Variant | p50 ms | p90 ms | p50 / baseline | alone p50 ms |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["variants"].items():
        solo = row.get("alone_p50_ms")
        lines.append(
            f"| {name} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['ratio']:.2f} | "
            + (f"{solo:.1f} |" if solo is not None else "— |")
        )
    return "\n".join(lines) + "\n"


def alone_p50(path: Path, frame: np.ndarray, threads: int, runs: int) -> float:
    """p50 ms of one model in its own session with ONNX Runtime's defaults (as the box runs it)."""
    import time

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: frame[None]}
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.percentile(times, 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", required=True, help="comma-separated search variant names")
    parser.add_argument("--data", type=Path, default=Path("/tmp/vsearch/dev"))
    parser.add_argument("--category", default="tile")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = list(dict.fromkeys(["baseline", *[n for n in args.variants.split(",") if n]]))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")
    torch.set_num_threads(args.threads)
    dataset = MvtecCategory.load(args.data, args.category)
    images = [load_image(p, 256) for p in dataset.train_good[:FIT_IMAGES]]
    frame = load_image(dataset.test[-1].path, 256)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [build(name, images, Path(tmp)) for name in names]
        sizes = [ModelSettings(**VARIANTS[n][0]).image_size for n in names]
        if len(set(sizes)) != 1:
            parser.error("variants with different input sizes cannot share one frame; measure them apart")
        frame = load_image_array(frame, sizes[0])
        times = interleaved_times(paths, frame, threads=args.threads, runs=args.runs)
        alone = [alone_p50(path, frame, args.threads, args.runs) for path in paths]
    base = float(np.percentile(times[0], 50))
    results = {
        "threads": args.threads,
        "runs": args.runs,
        "frame": f"{sizes[0]}x{sizes[0]}",
        "load_average_1min": os.getloadavg()[0],
        "variants": {
            name: {
                "overrides": VARIANTS[name][0],
                "p50_ms": float(np.percentile(t, 50)),
                "p90_ms": float(np.percentile(t, 90)),
                "ratio": float(np.percentile(t, 50)) / base,
                "alone_p50_ms": solo,
            }
            for name, t, solo in zip(names, times, alone, strict=True)
        },
    }
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "latency.json").write_text(json.dumps(results, indent=2, default=list) + "\n")
    (HERE / "latency.md").write_text(latency_markdown(results))
    print(latency_markdown(results))


if __name__ == "__main__":
    main()
