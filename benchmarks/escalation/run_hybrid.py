"""Does station + verifier reach the accurate model's F1? An offline replay of the escalation policy.

    .venv/bin/python benchmarks/escalation/run_hybrid.py [--scores benchmarks/pareto/work/scores] \
        [--models DIR] [--edge lite0-b2048] [--accurate lite2-b12288 | A+B | 'A|B'] [--rates 0.02 0.05 0.10]

Inputs are the per-image scores the Pareto benchmark computed on the hard suite's holdout categories
(`<scores>/<variant>/<category>.json`: scores, labels, kinds) and each model's calibrated threshold (in the
record when present, else the ONNX metadata `edgeinspect.threshold` of `<models>/<variant>/<category>.onnx`).
The policy is the station's real code: `device.station.escalation.band.EscalationBand` is calibrated on the
edge
model's scores of the good parts (labels select the good parts only; defects never shape the band) to each
target rate; a part whose edge score lies in the band takes the accurate model's verdict at its own
threshold, every other part the edge's. Every escalation is assumed answered in time (the scale benchmark
measures how often that holds). Writes benchmarks/escalation/hybrid/results.{json,md} and hybrid.png.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from device.config import EscalationSettings  # noqa: E402
from device.station.escalation.band import EscalationBand  # noqa: E402

HERE = Path(__file__).resolve().parent
PARETO = REPO / "benchmarks" / "pareto"
OUT = HERE / "hybrid"
RUNTIME_RESULTS = REPO / "benchmarks" / "runtime" / "results.json"
META_THRESHOLD = "edgeinspect.threshold"
GAP_TARGET_POINTS = 1.0
# `--accurate A+B` / `A|B`: the verifier run with one --model per member and `--ensemble mean` / `any`
# (each member's score over its own threshold; their mean, or their max: any member's verdict rejects).
ENSEMBLE_RULES: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "+": lambda scores: np.mean(scores, axis=0),
    "|": lambda scores: np.max(scores, axis=0),
}
FPS_TARGET = 30.0


# ------------------------------------------------------------------------------------------------ policy


def calibrate_band(good_scores: np.ndarray, threshold: float, rate: float) -> EscalationBand:
    """The station's band, fed these scores as its recent window (the shipped width clamps apply)."""
    shipped = EscalationSettings()
    band = EscalationBand(
        target_rate=rate,
        window=len(good_scores),
        min_samples=len(good_scores),
        initial_width=shipped.initial_width,
        min_width=shipped.min_width,
        max_width=shipped.max_width,
        recompute_every=1,
    )
    for score in good_scores:
        band.observe(float(score), threshold)
    return band


@dataclass(frozen=True)
class Models:
    """One category's scores (same images, same order) and thresholds of the edge and accurate models."""

    labels: np.ndarray  # bool, True = defect
    edge: np.ndarray
    edge_threshold: float
    accurate: np.ndarray
    accurate_threshold: float


def hybrid(models: Models, band: EscalationBand) -> tuple[np.ndarray, np.ndarray]:
    """(final verdicts, escalated mask): the accurate model decides the parts in the band, the edge the
    rest."""
    low, high = band.bounds(models.edge_threshold)
    escalated = (models.edge >= low) & (models.edge <= high)
    edge_says = models.edge >= models.edge_threshold
    accurate_says = models.accurate >= models.accurate_threshold
    return np.where(escalated, accurate_says, edge_says), escalated


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of the defect class."""
    tp = int(np.sum(labels & predicted))
    fp = int(np.sum(~labels & predicted))
    fn = int(np.sum(labels & ~predicted))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(models: Models, rates: list[float]) -> dict[str, Any]:
    """F1 of edge alone, accurate alone, and the hybrid at each target escalation rate."""
    good = ~models.labels
    row: dict[str, Any] = {
        "images": int(models.labels.size),
        "defects": int(models.labels.sum()),
        "edge_f1": f1(models.labels, models.edge >= models.edge_threshold),
        "accurate_f1": f1(models.labels, models.accurate >= models.accurate_threshold),
        "hybrid": {},
    }
    for rate in rates:
        band = calibrate_band(models.edge[good], models.edge_threshold, rate)
        verdicts, escalated = hybrid(models, band)
        score = f1(models.labels, verdicts)
        row["hybrid"][f"{rate:g}"] = {
            "f1": score,
            "gap_points": 100.0 * (score - row["accurate_f1"]),
            "half_width": band.half_width,
            "escalated_all": float(escalated.mean()),
            "escalated_good": float(escalated[good].mean()),
            "escalated_defect": float(escalated[~good].mean()) if (~good).any() else None,
        }
    return row


# ------------------------------------------------------------------------------------------------ inputs


def read_threshold(record: dict[str, Any], model: Path) -> float:
    """The record's threshold when it has one, else the ONNX metadata the deployed file carries."""
    if "threshold" in record:
        return float(record["threshold"])
    import onnx

    if not model.exists():
        raise SystemExit(f"{model}: no threshold in the score record and no model file to read it from")
    metadata = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    if META_THRESHOLD not in metadata:
        raise SystemExit(f"{model} has no {META_THRESHOLD} metadata")
    return float(metadata[META_THRESHOLD])


