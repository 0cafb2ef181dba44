"""Sparkplug B (spBv1.0) for the station: an optional second MQTT face for SCADA hosts.

`SparkplugNode` publishes births, data and deaths; `decode_payload`/`parse_topic` read them back
(tests, tools). The protobuf schema is `sparkplug_b.proto`, compiled by `device.station.sparkplug.protoc`.
"""

from device.station.sparkplug.codec import (
    DataType,
    DecodedMetric,
    DecodedPayload,
    SparkplugTopic,
    decode_payload,
    encode_payload,
    parse_topic,
)
from device.station.sparkplug.node import DEVICE_METRIC_TYPES, SparkplugNode

__all__ = [
    "DEVICE_METRIC_TYPES",
    "DataType",
    "DecodedMetric",
    "DecodedPayload",
    "SparkplugNode",
    "SparkplugTopic",
    "decode_payload",
    "encode_payload",
    "parse_topic",
]
