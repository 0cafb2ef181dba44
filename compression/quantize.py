"""int8 where it pays: static QDQ for the backbone's op groups that measure faster, float elsewhere.

What must stay float, and why: the memory-bank distance is |f|^2 - 2 (f.m - |m|^2/2), a difference of
large terms that int8 activations drown in rounding noise; the position normalisation, the Gaussian
smoothing (its Convs!) and the max make the score, and a uint8 anomaly map calibrated on good images
clips every defect to the same value (image AUROC 0.5). So only nodes under the backbone scope are
quantized, one op group at a time, each kept only if the whole model measures faster (interleaved p50
against the current best) and the metric holds; the bank's matrix and the Gaussian head's projection and
precision factors are int8 weights-only (file size).
On x86 CPUs without VNNI, weights use 7 bits (`reduce_range`) to avoid u8s8 saturation.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from vision.onnx_proto import behind_identities

QUANTIZED_SCOPES = ("/backbone/",)
FLOAT_ACTIVATION_PATTERNS = ("memory_bank",)
# The per-position Gaussian head's matrices (its projection and 1,024 precision factors, 16 of a 19.5 MiB
# file) are stored as int8 weights too: its distance stays float math, like the bank's. Measured on real
# DEV cells (ELPV mono) with one scale per position: image AUROC 0.951 -> 0.950, int4 0.916 (dropped).
WEIGHT_ONLY_PATTERNS = ("position_gaussian",)
GROUP_ORDER = ("pointwise conv", "spatial conv", "depthwise conv", "matmul", "activations")
# Unmeasured default: kxk dense convs (the stem sees raw pixels) keep float math, int8 weights only; as QDQ
# they were the most damaging group (score rank correlation 0.93 vs >= 0.97 for each other group, lite0).
UNMEASURED_FLOAT_MATH = ("spatial conv",)


class GoodImageReader:
    """CalibrationDataReader over uint8 NHWC good images, one image per batch (the deployed shape)."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name = input_name
        self._images = [images[i : i + 1] for i in range(len(images))]
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._images):
            return None
        item = {self.input_name: np.ascontiguousarray(self._images[self._index])}
        self._index += 1
        return item

    def rewind(self) -> None:
        self._index = 0


def _quantize_columns(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column; returns (int8 values, scales)."""
    scale = np.maximum(np.abs(weight).max(axis=1 - axis), 1e-12) / 127.0
    shaped = scale[:, None] if axis == 0 else scale[None, :]
    return np.clip(np.round(weight / shaped), -127, 127).astype(np.int8), scale.astype(np.float32)


def _quantize_batched(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 for a batched MatMul's [B, K, N] weight, one scale per matrix and output column
    (shape [B, 1, N]); returns (int8 values, scales)."""
    scale = (np.maximum(np.abs(weight).max(axis=1, keepdims=True), 1e-12) / 127.0).astype(np.float32)
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale


def _dequantize(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    quantized: np.ndarray,
    scale: np.ndarray,
    axis: int,
    lower_triangles: bool = False,
) -> None:
    """Feed `node` its weight as float(int8 `quantized`) * `scale` (per slice along `axis`, or already
    shaped to broadcast). With `lower_triangles` ([B, K, K] Cholesky factors) only each matrix's lower
    triangle is stored, half the bytes: a Gather with a constant [K, K] index table (the upper entries
    read a stored zero) rebuilds the squares.

    Cast (+ Gather) + Mul, not DequantizeLinear: ORT constant-folds these at session start, so the kernel
    sees a constant float weight (pre-packed, NCHWc convs) and runs as fast as before; a DequantizeLinear
    is kept for QDQ fusion, runs every frame and makes the weight non-constant (measured 12.8 -> 31.7 ms)."""
    from onnx import numpy_helper

    base = node.input[1]
    if scale.ndim == 1:
        shape = [1] * quantized.ndim
        shape[axis] = len(scale)
        scale = scale.reshape(shape)
    stored, as_float = quantized, f"{base}_int8_as_float"
    nodes = [
        onnx.helper.make_node(
            "Cast", [f"{base}_int8"], [as_float], name=f"{node.name}_weight_cast", to=onnx.TensorProto.FLOAT
        )
    ]
    if lower_triangles:
        size = quantized.shape[1]
        rows, cols = np.tril_indices(size)
        stored = np.concatenate([quantized[:, rows, cols], np.zeros((len(quantized), 1), np.int8)], axis=1)
        index = np.full((size, size), len(rows), dtype=np.int64)  # the appended zero
        index[rows, cols] = np.arange(len(rows))
        model.graph.initializer.append(numpy_helper.from_array(index, f"{base}_triangle_index"))
        nodes.append(
            onnx.helper.make_node(
                "Gather",
                [as_float, f"{base}_triangle_index"],
                [f"{base}_int8_square"],
                name=f"{node.name}_weight_unpack",
                axis=1,
            )
        )
        as_float = f"{base}_int8_square"
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(stored, f"{base}_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
        ]
    )
    nodes.append(
        onnx.helper.make_node(
            "Mul", [as_float, f"{base}_scale"], [f"{base}_dequantized"], name=f"{node.name}_weight_scale"
        )
    )
    position = list(model.graph.node).index(node)
    for new_node in reversed(nodes):
        model.graph.node.insert(position, new_node)
    node.input[1] = f"{base}_dequantized"