def read_variant(
    args: argparse.Namespace, variant: str, category: str, used: list[dict[str, Any]]
) -> dict[str, Any]:
    """One variant's score record with its threshold; notes which files were read. `A+B` / `A|B` is an
    ensemble scored by the verifier's rules (ENSEMBLE_RULES), threshold 1."""
    for join, combine in ENSEMBLE_RULES.items():
        if join not in variant:
            continue
        members = [read_variant(args, name, category, used) for name in variant.split(join)]
        if any(m["labels"] != members[0]["labels"] for m in members):
            raise SystemExit(f"{category}: the members of {variant} scored different images")
        normalised = [np.asarray(m["scores"], dtype=np.float64) / m["threshold"] for m in members]
        return {**members[0], "scores": combine(normalised).tolist(), "threshold": 1.0}
    path = args.scores / variant / f"{category}.json"
    record = json.loads(path.read_text())
    model = args.models / variant / f"{category}.onnx"
    source = "record" if "threshold" in record else _rel(model)
    record["threshold"] = read_threshold(record, model)
    modified = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(path.stat().st_mtime))
    used.append({"file": _rel(path), "modified": modified, "threshold_from": source})
    return record


def load_category(args: argparse.Namespace, category: str, used: list[dict[str, Any]]) -> Models:
    edge = read_variant(args, args.edge, category, used)
    accurate = read_variant(args, args.accurate, category, used)
    if edge["labels"] != accurate["labels"] or edge.get("kinds") != accurate.get("kinds"):
        raise SystemExit(
            f"{category}: {args.edge} and {args.accurate} scored different images (labels differ)"
        )
    return Models(
        labels=np.asarray(edge["labels"], dtype=bool),
        edge=np.asarray(edge["scores"], dtype=np.float64),
        edge_threshold=edge["threshold"],
        accurate=np.asarray(accurate["scores"], dtype=np.float64),
        accurate_threshold=accurate["threshold"],
    )


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def categories(args: argparse.Namespace) -> list[str]:
    found = [
        {p.stem for p in (args.scores / variant).glob("*.json")}
        if (args.scores / variant).is_dir()
        else set()
        for variant in [args.edge, *re.split(r"[+|]", args.accurate)]
    ]
    common = sorted(set.intersection(*found))
    if not common:
        present = sorted(p.name for p in args.scores.iterdir()) if args.scores.is_dir() else []
        raise SystemExit(
            f"no category scored by both {args.edge} and {args.accurate} under {args.scores} "
            f"(variants there: {', '.join(present) or 'none'})"
        )
    return common


def edge_fps(path: Path, variants: list[str]) -> dict[str, Any]:
    """Frames per second of each model from the Pareto latency record (batch 1, 2 threads), if recorded."""
    if not path.exists():
        return {"source": _rel(path), "available": False}
    latency = json.loads(path.read_text())
    out: dict[str, Any] = {"source": _rel(path), "available": True, "category": latency.get("category")}
    out["load_average"] = latency.get("load_average")
    for variant in variants:
        entry = latency.get("variants", {}).get(variant)
        if entry:
            out[variant] = {"p50_ms": entry["p50_ms"], "fps": 1000.0 / entry["p50_ms"]}
    return out


