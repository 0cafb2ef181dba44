"""The int8 model file a line deploys: static QDQ int8 for the backbone, int8 weights for the head, the
threshold recalibrated on the int8 scores. One path for the plant's build (`vision.train`) and the
station's (`vision.station_build`, no torch: ONNX Runtime's quantizer and `onnx` alone).

What must stay float, and why: the memory-bank distance is |f|^2 - 2 (f.m - |m|^2/2), a difference of
large terms that int8 activations drown in rounding noise; the position normalisation, the Gaussian
smoothing (its Convs!) and the max make the score, and a uint8 anomaly map calibrated on good images
clips every defect to the same value (image AUROC 0.5). So only nodes under the backbone scope are
quantized, by op group; the bank's matrix and the Gaussian head's projection and precision factors are
int8 weights only (`vision.int8_weights`). Which groups pay on a given CPU is measured by
`compression.quantize`; the deployed default is every backbone group as QDQ but the kxk convs.
On x86 CPUs without VNNI, weights use 7 bits (`reduce_range`) to avoid u8s8 saturation.

On real parts the int8 file is the one compressed model on the accuracy-latency front (1.15-1.45x faster
by host, 0.1-0.9 points of image AUROC on the worst set, a fifth of the file; benchmarks/real/front.md).
Its scores differ a little from the float model's, so a threshold calibrated on the float scores would no
longer hold the target false-reject rate: it is recalibrated on the same held-back good images.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx

from vision.calibration import threshold_from_good_scores
from vision.export import META_MODEL_VERSION, META_QUANTIZATION, META_THRESHOLD
from vision.int8_weights import nodes_named, weight_only_int8
from vision.ort_session import image_scores

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


def op_groups(model: onnx.ModelProto, scopes: Sequence[str] = QUANTIZED_SCOPES) -> dict[str, list[str]]:
    """Quantizable nodes under `scopes`, by kind: 1x1 convs, dense kxk convs, depthwise/grouped convs,
    MatMuls (TT cores), and the elementwise ops between them (int8 can then flow from conv to conv)."""
    initializers = {init.name: init for init in model.graph.initializer}
    groups: dict[str, list[str]] = {name: [] for name in GROUP_ORDER}
    for node in nodes_named(model, lambda name: name.startswith(tuple(scopes))):
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


class Int8Builder:
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
        bank = nodes_named(graph, lambda name: any(p in name for p in float_patterns), ("MatMul", "Gemm"))
        self.bank_nodes = [node.name for node in bank]
        head = nodes_named(
            graph, lambda name: any(p in name for p in WEIGHT_ONLY_PATTERNS), ("MatMul", "Gemm")
        )
        self.head_nodes = [node.name for node in head]
        self.cache = tmp / "calibration.json"
        self.count = 0

    def build(self, qdq: Sequence[str], weights_only: Sequence[str]) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        self.count += 1
        out = self.tmp / f"variant{self.count}.onnx"
        nodes = [n for group in qdq for n in self.groups[group]]
        if nodes:
            with _quantizer_notes_hidden():
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
    if META_MODEL_VERSION in values:
        values[META_MODEL_VERSION] += "-int8"
    values[META_QUANTIZATION] = (
        f"int8 static QDQ ({', '.join(qdq) or 'none'}), per-channel weights, MinMax on good images; "
        f"int8 weights only: {', '.join([*weights_only, 'memory bank', 'gaussian head'])}; distance, "
        "position normalisation, smoothing and max in float"
    )
    del model.metadata_props[:]
    for key, value in sorted(values.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


class _QuantizerNotes(logging.Filter):
    """Drops ONNX Runtime's quantizer notes below WARNING (it logs them straight on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        quantizer = f"{os.sep}onnxruntime{os.sep}quantization{os.sep}" in record.pathname
        return record.levelno >= logging.WARNING or not quantizer


@contextmanager
def _quantizer_notes_hidden() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a note per adjusted weight scale (hundreds per model) at INFO: an
    operator's console would drown in them. Only those records are dropped, and only meanwhile: other
    threads' logs and the quantizer's warnings still show."""
    root, notes = logging.getLogger(), _QuantizerNotes()
    root.addFilter(notes)
    try:
        yield
    finally:
        root.removeFilter(notes)


def default_split(groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """(QDQ groups, int8-weights-only groups) when nothing is measured: every backbone group as QDQ
    except `UNMEASURED_FLOAT_MATH`."""
    qdq = [g for g in groups if g not in UNMEASURED_FLOAT_MATH]
    return qdq, [g for g in groups if g in UNMEASURED_FLOAT_MATH]


@contextmanager
def int8_builder(
    model_path: str | Path,
    work_dir: str | Path,
    calibration_images: np.ndarray,
    per_channel: bool = True,
    float_activation_patterns: Sequence[str] = FLOAT_ACTIVATION_PATTERNS,
    reduce_range: bool | None = None,
) -> Iterator[Int8Builder]:
    """An `Int8Builder` over the float model prepared for quantization (shape inference), in a
    temporary folder under `work_dir` that goes when the block ends. Metadata props (threshold, input
    contract, identity) are copied into every variant; the model version gains an `-int8` suffix so
    alerts tell them apart."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one good image")
    reduce_range = default_reduce_range() if reduce_range is None else reduce_range
    props = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        yield Int8Builder(
            prepared,
            Path(tmp),
            calibration_images,
            per_channel,
            reduce_range,
            float_activation_patterns,
            props,
        )


def write_int8(model_path: str | Path, out_path: str | Path, calibration_images: np.ndarray) -> Path:
    """The int8 version of the float file at `model_path`, unmeasured default groups, at `out_path`
    (the threshold is the float model's: `quantize_deployed` recalibrates it)."""
    out_path = Path(out_path)
    with int8_builder(model_path, out_path.parent, calibration_images) as builder:
        os.replace(builder.build(*default_split(list(builder.groups))), out_path)
    return out_path


def quantize_deployed(
    path: str | Path, good_images: np.ndarray, target_false_reject_rate: float, threads: int = 1
) -> tuple[float, np.ndarray]:
    """Replace the ONNX file at `path` by its int8 version, its threshold recalibrated on `good_images`
    (uint8 NHWC at the model's size, held back from fitting); the file is swapped in only once complete.
    Returns (threshold, the images' int8 scores)."""
    path = Path(path)
    staged = path.with_name(path.stem + ".int8-staging.onnx")
    try:
        write_int8(path, staged, good_images)
        model = onnx.load(str(staged))
        scores = image_scores(model.SerializeToString(), good_images, threads)
        threshold = float(threshold_from_good_scores(scores, target_false_reject_rate))
        for prop in model.metadata_props:
            if prop.key == META_THRESHOLD:
                prop.value = repr(threshold)
        onnx.save(model, str(staged))
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return threshold, scores
