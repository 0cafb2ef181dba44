"""Compression benchmark: baseline fp32, tensorized, tensorized+healed, int8 only, tensorized+healed+int8.

One process, one dataset, one threshold procedure (good-image quantile on the held-back train images, as
training does), every number measured on the exported ONNX file through ONNX Runtime on the CPU
(batch 1, 2 threads, after warm-up). Writes results.json and results.md next to this file.

    .venv/bin/python benchmarks/compression/run_compression_benchmark.py            # full (quiet machine)
    .venv/bin/python benchmarks/compression/run_compression_benchmark.py --quick    # smoke run, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compression.config import CompressionSettings  # noqa: E402
from compression.evaluation import Evaluator, auroc_metrics  # noqa: E402
from compression.inventory import build_inventory, count_params  # noqa: E402
from compression.onnx_bench import measure_latency, onnx_outputs  # noqa: E402
from compression.pipeline import LoadedData, factorize_to_budget, heal_compressed, load_data  # noqa: E402
from compression.quantize import quantize_int8  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data, lite0, small bank: a smoke run")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "benchmarks" / "compression")
    parser.add_argument("--checkpoint", type=Path, default=None, help="reuse a trained baseline .pt")
    parser.add_argument("--data-root", type=Path, default=None, help="MVTec-layout data (default: synthetic)")
    parser.add_argument("--category", default="pcb")
    parser.add_argument("--backbone", default=None, help="default: efficientnet_lite2 (lite0 with --quick)")
    parser.add_argument(
        "--bank-size",
        type=int,
        default=None,
        help="default: 12288, PatchCore's 10%% coreset of 120 images (512 with --quick)",
    )
    parser.add_argument("--budget", default=None, help="default: params=0.2 (params=0.4 with --quick)")
    parser.add_argument("--heal-steps", type=int, default=None, help="default: 300 (10 with --quick)")
    parser.add_argument("--runs", type=int, default=None, help="timed ORT runs per variant (default 50)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def prepare_baseline(args: argparse.Namespace, progress: bool) -> tuple[Path, Path]:
    """Synthetic data and a trained baseline unless given; reused when already in the work dir."""
    from vision.config import ModelSettings
    from vision.data.synthetic import write_dataset
    from vision.train import train_model

    data_root = args.data_root or args.work_dir / ("data-quick" if args.quick else "data")
    if not (data_root / args.category).is_dir():
        sizes = dict(n_train=24, n_test_good=10, n_test_defect_per_type=3) if args.quick else {}
        write_dataset(data_root, categories=[args.category], seed=0, progress=progress, **sizes)
    if args.checkpoint is not None:
        return data_root, args.checkpoint
    settings = ModelSettings(backbone=args.backbone, memory_bank_size=args.bank_size)
    name = f"baseline-{args.backbone}-{args.bank_size}-{args.category}"
    onnx_path = args.work_dir / name / "model.onnx"
    if not onnx_path.with_suffix(".pt").is_file():
        train_model(data_root, args.category, onnx_path, settings, progress=progress)
    return data_root, onnx_path.with_suffix(".pt")


def measure(
    name: str,
    path: Path,
    params: int,
    macs: int,
    data: LoadedData,
    settings: CompressionSettings,
    runs: int,
) -> dict[str, Any]:
    """Same procedure for every variant: threshold from held-back good images, metrics on the test set."""
    from vision.calibration import threshold_from_good_scores
    from vision.metrics import false_reject_rate

    _, holdout_scores = onnx_outputs(path, data.holdout, settings.latency_threads)
    threshold = threshold_from_good_scores(holdout_scores, settings.target_false_reject_rate)
    maps, scores = onnx_outputs(path, data.test, settings.latency_threads)
    timing = measure_latency(path, data.test[0], settings.latency_threads, settings.latency_warmup, runs)
    defects = data.labels == 1
    return {
        "name": name,
        "file": path.name,
        "params": params,
        "macs": macs,
        "file_bytes": path.stat().st_size,
        **timing,
        **auroc_metrics(scores, maps, data.labels, data.masks),
        "threshold": threshold,
        "false_reject_rate": float(false_reject_rate(data.labels, scores, threshold)),
        "defect_recall": float((scores[defects] > threshold).mean()) if defects.any() else None,
    }


def export(model: torch.nn.Module, path: Path, size: int) -> Path:
    from vision.export import export_onnx

    metadata = {
        "edgeinspect.threshold": "0.0",  # each variant's threshold is calibrated in `measure`
        "edgeinspect.model_name": path.stem,
        "edgeinspect.model_version": "benchmark",
        "edgeinspect.train_data_sha256": "benchmark",
    }
    return export_onnx(model, path, metadata, size)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    base = results["variants"][0]
    lines = [
        "# Compression benchmark",
        "",
        f"`{results['command']}` on {results['machine']} ({results['date']}).",
        f"Baseline: {results['baseline']}; budget `{results['budget']}`, heal steps {results['heal_steps']}.",
        "ORT CPU, batch 1, 2 threads, p50/p99 after warm-up; peak MiB: resident memory the model adds to a",
        "fresh process (load + 5 runs); metrics on the full test split;",
        "threshold per variant from held-back good images (same procedure as training).",
        "",
        "| variant | params | share | MACs (M) | file KiB | file share | p50 ms | p99 ms | speed-up"
        " | peak MiB | image AUROC | pixel AUROC | FRR | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in results["variants"]:
        recall = "-" if v["defect_recall"] is None else f"{v['defect_recall']:.3f}"
        lines.append(
            f"| {v['name']} | {v['params']:,} | {v['params'] / base['params']:.3f} | {v['macs'] / 1e6:.0f} | "
            f"{v['file_bytes'] / 1024:.0f} | {v['file_bytes'] / base['file_bytes']:.3f} | "
            f"{v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {base['p50_ms'] / v['p50_ms']:.2f}x | "
            f"{v['peak_mib']:.0f} | {v.get('image_auroc', float('nan')):.4f} | "
            f"{v.get('pixel_auroc', float('nan')):.4f} | {v['false_reject_rate']:.3f} | {recall} |"
        )
    lines += ["", "## Targets (tensorized+healed vs baseline; int8 file vs baseline fp32 file)", ""]
    for name, item in results["targets"].items():
        lines.append(f"- {name}: {'met' if item['met'] else 'NOT met'} ({item['value']})")
    heal = results["healing"]
    lines += [
        "",
        f"Healing: {heal['steps_run']} steps, best at {heal['best_step']}; "
        f"{'kept' if heal['kept'] else 'dropped (the unhealed student scored better)'}; "
        f"label-free check (AUROC on held-back good images with pasted patches): {heal['check']}",
    ]
    lines += ["", "## Ranks", "", "```", json.dumps(results["ranks"], indent=1), "```"]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress
    args.backbone = args.backbone or ("efficientnet_lite0" if args.quick else "efficientnet_lite2")
    args.bank_size = args.bank_size or (512 if args.quick else 12288)
    args.budget = args.budget or ("params=0.4" if args.quick else "params=0.2")
    heal_steps = args.heal_steps if args.heal_steps is not None else (10 if args.quick else 300)
    runs = args.runs or (5 if args.quick else 50)
    settings = CompressionSettings(latency_runs=runs)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    started = time.time()

    from vision.models import load_checkpoint

    data_root, checkpoint = prepare_baseline(args, progress)
    teacher = load_checkpoint(checkpoint)
    size = teacher.config.image_size
    data = load_data(data_root, args.category, size, settings, progress)
    labelled = Evaluator.build(
        teacher, data.test[data.selection], data.labels[data.selection], data.masks[data.selection]
    )
    files = args.work_dir / "variants"
    files.mkdir(exist_ok=True)
    baseline_path = export(teacher, files / "baseline.onnx", size)
    baseline_ms = measure_latency(
        baseline_path, data.test[0], settings.latency_threads, 2, 10, peak_memory=False
    )["p50_ms"]
    factorized = factorize_to_budget(
        teacher,
        data.holdout,
        args.budget,
        settings=settings,
        labelled=labelled,
        baseline_latency_ms=baseline_ms,
        progress=progress,
    )
    healed = heal_compressed(
        factorized, teacher, data.fit, data.holdout, heal_steps, settings, labelled, progress
    )
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    macs = {
        "teacher": factorized.inventory.total_macs,
        "student": build_inventory(healed.model, example, timing_runs=1).total_macs,
    }
    tensorized_path = export(factorized.model, files / "tensorized.onnx", size)
    healed_path = export(healed.model, files / "tensorized_healed.onnx", size)
    calibration = data.fit[: settings.calibration_images]
    int8_path = quantize_int8(baseline_path, files / "int8_only.onnx", calibration)
    healed_int8_path = quantize_int8(healed_path, files / "tensorized_healed_int8.onnx", calibration)
    p_teacher, p_student = count_params(teacher), count_params(healed.model)
    variants = [
        measure("baseline fp32", baseline_path, p_teacher, macs["teacher"], data, settings, runs),
        measure("tensorized", tensorized_path, p_student, macs["student"], data, settings, runs),
        measure("tensorized+healed", healed_path, p_student, macs["student"], data, settings, runs),
        measure("int8 only", int8_path, p_teacher, macs["teacher"], data, settings, runs),
        measure("tensorized+healed+int8", healed_int8_path, p_student, macs["student"], data, settings, runs),
    ]
    base, tn, tn8 = variants[0], variants[2], variants[4]
    drop = base.get("image_auroc", 0.0) - tn.get("image_auroc", 0.0)
    targets = {
        "baseline slower than line rate (>33 ms)": {
            "met": base["p50_ms"] > 33.0,
            "value": f"{base['p50_ms']:.1f} ms",
        },
        "params <= 20% of baseline": {
            "met": tn["params"] <= 0.2 * base["params"],
            "value": f"{tn['params'] / base['params']:.3f}",
        },
        "image AUROC drop <= 0.005": {"met": drop <= 0.005, "value": f"{drop:+.4f}"},
        ">= 2x faster (ORT p50)": {
            "met": base["p50_ms"] / tn["p50_ms"] >= 2.0,
            "value": f"{base['p50_ms'] / tn['p50_ms']:.2f}x",
        },
        "int8 file <= 7% of fp32 baseline file": {
            "met": tn8["file_bytes"] <= 0.07 * base["file_bytes"],
            "value": f"{tn8['file_bytes'] / base['file_bytes']:.3f}",
        },
    }
    results = {
        "command": ".venv/bin/python benchmarks/compression/run_compression_benchmark.py"
        + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "baseline": f"{args.backbone}, memory bank {teacher.memory_bank.size}, {size}x{size}",
        "budget": args.budget,
        "heal_steps": heal_steps,
        "healing": {
            "kept": healed.healing.kept,
            "check": healed.healing.check,
            "steps_run": healed.healing.steps_run,
            "best_step": healed.healing.best_step,
            "history": healed.healing.history,
        },
        "ranks": {
            n: r for n, r in factorized.plan.ranks.items() if r < factorized.inventory.by_name()[n].full_rank
        },
        "variants": variants,
        "targets": targets,
        "seconds": time.time() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"results{suffix}.json").write_text(json.dumps(results, indent=2, default=str))
    write_markdown(results, args.out / f"results{suffix}.md")
    print((args.out / f"results{suffix}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