def line_rate(path: Path) -> list[dict[str, Any]]:
    """The runtime benchmark's sustained line rate with the shipped dense model (for the >= 30 fps goal)."""
    if not path.exists():
        return []
    keys = ("label", "date", "target_fps", "sustained_fps", "frames_dropped", "inference_p50_ms")
    return [{key: run.get(key) for key in keys} for run in json.loads(path.read_text())]


# ------------------------------------------------------------------------------------------------ report


def mean_row(rows: dict[str, dict[str, Any]], rates: list[str]) -> dict[str, Any]:
    values = list(rows.values())
    mean: dict[str, Any] = {
        "edge_f1": float(np.mean([r["edge_f1"] for r in values])),
        "accurate_f1": float(np.mean([r["accurate_f1"] for r in values])),
        "hybrid": {},
    }
    for rate in rates:
        cells = [r["hybrid"][rate] for r in values]
        mean["hybrid"][rate] = {
            key: float(np.mean([c[key] for c in cells if c[key] is not None]))
            for key in ("f1", "gap_points", "escalated_all", "escalated_good", "escalated_defect")
        }
    return mean


def _pts(value: float) -> str:
    return f"{value:+.1f}"


def markdown(results: dict[str, Any], image: str = "escalation/hybrid/hybrid.png") -> str:
    """`image`: the plot's path relative to benchmarks/ (where benchmarks/README.md embeds this file)."""
    rates = results["rates"]
    edge, accurate = results["edge"], results["accurate"]
    head = " | ".join(f"hybrid {float(r):.0%} (gap)" for r in rates)
    lines = [
        "# Hybrid accuracy: edge model + verifier on uncertain parts",
        "",
        f"Edge `{edge}`, verifier (accurate) `{accurate}`; hard-suite holdout categories, per-image "
        "scores recorded by the Pareto benchmark. The band is the station's `EscalationBand`, calibrated "
        "on the edge scores of each category's good test images to each target rate (labels pick the good "
        "parts only; the width is fitted on the same good images it is then applied to, where a station "
        "fits it on its own recent parts); parts in the band take the verifier's verdict at its own "
        "threshold, all others the edge's. Every escalation is assumed answered before the deadline. "
        "F1 of the defect class; gap = hybrid − accurate, in F1 points.",
        "",
        f"| category | edge F1 | accurate F1 | {head} |",
        "|---|---|---|" + "---|" * len(rates),
    ]
    rows = dict(results["categories"])
    rows["**mean**"] = results["mean"]
    for name, row in rows.items():
        cells = " | ".join(
            f"{row['hybrid'][r]['f1']:.3f} ({_pts(row['hybrid'][r]['gap_points'])})" for r in rates
        )
        lines.append(f"| {name} | {row['edge_f1']:.3f} | {row['accurate_f1']:.3f} | {cells} |")
    lines += [
        "",
        "Realised escalation share: all test parts / good parts / defects (the test split is 75% defects).",
        "",
    ]
    lines += ["| category | " + " | ".join(f"target {float(r):.0%}" for r in rates) + " |"]
    lines += ["|---|" + "---|" * len(rates)]
    for name, row in rows.items():
        cells = " | ".join(
            f"{row['hybrid'][r]['escalated_all']:.1%} / {row['hybrid'][r]['escalated_good']:.1%} / "
            f"{row['hybrid'][r]['escalated_defect']:.1%}"
            for r in rates
        )
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        *verdict_lines(results),
        "",
        f"Inputs: {len(results['inputs'])} score files under "
        f"`{results['scores_dir']}` (list with modification times and threshold sources in `results.json`).",
    ]
    lines += ["", f"![hybrid F1 vs escalation rate]({image})"]
    return "\n".join(lines) + "\n"


