"""int8 where it pays: static QDQ for the backbone's op groups that measure faster, float elsewhere.

The int8 file itself (which nodes may be int8, the QDQ builder, int8 weights for the bank and the
Gaussian head) is `vision.int8_export`, the path both builds deploy. Here each op group is kept as QDQ
only if the whole model measures faster (interleaved p50 against the current best) and a labelled metric
holds, else int8 weights only, else float: the compression benchmarks' way to learn which groups pay on
a CPU (the deployed default was chosen from it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from vision.int8_export import FLOAT_ACTIVATION_PATTERNS, Int8Builder, default_split, int8_builder


@dataclass
class Int8Decision:
    """What one op group became: `int8` (QDQ), `int8 weights` (weights only, float math) or `float`."""

    group: str
    nodes: int
    mode: str
    p50_ms: float | None = None
    reference_ms: float | None = None
    metric: float | None = None
    reason: str = ""


@dataclass
class Int8Check:
    """How decisions are measured: latency on `image` (interleaved with the current best) and a metric
    (higher is better, e.g. image AUROC on held-out images) that may drop at most `max_drop`."""

    image: np.ndarray
    metric: Callable[[Path], float]
    threads: int = 2
    runs: int = 30
    min_speedup: float = 0.03
    max_drop: float = 0.01


@dataclass
class Int8Result:
    path: Path
    decisions: list[Int8Decision] = field(default_factory=list)
    float_nodes: list[str] = field(default_factory=list)
    fp32_p50_ms: float | None = None
    int8_p50_ms: float | None = None
    fp32_metric: float | None = None
    reduce_range: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "decisions": [asdict(d) for d in self.decisions],
            "float_nodes": len(self.float_nodes),
            "fp32_p50_ms": self.fp32_p50_ms,
            "int8_p50_ms": self.int8_p50_ms,
            "fp32_metric": self.fp32_metric,
            "reduce_range": self.reduce_range,
        }


def quantize_int8(
    model_path: str | Path,
    out_path: str | Path,
    calibration_images: np.ndarray,
    per_channel: bool = True,
    float_activation_patterns: Sequence[str] = FLOAT_ACTIVATION_PATTERNS,
    check: Int8Check | None = None,
    reduce_range: bool | None = None,
) -> Path:
    """int8 model at `out_path` (see `quantize_int8_measured`); returns the path."""
    return quantize_int8_measured(
        model_path, out_path, calibration_images, per_channel, float_activation_patterns, check, reduce_range
    ).path


def quantize_int8_measured(
    model_path: str | Path,
    out_path: str | Path,
    calibration_images: np.ndarray,
    per_channel: bool = True,
    float_activation_patterns: Sequence[str] = FLOAT_ACTIVATION_PATTERNS,
    check: Int8Check | None = None,
    reduce_range: bool | None = None,
) -> Int8Result:
    """Quantize the backbone's op groups; with `check`, keep each only where it measures faster and the
    metric holds (else try int8 weights only, else float), and say why per group.

    Without `check`, the deployed default (`vision.int8_export.default_split`), with the decisions
    recorded as unmeasured."""
    model_path, out_path = Path(model_path), Path(out_path)
    with int8_builder(
        model_path, out_path.parent, calibration_images, per_channel, float_activation_patterns, reduce_range
    ) as builder:
        if check is None:
            qdq, weights = default_split(list(builder.groups))
            chosen = builder.build(qdq, weights)
            result = Int8Result(out_path, reduce_range=builder.reduce_range)
            result.decisions = [
                Int8Decision(
                    g,
                    len(n),
                    "int8" if g in qdq else "int8 weights",
                    reason="not measured (default)" if g in qdq else "not measured: most damaging as QDQ",
                )
                for g, n in builder.groups.items()
            ]
        else:
            chosen, result = _greedy(builder, model_path, check)
            result.path, result.reduce_range = out_path, builder.reduce_range
        final = onnx.load(str(chosen))
        onnx.save(final, str(out_path))
        quantized = {n for d in result.decisions if d.mode != "float" for n in builder.groups[d.group]}
        result.float_nodes = [n.name for n in final.graph.node if n.name not in quantized]
    return result


@dataclass
class _Timing:
    """Two models timed interleaved. Contention on a shared CPU adds heavy-tailed delays, so a speed-up
    counts only when the ratio of p50s and the median per-round ratio both show it."""

    reference_ms: float
    candidate_ms: float
    ratio: float  # median over rounds of candidate / reference, each round run back to back

    def faster_by(self, share: float) -> bool:
        limit = 1.0 - share
        return self.ratio <= limit and self.candidate_ms <= limit * self.reference_ms


def _timed_pair(reference: Path, candidate: Path, check: Int8Check) -> _Timing:
    """Interleaved p50s and the median per-round ratio, which load drift affects least."""
    from compression.onnx_bench import interleaved_times

    first, second = interleaved_times([reference, candidate], check.image, check.threads, runs=check.runs)
    ratio = float(np.median(np.asarray(second) / np.maximum(np.asarray(first), 1e-9)))
    return _Timing(float(np.percentile(first, 50)), float(np.percentile(second, 50)), ratio)


def _greedy(builder: Int8Builder, model_path: Path, check: Int8Check) -> tuple[Path, Int8Result]:
    """One op group at a time: QDQ if faster and accurate, else int8 weights if not slower, else float;
    finally the QDQ set must beat plain float math as a whole, or it is dropped."""
    result = Int8Result(Path())
    result.fp32_metric = check.metric(model_path)
    floor = result.fp32_metric - check.max_drop
    qdq: list[str] = []
    weights: list[str] = []
    current = builder.build([], [])  # float math, int8 bank weights: where every group starts
    for group, nodes in builder.groups.items():
        if group == "activations" and not qdq:
            reason = "no int8 convs kept to pass int8 between"
            result.decisions.append(Int8Decision(group, len(nodes), "float", reason=reason))
            continue
        candidate = builder.build([*qdq, group], weights)
        timing = _timed_pair(current, candidate, check)
        metric = check.metric(candidate)
        decision = Int8Decision(group, len(nodes), "int8", timing.candidate_ms, timing.reference_ms, metric)
        if metric >= floor and timing.faster_by(check.min_speedup):
            decision.reason = f"{_faster(timing)}, metric {metric:.4f}"
            qdq.append(group)
            current = candidate
        else:
            why = f"metric {metric:.4f} < {floor:.4f}" if metric < floor else f"not faster: {_faster(timing)}"
            decision = _try_weights_only(builder, qdq, weights, group, current, check, floor, why)
            decision.nodes = len(nodes)
            if decision.mode == "int8 weights":
                weights.append(group)
                current = builder.build(qdq, weights)
        result.decisions.append(decision)
    if qdq:
        current = _confirm(builder, qdq, weights, current, check, result)
    final = _timed_pair(model_path, current, check)
    result.fp32_p50_ms, result.int8_p50_ms = final.reference_ms, final.candidate_ms
    return current, result


def _faster(timing: _Timing) -> str:
    return (
        f"{timing.candidate_ms:.2f} vs {timing.reference_ms:.2f} ms p50, "
        f"{100.0 * (1.0 - timing.ratio):+.1f}% per interleaved round"
    )


def _confirm(
    builder: Int8Builder,
    qdq: list[str],
    weights: list[str],
    current: Path,
    check: Int8Check,
    result: Int8Result,
) -> Path:
    """Group gains were measured one at a time; the whole QDQ set must still beat float math with the
    same int8 weights, else every QDQ group falls back to int8 weights only."""
    plain = builder.build([], [*weights, *qdq])
    timing = _timed_pair(plain, current, check)
    if timing.faster_by(check.min_speedup):
        return current
    for decision in result.decisions:
        if decision.mode == "int8":
            decision.mode = "int8 weights"
            decision.reason += f"; dropped to weights only: all QDQ groups together {_faster(timing)}"
    return plain


def weights_fold_at_load(path: Path) -> bool:
    """Whether ORT constant-folds every int8 weight (Cast + Mul, a Gather for triangles) back to float
    when a session starts: then the weights-only groups cost nothing per frame, by construction rather
    than by a noisy timing."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    dequantizing = ("_weight_cast", "_weight_unpack", "_weight_scale")
    return not any(node.name.endswith(dequantizing) for node in optimized.graph.node)


def _try_weights_only(
    builder: Int8Builder,
    qdq: list[str],
    weights: list[str],
    group: str,
    current: Path,
    check: Int8Check,
    floor: float,
    why: str,
) -> Int8Decision:
    """int8 storage, float math: a smaller file at the same speed, if ORT folds the weights at load and
    the metric holds (the timing is reported, not trusted: it can only differ by noise)."""
    if group == "activations":
        return Int8Decision(group, 0, "float", reason=f"QDQ {why}")
    candidate = builder.build(qdq, [*weights, group])
    timing = _timed_pair(current, candidate, check)
    metric = check.metric(candidate)
    folds = weights_fold_at_load(candidate)
    detail = f"QDQ {why}; int8 weights only ({_faster(timing)}), metric {metric:.4f}"
    if metric >= floor and folds:
        reason = f"{detail}, folded to float at load"
        return Int8Decision(
            group, 0, "int8 weights", timing.candidate_ms, timing.reference_ms, metric, reason
        )
    problem = "not folded at load" if not folds else "metric too low"
    return Int8Decision(
        group, 0, "float", timing.candidate_ms, timing.reference_ms, metric, f"{detail}: rejected, {problem}"
    )
