"""Read and edit ONNX model files with `protobuf` alone: the edge box has ONNX Runtime, not `onnx`.

Only the messages and fields that teaching needs are declared here (field numbers as in `onnx/onnx.proto`);
everything else in a file (node attributes, opset imports, doc strings, ...) is kept as protobuf unknown
fields and written back byte for byte, so an edited model is the original plus the edits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

_F = descriptor_pb2.FieldDescriptorProto
# (name, number, type, label, message type or "", packed)
_FieldSpec = tuple[str, int, int, int, str, bool]
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_MESSAGES: dict[str, list[_FieldSpec]] = {
    "StringStringEntryProto": [
        ("key", 1, _F.TYPE_STRING, _OPT, "", False),
        ("value", 2, _F.TYPE_STRING, _OPT, "", False),
    ],
    "Dimension": [
        ("dim_value", 1, _F.TYPE_INT64, _OPT, "", False),
        ("dim_param", 2, _F.TYPE_STRING, _OPT, "", False),
    ],
    "TensorShapeProto": [("dim", 1, _F.TYPE_MESSAGE, _REP, "Dimension", False)],
    "TensorTypeProto": [
        ("elem_type", 1, _F.TYPE_INT32, _OPT, "", False),
        ("shape", 2, _F.TYPE_MESSAGE, _OPT, "TensorShapeProto", False),
    ],
    "TypeProto": [("tensor_type", 1, _F.TYPE_MESSAGE, _OPT, "TensorTypeProto", False)],
    "ValueInfoProto": [
        ("name", 1, _F.TYPE_STRING, _OPT, "", False),
        ("type", 2, _F.TYPE_MESSAGE, _OPT, "TypeProto", False),
    ],
    "TensorProto": [
        ("dims", 1, _F.TYPE_INT64, _REP, "", False),
        ("data_type", 2, _F.TYPE_INT32, _OPT, "", False),
        ("float_data", 4, _F.TYPE_FLOAT, _REP, "", True),
        ("name", 8, _F.TYPE_STRING, _OPT, "", False),
        ("raw_data", 9, _F.TYPE_BYTES, _OPT, "", False),
        ("external_data", 13, _F.TYPE_MESSAGE, _REP, "StringStringEntryProto", False),
        ("data_location", 14, _F.TYPE_INT32, _OPT, "", False),
    ],
    "NodeProto": [
        ("input", 1, _F.TYPE_STRING, _REP, "", False),
        ("output", 2, _F.TYPE_STRING, _REP, "", False),
        ("name", 3, _F.TYPE_STRING, _OPT, "", False),
        ("op_type", 4, _F.TYPE_STRING, _OPT, "", False),
        ("domain", 7, _F.TYPE_STRING, _OPT, "", False),
    ],
    "GraphProto": [
        ("node", 1, _F.TYPE_MESSAGE, _REP, "NodeProto", False),
        ("name", 2, _F.TYPE_STRING, _OPT, "", False),
        ("initializer", 5, _F.TYPE_MESSAGE, _REP, "TensorProto", False),
        ("input", 11, _F.TYPE_MESSAGE, _REP, "ValueInfoProto", False),
        ("output", 12, _F.TYPE_MESSAGE, _REP, "ValueInfoProto", False),
        ("value_info", 13, _F.TYPE_MESSAGE, _REP, "ValueInfoProto", False),
    ],
    "ModelProto": [
        ("ir_version", 1, _F.TYPE_INT64, _OPT, "", False),
        ("graph", 7, _F.TYPE_MESSAGE, _OPT, "GraphProto", False),
        ("metadata_props", 14, _F.TYPE_MESSAGE, _REP, "StringStringEntryProto", False),
    ],
}
_PACKAGE = "edgeinspect_onnx_subset"
FLOAT = 1  # TensorProto.DataType.FLOAT
INT8, INT64 = 3, 7
_RAW_TYPES = {FLOAT: "<f4", INT8: "i1", INT64: "<i8"}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model this module can edit; the message says why."""