def verdict_lines(results: dict[str, Any]) -> list[str]:
    mean = results["mean"]
    out = []
    for rate in results["rates"]:
        gap = mean["hybrid"][rate]["gap_points"]
        met = "meets" if gap >= -GAP_TARGET_POINTS else "misses"
        out.append(
            f"- Target {float(rate):.0%}: mean hybrid F1 {mean['hybrid'][rate]['f1']:.3f}, "
            f"{_pts(gap)} points vs the accurate model ({met} the ≤ {GAP_TARGET_POINTS:g}-point target); "
            f"edge alone {_pts(100 * (mean['edge_f1'] - mean['accurate_f1']))} points."
        )
    fps = results["fps"]
    edge = fps.get(results["edge"]) if fps.get("available") else None
    if edge:
        load = (fps.get("load_average") or {}).get("start", [None])[0]
        out.append(
            f"- Edge model speed: p50 {edge['p50_ms']:.1f} ms per frame on `{fps['category']}` = "
            f"{edge['fps']:.0f} fps single-stream (batch 1, 2 threads; load average {load}); the box needs "
            f"≥ {FPS_TARGET:g} fps: {'met' if edge['fps'] >= FPS_TARGET else 'NOT met'}."
        )
    else:
        out.append(f"- Edge model speed: no latency record for `{results['edge']}` at `{fps['source']}`.")
    for run in results.get("line_rate", []):
        out.append(
            f"- Whole runtime ({run['label']}, {run['date']}, runtime benchmark): "
            f"{run['sustained_fps']:g} fps sustained at a {run['target_fps']:g} fps target, "
            f"{run['frames_dropped']} dropped, inference p50 {run['inference_p50_ms']} ms."
        )
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = results["rates"]
    x = [100 * float(r) for r in rates]
    fig, axis = plt.subplots(figsize=(6, 4))
    for row in results["categories"].values():
        axis.plot(x, [row["hybrid"][r]["f1"] for r in rates], color="0.75", lw=1)
    mean = results["mean"]
    axis.plot(x, [mean["hybrid"][r]["f1"] for r in rates], marker="o", color="C0", label="hybrid (mean)")
    axis.axhline(mean["accurate_f1"], color="C2", ls="--", label=f"{results['accurate']} alone (mean)")
    axis.axhline(mean["edge_f1"], color="C3", ls=":", label=f"{results['edge']} alone (mean)")
    axis.set_xlabel("target escalation rate, % of good parts")
    axis.set_ylabel("F1 (defect)")
    axis.set_title("Hybrid F1 vs escalation rate (grey: categories)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scores", type=Path, default=PARETO / "work" / "scores")
    parser.add_argument("--models", type=Path, default=None, help="default: <scores>/../models")
    parser.add_argument("--edge", default="lite0-b2048")
    parser.add_argument("--accurate", default="lite2-b12288", help="a variant, or A+B / A|B (ensembles)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.05, 0.10])
    parser.add_argument("--latency", type=Path, default=PARETO / "latency.json")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if any(not 0.0 < rate < 1.0 for rate in args.rates):
        parser.error(f"--rates must lie in (0, 1), got {args.rates}")
    args.models = args.models or args.scores.parent / "models"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rates = [f"{rate:g}" for rate in args.rates]
    used: list[dict[str, Any]] = []
    rows = {
        category: evaluate(load_category(args, category, used), args.rates) for category in categories(args)
    }
    results = {
        "edge": args.edge,
        "accurate": args.accurate,
        "rates": rates,
        "scores_dir": _rel(args.scores),
        "inputs": used,
        "categories": rows,
        "mean": mean_row(rows, rates),
        "fps": edge_fps(args.latency, [args.edge, args.accurate]),
        "line_rate": line_rate(RUNTIME_RESULTS),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / "hybrid.png")
    image = args.out.resolve() / "hybrid.png"
    benchmarks = REPO / "benchmarks"
    relative = image.relative_to(benchmarks) if image.is_relative_to(benchmarks) else image
    (args.out / "results.md").write_text(markdown(results, str(relative)))
    print(markdown(results))


if __name__ == "__main__":
    main()
