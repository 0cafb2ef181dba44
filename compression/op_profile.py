"""Where a model's time goes on ONNX Runtime, per operator class: what compression should go after.

Factorizing a 1x1 convolution saves nothing when the time is in depthwise convolutions or in the head, so
the choice of what to compress starts from ORT's own per-node profile of the exported file, grouped into
the classes a compression method acts on (SVD/Tucker-2 on 1x1 convs, CP/Tucker on kxk convs, nothing on
depthwise ones), plus the head's matrix products and the map's resize and blur by their module scope.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx

# ORT fuses a Conv with its activation and keeps the Conv's name; these op types are convolutions.
CONV_OPS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger")
MATMUL_OPS = ("MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "QLinearMatMul")
MAP_OPS = ("Resize", "Upsample")
QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
# ORT names a node it builds from a QDQ group (DequantizeLinear -> Conv -> QuantizeLinear becomes a
# QLinearConv) after the Conv, with this suffix.
_FUSION_SUFFIX = re.compile(r"_token_\d+$")


def _attribute(node: onnx.NodeProto, name: str) -> list[int] | int | None:
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return list(value) if isinstance(value, (list, tuple)) else int(value)
    return None


def conv_class(node: onnx.NodeProto, weights: dict[str, tuple[int, ...]]) -> str:
    """'1x1 conv', 'depthwise conv' or 'kxk conv' from the node's kernel and group."""
    shape = weights.get(node.input[1]) if len(node.input) > 1 else None
    kernel = _attribute(node, "kernel_shape")
    if not isinstance(kernel, list) and shape is not None:
        kernel = list(shape[2:])
    group = _attribute(node, "group")
    if isinstance(group, int) and group > 1 and shape is not None and shape[1] == 1:
        return "depthwise conv"
    if isinstance(kernel, list) and all(k == 1 for k in kernel):
        return "1x1 conv"
    return "kxk conv"


def _matmul_class(name: str) -> str:
    if name.startswith("/blur/"):
        return "map blur"
    if name.startswith(("/position_gaussian/", "/memory_bank/")):
        return "head matmul"
    return "other matmul"


def _weight_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of every weight, also as an int8 file's DequantizeLinear outputs give it."""
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    return weights


def node_classes(graph: onnx.GraphProto) -> dict[str, str]:
    """Node name -> operator class for every node of the graph."""
    weights = _weight_shapes(graph)
    classes = {}
    for node in graph.node:
        if node.op_type in CONV_OPS:
            classes[node.name] = conv_class(node, weights)
        elif node.op_type in MATMUL_OPS:
            classes[node.name] = _matmul_class(node.name)
        elif node.op_type in MAP_OPS:
            classes[node.name] = "resize"
        elif node.op_type in QUANT_OPS:
            classes[node.name] = "(de)quantize"
        else:
            classes[node.name] = "other"
    return classes


def _class_of_event(name: str, op: str, classes: dict[str, str], producers: dict[str, onnx.NodeProto]) -> str:
    """The class of the graph node a timing belongs to. ORT's optimizer fuses a Conv with its activation
    and rewrites layouts (NCHWc), naming the new node after the tensor it writes; that tensor's producer in
    the exported graph, followed back through activations, is the Conv that did the work."""
    node = name.removesuffix("_kernel_time")
    for candidate in (node, node.removesuffix("_nchwc"), _FUSION_SUFFIX.sub("", node)):
        if candidate in classes:
            return classes[candidate]
        producer = producers.get(candidate)
        for _ in range(4):  # Conv -> (BatchNorm) -> activation -> (Add): a few steps back at most
            if producer is None:
                break
            if classes.get(producer.name, "other") != "other":
                return classes[producer.name]
            producer = producers.get(producer.input[0]) if producer.input else None
    if op in CONV_OPS:
        return "kxk conv"
    if op in MATMUL_OPS:
        return "other matmul"
    return "resize" if op in MAP_OPS else "other"


def profile_by_class(
    path: str | Path, image: np.ndarray, threads: int = 2, runs: int = 30
) -> dict[str, float]:
    """Median ms per run spent in each operator class (ORT's node timings, after 5 warm-up runs)."""
    import onnxruntime as ort

    graph = onnx.load(str(path), load_external_data=False).graph
    classes = node_classes(graph)
    producers = {output: node for node in graph.node for output in node.output}
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model_input = session.get_inputs()[0]
        side = model_input.shape[1]
        frame = image if not isinstance(side, int) or image.shape[0] == side else _resized(image, side)
        feed = {model_input.name: np.ascontiguousarray(frame[None])}
        for _ in range(5 + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    # ORT logs a run's node events first, then the run's own `model_run` event.
    per_run: list[dict[str, float]] = []
    current: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "")
            group = _class_of_event(event["name"], op, classes, producers)
            current[group] += event["dur"] / 1000.0
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            per_run.append(current)
            current = defaultdict(float)
    measured = per_run[-runs:]
    groups = sorted({g for run in measured for g in run})
    return {g: float(np.median([run.get(g, 0.0) for run in measured])) for g in groups}


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    from vision.inspector import resize_to_input

    return resize_to_input(image, side)