def _triangular(weight: np.ndarray) -> bool:
    """Whether every square matrix of a [B, K, K] weight is lower-triangular (a Cholesky factor)."""
    return weight.shape[1] == weight.shape[2] and not np.triu(weight, 1).any()


def _conv_weight_only(model: onnx.ModelProto, node: onnx.NodeProto, weight: np.ndarray) -> None:
    """Symmetric int8 per output channel for a conv kernel [out, in, kh, kw]."""
    scale = (np.maximum(np.abs(weight).reshape(len(weight), -1).max(axis=1), 1e-12) / 127.0).astype(
        np.float32
    )
    quantized = np.clip(np.round(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
    _dequantize(model, node, quantized, scale, 0)


def weight_only_int8(model: onnx.ModelProto, node_names: Sequence[str], distance_bias: bool = True) -> int:
    """Store the constant weight of the named MatMul/Gemm/Conv nodes as int8 + per-output scale (folded
    back to float when the session starts; a batched MatMul's [B, K, N] weight gets one scale per matrix
    and column, and only its lower triangles when they are Cholesky factors): the file shrinks 4x (8x),
    the math stays float. Returns nodes
    changed. A weight two nodes share (the exporter passes it through an Identity) is stored once.

    Used for the memory bank: distances are |f|^2 - 2 (f.m - |m|^2/2), a difference of large terms, so
    int8 activations would drown them in rounding noise. With `distance_bias`, the bias closing each
    chain of factors (a coarse-to-fine bank has two: its coarse copy and the whole bank) is recomputed
    as -|m~|^2/2 from the int8 bank m~ (the product of the chain's dequantized matrices), so the graph
    computes exact distances to the int8 bank and never goes negative."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    producers = {output: n for n in model.graph.node for output in n.output}
    stored: dict[str, tuple[str, np.ndarray]] = {}  # initializer -> (dequantized tensor, [in, out] weight)
    matrices: dict[str, np.ndarray] = {}  # changed MatMul/Gemm node -> its dequantized [in, out] weight
    changed = 0
    for node in _nodes(model, set(node_names).__contains__, ("MatMul", "Gemm", "Conv")):
        source = behind_identities(node.input[1], producers) if len(node.input) >= 2 else ""
        if source in stored:
            node.input[1], matrices[node.name] = stored[source]
            changed += 1
            continue
        if source not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[source]).astype(np.float32)
        if node.op_type == "Conv":
            if weight.ndim == 4:
                _conv_weight_only(model, node, weight)
                changed += 1
            continue
        if weight.ndim == 3 and node.op_type == "MatMul":  # batched: the Gaussian head's precision factors
            quantized, scale = _quantize_batched(weight)
            node.input[1] = source
            _dequantize(model, node, quantized, scale, 0, lower_triangles=_triangular(weight))
            changed += 1
            continue
        if weight.ndim != 2:
            continue
        axis = 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
        quantized, scale = _quantize_columns(weight, axis)
        node.input[1] = source
        _dequantize(model, node, quantized, scale, axis)
        changed += 1
        dequantized = quantized.astype(np.float32) * (scale[:, None] if axis == 0 else scale[None, :])
        matrices[node.name] = dequantized.T if axis == 0 else dequantized
        stored[source] = (node.input[1], matrices[node.name])
    if distance_bias:
        for chain in _factor_chains(model, matrices):
            _refresh_distance_bias(model, chain)
    consumed = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    for bypassed in [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in consumed]:
        model.graph.node.remove(bypassed)  # it passed a float weight that both users now read as int8
    used = {name for n in model.graph.node for name in n.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return changed


SHAPE_ONLY_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def _factor_chains(
    model: onnx.ModelProto, matrices: dict[str, np.ndarray]
) -> list[list[tuple[onnx.NodeProto, np.ndarray]]]:
    """The changed MatMul/Gemm nodes grouped into chains (each feeding the next, perhaps through a
    reshape: ONNX Runtime's MatMul+Add fusion flattens a Gemm's input), in graph order."""
    producers = {output: n for n in model.graph.node for output in n.output}

    def feeder(node: onnx.NodeProto) -> str:
        source = producers.get(node.input[0])
        while source is not None and source.op_type in SHAPE_ONLY_OPS:
            source = producers.get(source.input[0])
        return source.name if source is not None and source.name in matrices else ""

    nodes = [n for n in model.graph.node if n.name in matrices]
    feeders = {n.name: feeder(n) for n in nodes}
    fed_by = {feeders[n.name]: n for n in nodes if feeders[n.name]}
    chains = []
    for head in (n for n in nodes if not feeders[n.name]):
        chain = [head]
        while chain[-1].name in fed_by:
            chain.append(fed_by[chain[-1].name])
        chains.append([(n, matrices[n.name]) for n in chain])
    return chains


def _refresh_distance_bias(model: onnx.ModelProto, chain: list[tuple[onnx.NodeProto, np.ndarray]]) -> None:
    """Set the bias after the chain's last node to -|m~|^2/2 of the entries the chain really holds."""
    from onnx import numpy_helper

    effective = chain[0][1]
    for _, weight in chain[1:]:
        if weight.shape[0] != effective.shape[1]:
            return  # not one chain of factors: leave the biases alone
        effective = effective @ weight
    last = chain[-1][0]
    initializers = {init.name: init for init in model.graph.initializer}
    bias = (-0.5 * (effective.astype(np.float64) ** 2).sum(axis=0)).astype(np.float32)
    if last.op_type == "Gemm" and len(last.input) >= 3 and last.input[2] in initializers:
        holder, slot = last, 2
    else:  # batched MatMul + Add(bias), as exported for [N, positions, C] patches
        consumers = [n for n in model.graph.node if last.output[0] in n.input]
        if len(consumers) != 1 or consumers[0].op_type != "Add":
            return
        holder = consumers[0]
        slot = 1 - list(holder.input).index(last.output[0])
        if holder.input[slot] not in initializers:
            return
        if tuple(initializers[holder.input[slot]].dims) != bias.shape:
            return
    name = f"{holder.input[slot]}_int8_bank_norms"
    model.graph.initializer.append(numpy_helper.from_array(bias, name))
    holder.input[slot] = name


def cpu_has_vnni() -> bool:
    """VNNI accumulates u8 x s8 products without the 16-bit saturation of plain AVX2."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def default_reduce_range() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and not cpu_has_vnni()


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _nodes(
    model: onnx.ModelProto, named: Callable[[str], bool], op_types: Collection[str] | None = None
) -> list[onnx.NodeProto]:
    """The nodes whose name passes `named` (and whose op is one of `op_types`), in graph order: how the
    op groups, the bank and the weights to store as int8 are picked. A list, so callers may insert nodes
    into the graph while they go through it."""
    return [n for n in model.graph.node if named(n.name) and (op_types is None or n.op_type in op_types)]


def op_groups(model: onnx.ModelProto, scopes: Sequence[str] = QUANTIZED_SCOPES) -> dict[str, list[str]]:
    """Quantizable nodes under `scopes`, by kind: 1x1 convs, dense kxk convs, depthwise/grouped convs,
    MatMuls (TT cores), and the elementwise ops between them (int8 can then flow from conv to conv)."""
    initializers = {init.name: init for init in model.graph.initializer}
    groups: dict[str, list[str]] = {name: [] for name in GROUP_ORDER}
    for node in _nodes(model, lambda name: name.startswith(tuple(scopes))):
        if node.op_type == "Conv" and node.input[1] in initializers:
            dims = list(initializers[node.input[1]].dims)
            if _attribute(node, "group", 1) > 1:
                groups["depthwise conv"].append(node.name)
            elif dims[2:] == [1, 1]:
                groups["pointwise conv"].append(node.name)
            else:
                groups["spatial conv"].append(node.name)
        elif node.op_type in ("MatMul", "Gemm") and any(i in initializers for i in node.input[:2]):
            groups["matmul"].append(node.name)
        elif node.op_type in ("Clip", "Relu", "Add"):
            groups["activations"].append(node.name)
    return {name: nodes for name, nodes in groups.items() if nodes}


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


class _Builder:
    """Writes int8 variants of one prepared model: chosen groups as QDQ, others as int8 weights, the
    bank as int8 weights; calibration ranges are computed once and cached."""

    def __init__(
        self,
        prepared: Path,
        tmp: Path,
        calibration_images: np.ndarray,
        per_channel: bool,
        reduce_range: bool,
        float_patterns: Sequence[str],
        props: dict[str, str],
    ) -> None:
        self.prepared, self.tmp, self.images = prepared, tmp, calibration_images
        self.per_channel, self.reduce_range, self.props = per_channel, reduce_range, props
        graph = onnx.load(str(prepared))
        self.input_name = graph.graph.input[0].name
        self.groups = op_groups(graph)
        bank = _nodes(graph, lambda name: any(p in name for p in float_patterns), ("MatMul", "Gemm"))
        self.bank_nodes = [node.name for node in bank]
        head = _nodes(graph, lambda name: any(p in name for p in WEIGHT_ONLY_PATTERNS), ("MatMul", "Gemm"))
        self.head_nodes = [node.name for node in head]
        self.cache = tmp / "calibration.json"
        self.count = 0

    def build(self, qdq: Sequence[str], weights_only: Sequence[str]) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        self.count += 1
        out = self.tmp / f"variant{self.count}.onnx"
        nodes = [n for group in qdq for n in self.groups[group]]
        if nodes:
            quantize_static(
                str(self.prepared),
                str(out),
                GoodImageReader(self.input_name, self.images),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=self.per_channel,
                reduce_range=self.reduce_range,
                op_types_to_quantize=["Conv", "MatMul", "Gemm", "Clip", "Relu", "Add"],
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(self.cache),
            )
            model = onnx.load(str(out))
        else:
            model = onnx.load(str(self.prepared))
        weight_nodes = [n for group in weights_only for n in self.groups[group] if group != "activations"]
        weight_only_int8(model, weight_nodes, distance_bias=False)
        weight_only_int8(model, self.bank_nodes)
        weight_only_int8(model, self.head_nodes, distance_bias=False)
        _set_metadata(model, self.props, qdq, weights_only)
        onnx.save(model, str(out))
        return out


def _set_metadata(
    model: onnx.ModelProto, props: dict[str, str], qdq: Sequence[str], weights_only: Sequence[str]
) -> None:
    values = dict(props)
    if "edgeinspect.model_version" in values:
        values["edgeinspect.model_version"] += "-int8"
    values["edgeinspect.quantization"] = (
        f"int8 static QDQ ({', '.join(qdq) or 'none'}), per-channel weights, MinMax on good images; "
        f"int8 weights only: {', '.join([*weights_only, 'memory bank', 'gaussian head'])}; distance, "
        "position normalisation, smoothing and max in float"
    )
    del model.metadata_props[:]
    for key, value in sorted(values.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


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

    Without `check` every backbone group is QDQ int8 except `UNMEASURED_FLOAT_MATH` (int8 weights only).
    Metadata props (threshold, input contract, identity) are copied; the model version gains an `-int8`
    suffix so alerts tell them apart."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, out_path = Path(model_path), Path(out_path)
    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one good image")
    reduce_range = default_reduce_range() if reduce_range is None else reduce_range
    props = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        builder = _Builder(
            prepared,
            Path(tmp),
            calibration_images,
            per_channel,
            reduce_range,
            float_activation_patterns,
            props,
        )
        if check is None:
            qdq = [g for g in builder.groups if g not in UNMEASURED_FLOAT_MATH]
            weights = [g for g in builder.groups if g in UNMEASURED_FLOAT_MATH]
            chosen = builder.build(qdq, weights)
            result = Int8Result(out_path, reduce_range=reduce_range)
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
            result.path, result.reduce_range = out_path, reduce_range
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


def _greedy(builder: _Builder, model_path: Path, check: Int8Check) -> tuple[Path, Int8Result]:
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
    builder: _Builder,
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
    builder: _Builder,
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
