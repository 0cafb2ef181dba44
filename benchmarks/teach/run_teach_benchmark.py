"""Teaching "this is normal" on a line with a recurring nuisance: false rejects before vs after.

    .venv/bin/python benchmarks/teach/run_teach_benchmark.py [--model NAME=PATH ...] \
        [--taught 8 16 32] [--placements fixed varying] [--held-out 100]

The line is the simulator's `bracket` product; on a share of good parts a paper label
(`vision.data.stickers`: off-white paper, barcode bars, +-6 degrees, at a fixed place with +-5 px jitter
or anywhere on the plate) stands in for the recurring harmless mark that a model trained without it flags.
For each model, placement and number of taught false alarms, the teach job's own inputs are built as the
box builds them (`device.station.teaching.ArchiveLearner`): the false alarms are labelled parts the model
really
rejected, and the held-back good images and the confirmed defects are JPEG frames as the image archive
stores them (quality 95). `vision.teach.teach_normal` (ONNX Runtime only, 1 thread) makes the candidate.
Both models are then measured the box's way (`vision.inspector.Inspector`, live frames, 2 threads) on
parts neither saw: labelled parts (the nuisance, held out), plain good parts and defective parts.

Without `--model` two models are built and cached: the tests' small dense model (40 good images, a
512-patch bank) and the same with its bank factorized by the compression pipeline (as the compressed
default's is), so both ways of extending a bank are measured.
Writes `benchmarks/teach/results.json` and `results.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from vision.data.stickers import Placement, paint_sticker  # noqa: E402
from vision.data.synthetic import LineSimulator  # noqa: E402
from vision.inspector import Inspector  # noqa: E402
from vision.metrics import image_auroc  # noqa: E402
from vision.teach import TeachOptions, teach_normal  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent
CATEGORY = "bracket"
ARCHIVE_JPEG_QUALITY = 95  # `archive.jpeg_quality`: the held-back and taught frames come from the archive
GOOD_HELD_BACK = 40  # archived OK frames the job calibrates and measures on (`teach.max_good_images`)
CONFIRMED_DEFECTS = 10
TIMING_ROUNDS = 30


# name -> (what it is, ModelSettings fields): the tests' small model (coarse-to-fine bank search, the
# default), the same searching its whole bank, and the same with its memory bank factorized by the
# compression pipeline (SVD, rank 64, searched coarse-to-fine as well since 2026-11-30).
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "small-dense": ("lite0, 40 good images, 512-patch bank, coarse-to-fine search 256/256 (the default)", {}),
    "small-dense-exact": ("the same, exact bank search", {"coarse_entries": 0}),
    "small-svd-bank": (
        "the same, bank compressed by `compress_for_deploy` (SVD rank 64, 5 heal steps)",
        {
            "compression_budget": "params=1.0",
            "heal_steps": 5,
            "compression_methods": {"default": "dense", "memory_bank": "svd:64"},
        },
    ),
}


def built_model(name: str) -> Path:
    """A recipe's model, built once (as the first run builds the default) and cached."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    out = Path(tempfile.gettempdir()) / "edgeinspect-teach-bench" / f"{CATEGORY}-{name}.onnx"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = ModelSettings(train_images=40, memory_bank_size=512, **RECIPES[name][1])
        build_default_model(CATEGORY, settings, out, progress=True)
    return out


def bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def archived(frame: np.ndarray) -> np.ndarray:
    """A frame after the archive's JPEG round trip."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, ARCHIVE_JPEG_QUALITY])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


class Line:
    """Parts off the simulated line: plain good, labelled good, defective; each stream its own seed."""

    def __init__(self, seed: int, placement: Placement) -> None:
        self.good = LineSimulator(CATEGORY, seed=seed, defect_rate=0.0)
        self.defects = LineSimulator(CATEGORY, seed=seed + 1, defect_rate=1.0)
        self.rng = np.random.default_rng(seed)
        self.placement = placement

    def plain(self, count: int) -> list[np.ndarray]:
        return [bgr(self.good.next_part().image) for _ in range(count)]

    def labelled(self, count: int) -> list[np.ndarray]:
        return [
            bgr(paint_sticker(self.good.next_part().image, self.rng, self.placement)) for _ in range(count)
        ]

    def defective(self, count: int) -> list[np.ndarray]:
        return [bgr(self.defects.next_part().image) for _ in range(count)]


def false_alarms(line: Line, inspector: Inspector, count: int) -> tuple[list[np.ndarray], int]:
    """`count` labelled parts the model rejected (what operators review as false alarms), archived;
    and how many labelled parts it took to collect them."""
    alarms: list[np.ndarray] = []
    seen = 0
    while len(alarms) < count:
        frame = line.labelled(1)[0]
        seen += 1
        if inspector.inspect(frame).is_defect:
            alarms.append(archived(frame))
        if seen > 20 * count:
            raise RuntimeError(f"the model flags too few labelled parts ({len(alarms)} of {seen})")
    return alarms, seen


def measure(inspector: Inspector, sets: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Reject rates on each held-out set, defect AUROC vs plain good, median inference time."""
    scores: dict[str, list[float]] = {name: [] for name in sets}
    for name, frames in sets.items():
        scores[name] = [inspector.inspect(frame).score for frame in frames]
    threshold = inspector.info.threshold
    rate = {name: float(np.mean(np.asarray(values) >= threshold)) for name, values in scores.items()}
    labels = [0] * len(scores["good"]) + [1] * len(scores["defect"])
    return {
        "threshold": threshold,
        "false_reject_rate_labelled": rate["labelled"],
        "false_reject_rate_good": rate["good"],
        "defect_detection_rate": rate["defect"],
        "defect_auroc": image_auroc(labels, scores["good"] + scores["defect"]),
    }


