"""Sparkplug B payloads: the schema matches the .proto, and values survive the wire with their types."""

from __future__ import annotations

import pytest

from device.station.sparkplug import DataType, decode_payload, encode_payload, parse_topic
from device.station.sparkplug import sparkplug_b_pb2 as pb
from device.station.sparkplug.protoc import PB2_PATH, PROTO_PATH, ProtoSyntaxError, compile_proto, render_pb2


def test_generated_module_matches_the_proto_schema() -> None:
    compiled = compile_proto(PROTO_PATH.read_text())
    assert PB2_PATH.read_text() == render_pb2(compiled), "run: python -m device.station.sparkplug.protoc"
    nested = {m.name for m in compiled.message_type[0].nested_type}
    assert set(pb.Payload.DESCRIPTOR.nested_types_by_name) == nested


def test_schema_has_the_spec_field_numbers() -> None:
    metric = pb.Payload.Metric.DESCRIPTOR.fields_by_name
    assert {name: metric[name].number for name in ("name", "alias", "timestamp", "datatype", "is_null")} == {
        "name": 1,
        "alias": 2,
        "timestamp": 3,
        "datatype": 4,
        "is_null": 7,
    }
    assert [metric[n].number for n in ("int_value", "long_value", "double_value", "string_value")] == [
        10,
        11,
        13,
        15,
    ]
    assert pb.Payload.DESCRIPTOR.fields_by_name["seq"].number == 3
    assert pb.DataType.Value("UInt64") == 8 and pb.DataType.Value("DateTimeArray") == 34


def test_known_bytes_decode_like_any_sparkplug_host_would_write_them() -> None:
    # Payload{timestamp=1000, seq=5, metrics=[{name="x", datatype=UInt64(8), long_value=42}]}, hand-encoded.
    wire = bytes([0x08, 0xE8, 0x07, 0x12, 0x07, 0x0A, 0x01, ord("x"), 0x20, 0x08, 0x58, 0x2A, 0x18, 0x05])
    decoded = decode_payload(wire)
    assert decoded.timestamp == 1000 and decoded.seq == 5
    assert decoded.metrics["x"].datatype == DataType.UInt64 and decoded.value("x") == 42


def test_values_round_trip_with_their_datatypes() -> None:
    metrics = {
        "i8": (DataType.Int8, -5),
        "i32": (DataType.Int32, -70_000),
        "i64": (DataType.Int64, -(2**40)),
        "u64": (DataType.UInt64, 2**63 + 7),
        "f": (DataType.Float, 0.5),
        "d": (DataType.Double, 0.1234567890123),
        "b": (DataType.Boolean, True),
        "s": (DataType.String, "running"),
        "raw": (DataType.Bytes, b"\x00\x01"),
        "missing": (DataType.Double, None),
    }
    decoded = decode_payload(encode_payload(metrics, seq=255, timestamp_ms=1_700_000_000_000))
    assert decoded.seq == 255 and decoded.timestamp == 1_700_000_000_000
    for name, (datatype, value) in metrics.items():
        assert decoded.metrics[name].datatype == datatype
        assert decoded.value(name) == value, name
        assert decoded.metrics[name].timestamp == 1_700_000_000_000


def test_ndeath_has_no_sequence_number() -> None:
    decoded = decode_payload(encode_payload({"bdSeq": (DataType.UInt64, 3)}, seq=None))
    assert decoded.seq is None and decoded.value("bdSeq") == 3


def test_topics_parse_into_their_parts() -> None:
    topic = parse_topic("spBv1.0/plant/DDATA/line1/station1")
    assert (topic.group_id, topic.message_type, topic.edge_node_id, topic.device_id) == (
        "plant",
        "DDATA",
        "line1",
        "station1",
    )
    assert str(topic) == "spBv1.0/plant/DDATA/line1/station1"
    assert parse_topic("spBv1.0/plant/NBIRTH/line1").device_id is None
    with pytest.raises(ValueError, match="not a Sparkplug B topic"):
        parse_topic("edgeinspect/line1/station1/alert")


def test_garbage_is_not_a_payload() -> None:
    with pytest.raises(ValueError, match="not a Sparkplug B payload"):
        decode_payload(b"\xff\xff\xff\xff")


def test_the_compiler_names_the_line_of_a_syntax_error() -> None:
    with pytest.raises(ProtoSyntaxError, match="line 3"):
        compile_proto('syntax = "proto2";\nmessage A {\n  string x = 1;\n}\n')
    with pytest.raises(ProtoSyntaxError, match="unknown type 'Missing'"):
        compile_proto('syntax = "proto2";\nmessage A {\n  optional Missing x = 1;\n}\n')
