"""Sparkplug B topics and payloads: Python values in, protobuf bytes out, and back (for tests and tools).

Datatypes follow the spec's value-field rules: 8-32-bit ints in `int_value`, 64-bit ints and DateTime in
`long_value` (signed values as two's complement), Float/Double, Boolean, String/Text/UUID, Bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from device.station.sparkplug import sparkplug_b_pb2 as pb

NAMESPACE = "spBv1.0"
MESSAGE_TYPES = ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD")


class DataType(IntEnum):
    """Sparkplug B datatypes (the spec's DataType enum); this node publishes the scalar ones."""

    Unknown = pb.Unknown
    Int8 = pb.Int8
    Int16 = pb.Int16
    Int32 = pb.Int32
    Int64 = pb.Int64
    UInt8 = pb.UInt8
    UInt16 = pb.UInt16
    UInt32 = pb.UInt32
    UInt64 = pb.UInt64
    Float = pb.Float
    Double = pb.Double
    Boolean = pb.Boolean
    String = pb.String
    DateTime = pb.DateTime
    Text = pb.Text
    UUID = pb.UUID
    DataSet = pb.DataSet
    Bytes = pb.Bytes
    File = pb.File
    Template = pb.Template
    PropertySet = pb.PropertySet
    PropertySetList = pb.PropertySetList
    Int8Array = pb.Int8Array
    Int16Array = pb.Int16Array
    Int32Array = pb.Int32Array
    Int64Array = pb.Int64Array
    UInt8Array = pb.UInt8Array
    UInt16Array = pb.UInt16Array
    UInt32Array = pb.UInt32Array
    UInt64Array = pb.UInt64Array
    FloatArray = pb.FloatArray
    DoubleArray = pb.DoubleArray
    BooleanArray = pb.BooleanArray
    StringArray = pb.StringArray
    DateTimeArray = pb.DateTimeArray


_INT_FIELD = {DataType.Int8, DataType.Int16, DataType.Int32, DataType.UInt8, DataType.UInt16, DataType.UInt32}
_LONG_FIELD = {DataType.Int64, DataType.UInt64, DataType.DateTime}
_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_STRING_FIELD = {DataType.String, DataType.Text, DataType.UUID}


def now_ms() -> int:
    return int(time.time() * 1000)


def infer_datatype(value: Any) -> DataType:
    """A sensible Sparkplug type for a Python value whose metric has no declared type."""
    if isinstance(value, bool):
        return DataType.Boolean
    if isinstance(value, int):
        return DataType.Int64
    if isinstance(value, float):
        return DataType.Double
    if isinstance(value, (bytes, bytearray)):
        return DataType.Bytes
    return DataType.String


@dataclass(frozen=True)
class SparkplugTopic:
    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None = None

    def __str__(self) -> str:
        device = f"/{self.device_id}" if self.device_id else ""
        return f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}{device}"


def check_id(kind: str, value: str) -> str:
    """Sparkplug ids are single topic levels: no '/', '+' or '#'."""
    if not value or any(ch in value for ch in "/+#"):
        raise ValueError(f"Sparkplug {kind} {value!r} must be non-empty and contain no '/', '+' or '#'")
    return value


def parse_topic(topic: str) -> SparkplugTopic:
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in MESSAGE_TYPES:
        raise ValueError(f"not a Sparkplug B topic: {topic!r}")
    return SparkplugTopic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def _set_value(metric: Any, datatype: DataType, value: Any) -> None:
    if value is None:
        metric.is_null = True
    elif datatype in _INT_FIELD or datatype in _LONG_FIELD:
        # Signed values as two's complement of their own width (Int8 -1 -> 255), as Eclipse Tahu does.
        bits = _SIGNED_BITS.get(datatype, 32 if datatype in _INT_FIELD else 64)
        raw = int(value) & ((1 << bits) - 1)
        if datatype in _INT_FIELD:
            metric.int_value = raw
        else:
            metric.long_value = raw
    elif datatype == DataType.Float:
        metric.float_value = float(value)
    elif datatype == DataType.Double:
        metric.double_value = float(value)
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(value)
    elif datatype in _STRING_FIELD:
        metric.string_value = str(value)
    elif datatype == DataType.Bytes:
        metric.bytes_value = bytes(value)
    else:
        raise ValueError(f"unsupported Sparkplug datatype {datatype!r}")


def encode_payload(
    metrics: Mapping[str, tuple[DataType, Any]], seq: int | None, timestamp_ms: int | None = None
) -> bytes:
    """`{name: (datatype, value)}` to Payload bytes; `seq=None` for NDEATH (which carries none)."""
    timestamp = now_ms() if timestamp_ms is None else timestamp_ms
    payload = pb.Payload(timestamp=timestamp)
    if seq is not None:
        payload.seq = seq
    for name, (datatype, value) in metrics.items():
        metric = payload.metrics.add(name=name, datatype=int(datatype), timestamp=timestamp)
        _set_value(metric, DataType(datatype), value)
    data: bytes = payload.SerializeToString()
    return data


@dataclass(frozen=True)
class DecodedMetric:
    name: str
    datatype: DataType
    value: Any
    timestamp: int | None


@dataclass(frozen=True)
class DecodedPayload:
    timestamp: int | None
    seq: int | None
    metrics: dict[str, DecodedMetric] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        return self.metrics[name].value


def _get_value(metric: Any, datatype: DataType) -> Any:
    if metric.HasField("is_null") and metric.is_null:
        return None
    if datatype in _INT_FIELD or datatype in _LONG_FIELD:
        raw = metric.int_value if datatype in _INT_FIELD else metric.long_value
        bits = _SIGNED_BITS.get(datatype)
        if bits and raw >= 1 << (bits - 1):
            raw -= 1 << bits
        return raw
    which = metric.WhichOneof("value")
    return getattr(metric, which) if which else None


def decode_payload(data: bytes | bytearray) -> DecodedPayload:
    """Payload bytes to plain values; raises ValueError on bytes that are not a Sparkplug payload."""
    try:
        payload = pb.Payload.FromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ValueError(f"not a Sparkplug B payload: {exc}") from exc
    metrics = {}
    for metric in payload.metrics:
        known = metric.datatype in DataType._value2member_map_
        datatype = DataType(metric.datatype) if known else DataType.Unknown
        metrics[metric.name] = DecodedMetric(
            metric.name,
            datatype,
            _get_value(metric, datatype),
            metric.timestamp if metric.HasField("timestamp") else None,
        )
    return DecodedPayload(
        payload.timestamp if payload.HasField("timestamp") else None,
        payload.seq if payload.HasField("seq") else None,
        metrics,
    )