def inference_ms(parent: Inspector, child: Inspector, frame: np.ndarray) -> tuple[float, float]:
    """Median inference time of each model, runs interleaved so the machine's load hits both alike."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(TIMING_ROUNDS):
        for index, inspector in enumerate((parent, child)):
            times[index].append(inspector.inspect(frame).inference_ms)
    return statistics.median(times[0]), statistics.median(times[1])


def run_case(model: Path, placement: Placement, taught: int, held_out: int, seed: int) -> dict[str, Any]:
    parent = Inspector(model, threads=2)
    line = Line(seed, placement)
    alarms, seen = false_alarms(line, parent, taught)
    good = [archived(frame) for frame in line.plain(GOOD_HELD_BACK)]
    defects = [archived(frame) for frame in line.defective(CONFIRMED_DEFECTS)]
    started = time.perf_counter()
    result = teach_normal(model.read_bytes(), alarms, good, defects, TeachOptions(threads=1))
    teach_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        child_path = Path(tmp) / "child.onnx"
        child_path.write_bytes(result.model_bytes)
        child = Inspector(child_path, threads=2)
        sets = {
            "labelled": line.labelled(held_out),
            "good": line.plain(held_out),
            "defect": line.defective(held_out),
        }
        before, after = measure(parent, sets), measure(child, sets)
        before["inference_ms_p50"], after["inference_ms_p50"] = inference_ms(parent, child, sets["good"][0])
    return {
        "placement": placement,
        "taught": taught,
        "labelled_parts_seen_to_collect_them": seen,
        "held_out_per_set": held_out,
        "teach_seconds": round(teach_s, 1),
        "model_bytes_before": model.stat().st_size,
        "model_bytes_after": len(result.model_bytes),
        "before": before,
        "after": after,
        "job_report": result.report.model_dump(),
    }


def write_markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Recurring label on good `bracket` parts; {results['machine']} (shared with other work while",
        "measured: times are indicative); ONNX Runtime",
        f"on CPU. Held-out parts per set: {results['held_out']}. Models: "
        + "; ".join(f"`{name}`: {RECIPES[name][0]}" for name in results["models"] if name in RECIPES)
        + ".",
        "FRR = false-reject rate (share of good parts rejected); `labelled` = held-out good parts with the",
        "label (never taught); detection = share of held-out defective parts rejected. Before = the",
        "parent model, after = the taught candidate, each at its own calibrated threshold.",
        "",
        "| model | label placement | taught | FRR labelled before → after | FRR good before → after "
        "| detection before → after | defect AUROC before → after | bank +entries | inference ms "
        "before → after | teach s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        b, a, r = case["before"], case["after"], case["job_report"]
        lines.append(
            f"| {case['model']} | {case['placement']} | {case['taught']} "
            f"| {b['false_reject_rate_labelled']:.2f} → {a['false_reject_rate_labelled']:.2f} "
            f"| {b['false_reject_rate_good']:.2f} → {a['false_reject_rate_good']:.2f} "
            f"| {b['defect_detection_rate']:.2f} → {a['defect_detection_rate']:.2f} "
            f"| {b['defect_auroc']:.3f} → {a['defect_auroc']:.3f} "
            f"| {r['bank_size_before']} +{r['bank_entries_added']} "
            f"| {b['inference_ms_p50']:.1f} → {a['inference_ms_p50']:.1f} | {case['teach_seconds']} |"
        )
    lines += [
        "",
        "The job's own figures (what `GET /models/teach-normal/{id}` shows before activation) are in",
        "`results.json` under `job_report`: FRR on its held-back archived good frames and on the taught",
        "false alarms themselves, AUROC and detection on the confirmed defects.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of an ONNX model (bracket)")
    parser.add_argument("--taught", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--placements", nargs="+", default=["fixed", "varying"], choices=["fixed", "varying"])
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model) or {n: str(built_model(n)) for n in RECIPES}
    cases = []
    for name, path in models.items():
        for placement in args.placements:
            for taught in args.taught:
                print(f"{name} {placement} taught={taught} ...", flush=True)
                case = run_case(Path(path), placement, taught, args.held_out, args.seed)
                case["model"] = name
                cases.append(case)
                b, a = case["before"], case["after"]
                summary = ", ".join(
                    f"{key} {b[key]:.2f} -> {a[key]:.2f}"
                    for key in (
                        "false_reject_rate_labelled",
                        "false_reject_rate_good",
                        "defect_detection_rate",
                    )
                )
                print(f"  {summary}", flush=True)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "category": CATEGORY,
        "held_out": args.held_out,
        "models": models,
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(write_markdown(results))
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
