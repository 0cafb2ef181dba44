"""int8 static quantization of an exported model, calibrated on good images, metadata kept."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx


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


def weight_only_int8(model: onnx.ModelProto, node_names: Sequence[str], distance_bias: bool = True) -> int:
    """Store the constant right-hand matrix of the named MatMul/Gemm nodes as int8 + per-column scale
    behind a DequantizeLinear: the file shrinks 4x while the products stay float. Returns nodes changed.

    Used for the memory bank: distances are |f|^2 - 2 (f.m - |m|^2/2), a difference of large terms, so
    int8 activations would drown them in rounding noise. With `distance_bias`, the bias of the last node
    of the chain is recomputed as -|m~|^2/2 from the int8 bank m~ (the product of the chain's dequantized
    matrices), so the graph computes exact distances to the int8 bank and never goes negative."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    wanted = set(node_names)
    chain: list[tuple[onnx.NodeProto, np.ndarray]] = []  # (node, dequantized weight as [in, out])
    for node in list(model.graph.node):
        if node.name not in wanted or node.op_type not in ("MatMul", "Gemm"):
            continue
        if node.input[1] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if weight.ndim != 2:
            continue
        axis = 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
        quantized, scale = _quantize_columns(weight, axis)
        base = node.input[1]
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{base}_int8"),
                numpy_helper.from_array(scale, f"{base}_scale"),
                numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{base}_zero"),
            ]
        )
        dequantize = onnx.helper.make_node(
            "DequantizeLinear",
            [f"{base}_int8", f"{base}_scale", f"{base}_zero"],
            [f"{base}_dequantized"],
            name=f"{node.name}_weight_dequantize",
            axis=axis,
        )
        model.graph.node.insert(list(model.graph.node).index(node), dequantize)
        node.input[1] = f"{base}_dequantized"
        dequantized = quantized.astype(np.float32) * (scale[:, None] if axis == 0 else scale[None, :])
        chain.append((node, dequantized.T if axis == 0 else dequantized))
    if distance_bias and chain:
        _refresh_distance_bias(model, chain)
    used = {name for n in model.graph.node for name in n.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return len(chain)


def _refresh_distance_bias(model: onnx.ModelProto, chain: list[tuple[onnx.NodeProto, np.ndarray]]) -> None:
    from onnx import numpy_helper

    effective = chain[0][1]
    for _, weight in chain[1:]:
        if weight.shape[0] != effective.shape[1]:
            return  # not one chain of factors: leave the biases alone
        effective = effective @ weight
    last = chain[-1][0]
    if last.op_type != "Gemm" or len(last.input) < 3:
        return
    initializers = {init.name: init for init in model.graph.initializer}
    if last.input[2] not in initializers:
        return
    bias = (-0.5 * (effective.astype(np.float64) ** 2).sum(axis=0)).astype(np.float32)
    name = f"{last.input[2]}_int8_bank_norms"
    model.graph.initializer.append(numpy_helper.from_array(bias, name))
    last.input[2] = name


def quantize_int8(
    model_path: str | Path,
    out_path: str | Path,
    calibration_images: np.ndarray,
    op_types: Sequence[str] = ("Conv", "MatMul", "Gemm"),
    per_channel: bool = True,
    float_activation_patterns: Sequence[str] = ("memory_bank",),
) -> Path:
    """QDQ int8 (activations uint8, weights int8 per channel) for `op_types`; elementwise ops stay float.

    Nodes whose name contains one of `float_activation_patterns` keep float activations and get int8
    weights only (see `weight_only_int8`). The ONNX metadata props (threshold, input contract, identity)
    are copied onto the result, and the model version gains an `-int8` suffix so alerts tell them apart."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, out_path = Path(model_path), Path(out_path)
    if len(calibration_images) == 0:
        raise ValueError("int8 calibration needs at least one good image")
    source = onnx.load(str(model_path))
    input_name = source.graph.input[0].name
    props = {p.key: p.value for p in source.metadata_props}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        float_nodes = [  # named after pre-processing, which fuses e.g. MatMul+Add into Gemm
            node.name
            for node in onnx.load(str(prepared)).graph.node
            if node.op_type in op_types and any(pattern in node.name for pattern in float_activation_patterns)
        ]
        raw = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(raw),
            GoodImageReader(input_name, calibration_images),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=list(op_types),
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=float_nodes,
        )
        result = onnx.load(str(raw))
        weight_only_int8(result, float_nodes)
        del result.metadata_props[:]
        if "edgeinspect.model_version" in props:
            props["edgeinspect.model_version"] += "-int8"
        props["edgeinspect.quantization"] = (
            "int8 static QDQ, per-channel weights, MinMax on good images; memory bank: int8 weights only"
        )
        for key, value in sorted(props.items()):
            entry = result.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(result, str(out_path))
    return out_path
