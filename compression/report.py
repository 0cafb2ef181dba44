"""Write what compression did: report.json (everything), report.md (for people), tradeoff.png (the plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def _healing_verdict(healing: dict[str, Any]) -> str:
    """Whether the fine-tuned weights were kept, and the label-free check that decided it."""
    check = ", ".join(f"{name} {value:.4f}" for name, value in healing.get("check", {}).items())
    verdict = "kept" if healing.get("kept", True) else "dropped: the unhealed student scored better"
    return f"Healing {verdict}" + (
        f" (AUROC on held-back good images with pasted patches: {check})." if check else "."
    )


def _probes(layer: dict[str, Any]) -> str:
    """Sensitivity probes as 'method rank: error' (method shown only when several were probed)."""
    probes = layer.get("sensitivity", [])
    several = len({p.get("method", "") for p in probes}) > 1
    return ", ".join(
        f"{p['method'] + ' ' if several and p.get('method') else ''}{p['rank']}: {p['map_error']:.3f}"
        for p in probes
    )


def _timings(layer: dict[str, Any]) -> tuple[str, str, str]:
    """(dense ms, chosen ms, every timed candidate as 'method rank: ms')."""
    latency = layer.get("latency")
    if not latency:
        return "-", "-", ""
    candidates = latency.get("candidates", {})
    chosen = candidates.get(layer.get("method") or "", {}).get(str(layer.get("rank")))
    listed = ", ".join(f"{m} {r}: {ms:.3f}" for m, ranks in candidates.items() for r, ms in ranks.items())
    return f"{latency['dense_ms']:.3f}", _fmt(chosen, 3), listed


def _layer_lines(layers: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Layers",
        "",
        "Method and rank (bond dimension for tt) per layer; ms are each layer alone on ORT at its real "
        "input shape; sensitivity is the anomaly-map error with only that layer factorized.",
        "",
        "| layer | candidates | chosen | full rank | params before | dense ms | chosen ms | timed candidates "
        "(ms) | sensitivity (rank: map error) | why |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in layers:
        if not layer.get("compressible"):
            lines.append(
                f"| {layer['name']} | - | dense | - | {layer['params']} | - | - | - | - | "
                f"{layer.get('reason', '')} |"
            )
            continue
        dense_ms, chosen_ms, listed = _timings(layer)
        lines.append(
            f"| {layer['name']} | {', '.join(layer.get('candidates') or [str(layer.get('method'))])} | "
            f"{layer.get('choice', 'dense')} | {layer['full_rank']} | {layer['params']} | {dense_ms} | "
            f"{chosen_ms} | {listed} | {_probes(layer)} | {layer.get('why', '')} |"
        )
    return lines


def _int8_lines(int8: dict[str, Any] | None) -> list[str]:
    """Which op groups became int8 and the measurements that decided it."""
    if not int8:
        return []
    lines = [
        "",
        "## int8",
        "",
        f"fp32 p50 {_fmt(int8.get('fp32_p50_ms'), 2)} ms -> int8 p50 {_fmt(int8.get('int8_p50_ms'), 2)} ms "
        f"(interleaved); reduce_range={int8.get('reduce_range')}; memory-bank distance, position "
        "normalisation, smoothing and max stay float.",
        "",
        "| op group | nodes | kept as | p50 ms with it | p50 ms before | metric | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in int8.get("decisions", []):
        lines.append(
            f"| {d['group']} | {d['nodes']} | {d['mode']} | {_fmt(d.get('p50_ms'), 2)} | "
            f"{_fmt(d.get('reference_ms'), 2)} | {_fmt(d.get('metric'))} | {d.get('reason', '')} |"
        )
    return lines


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    lines = [
        f"# Compression report: {report.get('model_name', 'model')}",
        "",
        f"Budget `{report['budget']}`; heal steps {report['healing'].get('steps_run', 0)} "
        f"(best at {report['healing'].get('best_step', 0)}); threshold recalibrated to "
        f"{_fmt(report.get('threshold'))}.",
        "",
        _healing_verdict(report["healing"]),
        "",
        "| variant | params | share | MACs | file KiB | ORT p50 ms | p99 ms | image AUROC | pixel AUROC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base_params = report["variants"][0]["params"] or 1
    for v in report["variants"]:
        share = v["params"] / base_params if v.get("params") else None
        lines.append(
            f"| {v['name']} | {_fmt(v.get('params'))} | {_fmt(share, 3)} | {_fmt(v.get('macs'))} | "
            f"{_fmt(v.get('file_bytes', 0) / 1024, 1)} | {_fmt(v.get('p50_ms'), 1)} | "
            f"{_fmt(v.get('p99_ms'), 1)} | "
            f"{_fmt(v.get('image_auroc'))} | {_fmt(v.get('pixel_auroc'))} |"
        )
    lines += ["", "## Targets", ""]
    for name, item in report.get("targets", {}).items():
        lines.append(f"- {name}: {'met' if item['met'] else 'NOT met'} ({item['detail']})")
    lines += _int8_lines(report.get("int8"))
    lines += _layer_lines(report["layers"])
    lines += ["", "## Healing", "", "| step | train loss | val loss | tracked metric |", "|---|---|---|---|"]
    for entry in report["healing"].get("history", []):
        tracked = {k: v for k, v in entry.items() if k not in ("step", "train_loss", "val_loss")}
        lines.append(
            f"| {entry['step']} | {_fmt(entry.get('train_loss'))} | {_fmt(entry.get('val_loss'))} | "
            f"{', '.join(f'{k}={_fmt(v)}' for k, v in tracked.items())} |"
        )
    for note in report.get("notes", []):
        lines.append(f"\n> {note}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plot(report: dict[str, Any], path: Path) -> Path:
    """Metric vs parameters (point size/colour = latency), and the rank chosen per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in report["variants"] if v.get("params")]
    metric = "image_auroc" if any(v.get("image_auroc") is not None for v in variants) else "fidelity"
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    latencies = [v.get("p50_ms") or 0.0 for v in variants]
    scatter = left.scatter(
        [v["params"] for v in variants],
        [v.get(metric) or 0.0 for v in variants],
        c=latencies,
        s=[40 + 4 * x for x in latencies],
        cmap="viridis",
    )
    for v in variants:
        left.annotate(
            f"{v['name']}\n{(v.get('p50_ms') or 0):.1f} ms",
            (v["params"], v.get(metric) or 0.0),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    left.set_xscale("log")
    left.set_xlabel("parameters")
    left.set_ylabel(metric)
    left.set_title("metric vs parameters (colour/size: ORT p50 latency)")
    fig.colorbar(scatter, ax=left, label="p50 ms")
    layers = [layer for layer in report["layers"] if layer.get("rank") is not None]
    kept = [min(layer["rank"], layer["full_rank"]) / layer["full_rank"] for layer in layers]
    right.barh(range(len(layers)), kept, color=["tab:blue" if k < 1 else "tab:gray" for k in kept])
    right.set_yticks(
        range(len(layers)), [f"{layer['name']} ({layer['rank']})" for layer in layers], fontsize=6
    )
    right.invert_yaxis()
    right.set_xlabel("rank / full rank (grey: left dense)")
    right.set_title("per-layer ranks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "json": write_json(report, out_dir / "report.json"),
        "markdown": write_markdown(report, out_dir / "report.md"),
        "plot": write_plot(report, out_dir / "tradeoff.png"),
    }