def _build_classes() -> dict[str, type[Message]]:
    """Message classes from a file descriptor built in code (proto2 field rules, like onnx.proto)."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
    )
    for message_name, fields in _MESSAGES.items():
        message = file_proto.message_type.add(name=message_name)
        for name, number, kind, label, type_name, packed in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if packed:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in _MESSAGES
    }


_CLASSES = _build_classes()


def load_model(data: bytes) -> Any:
    """Parse ONNX model bytes (a `ModelProto` of the subset above; typed `Any`: the class is built at
    run time)."""
    model = _CLASSES["ModelProto"]()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise OnnxFormatError(f"not an ONNX model file: {exc}") from exc
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise OnnxFormatError("not an ONNX model file: no graph")
    return model


def copy_model(model: Any) -> Any:
    clone = _CLASSES["ModelProto"]()
    clone.CopyFrom(model)
    return clone


def tensor_to_array(tensor: Any) -> np.ndarray:
    """A float32 initializer as a numpy array (raw or `float_data` storage)."""
    if tensor.data_location == EXTERNAL or len(tensor.external_data) > 0:
        raise OnnxFormatError(f"initializer {tensor.name!r} is stored outside the model file")
    if tensor.data_type != FLOAT:
        raise OnnxFormatError(f"initializer {tensor.name!r} is not float32 (ONNX type {tensor.data_type})")
    shape = tuple(int(d) for d in tensor.dims)
    if tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype="<f4")
    else:
        values = np.asarray(tensor.float_data, dtype=np.float32)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise OnnxFormatError(f"initializer {tensor.name!r} holds {values.size} values for shape {shape}")
    return values.astype(np.float32).reshape(shape)


def set_tensor(tensor: Any, array: np.ndarray) -> None:
    """Replace an initializer's values and shape (stored raw, little-endian float32)."""
    values = np.ascontiguousarray(array, dtype="<f4")
    del tensor.dims[:]
    tensor.dims.extend(int(d) for d in values.shape)
    tensor.data_type = FLOAT
    tensor.ClearField("float_data")
    tensor.raw_data = values.tobytes()


def add_float_output(model: Any, name: str) -> None:
    """Expose an intermediate float tensor as a graph output (shape left for ONNX Runtime to infer)."""
    output = model.graph.output.add()
    output.name = name
    output.type.tensor_type.elem_type = FLOAT


def metadata(model: Any) -> dict[str, str]:
    return {entry.key: entry.value for entry in model.metadata_props}


def set_metadata(model: Any, values: dict[str, str]) -> None:
    """Replace the model's metadata with `values`, sorted by key (as `vision.export` writes it)."""
    del model.metadata_props[:]
    for key, value in sorted(values.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def behind_identities(tensor: str, producers: dict[str, Any]) -> str:
    """The tensor `tensor` is a copy of once Identity nodes are skipped (for a constant weight, its
    initializer: the exporter passes a weight that two nodes use through an Identity). `producers` maps
    each tensor name to the node writing it; works on `onnx` protos and on this module's alike."""
    node = producers.get(tensor)
    while node is not None and node.op_type == "Identity":
        tensor = node.input[0]
        node = producers.get(tensor)
    return tensor


def _raw_array(tensor: Any) -> np.ndarray:
    """A float32, int8 or int64 initializer stored raw, as a numpy array."""
    kind = _RAW_TYPES.get(int(tensor.data_type))
    if kind is None or not tensor.raw_data:
        raise OnnxFormatError(f"initializer {tensor.name!r}: not a raw float32, int8 or int64 tensor")
    return np.frombuffer(tensor.raw_data, dtype=kind).reshape(tuple(int(d) for d in tensor.dims))


def float_weights(model: Any, name_parts: tuple[str, ...]) -> int:
    """Give the MatMul/Gemm nodes whose name holds one of `name_parts` their weight as a float initializer
    again where an int8 file stores it as int8 (`vision.int8_weights`: Cast (+ Gather of lower triangles)
    + Mul by per-column scales, folded to that constant when a session starts): the initializer gets the
    weight's original name and exactly the values the session computed, so scores do not move. Teaching
    reads and rewrites those matrices by name. Returns the number of weights restored."""
    inits = {tensor.name: tensor for tensor in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    restored = 0
    for node in list(model.graph.node):
        if node.op_type not in ("MatMul", "Gemm") or not any(part in node.name for part in name_parts):
            continue
        dequantized = node.input[1] if len(node.input) > 1 else ""
        scaling = producers.get(dequantized)
        if not dequantized.endswith("_dequantized") or scaling is None or scaling.op_type != "Mul":
            continue
        chain, values, index = [scaling], producers.get(scaling.input[0]), None
        if values is not None and values.op_type == "Gather":  # lower triangles, unpacked along axis 1
            chain.append(values)
            index = _raw_array(inits[values.input[1]])
            values = producers.get(values.input[0])
        if values is None or values.op_type != "Cast" or values.input[0] not in inits:
            continue
        chain.append(values)
        weight = _raw_array(inits[values.input[0]]).astype(np.float32)
        if index is not None:
            weight = np.take(weight, index, axis=1)
        weight = weight * _raw_array(inits[scaling.input[1]]).astype(np.float32)
        name = dequantized.removesuffix("_dequantized")
        tensor = model.graph.initializer.add()
        tensor.name = name
        set_tensor(tensor, weight)
        for reader in model.graph.node:
            for slot, used in enumerate(reader.input):
                if used == dequantized:
                    reader.input[slot] = name
        for link in chain:
            model.graph.node.remove(link)
        restored += 1
    if restored:
        used = {name for node in model.graph.node for name in node.input}
        kept = [tensor for tensor in model.graph.initializer if tensor.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return restored
