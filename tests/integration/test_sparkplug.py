"""The Sparkplug B node against a real Mosquitto, read back the way a SCADA host would read it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_mqtt import MessageCollector, Received, wait_until

from device.config import LineSettings, MqttSettings
from device.station.broker import MosquittoBroker
from device.station.sparkplug import (
    DataType,
    DecodedPayload,
    SparkplugNode,
    decode_payload,
    encode_payload,
    parse_topic,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LINE = LineSettings(line_id="line1", station_id="st1")
GROUP = "plant7"


def of_type(messages: list[Received], message_type: str) -> list[Received]:
    return [m for m in messages if parse_topic(m.topic).message_type == message_type]


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {
            "frames": 0,
            "defects": 0,
            "fps": 9.5,
            "threshold": 0.42,
            "last_score": None,
            "broker_connected": True,
            "camera_connected": True,
            "spool_depth": 0,
            "state": "running",
        }

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


@pytest.fixture
def node_and_reader(mosquitto: MosquittoBroker) -> Iterator[tuple[SparkplugNode, Metrics, MessageCollector]]:
    metrics = Metrics()
    settings = MqttSettings(
        url=mosquitto.url, client_id="edgeinspect-spb-test", sparkplug=True, sparkplug_group_id=GROUP
    ).model_copy(update={"reconnect_max_s": 1.0})
    node = SparkplugNode(settings, LINE, metrics, reconnect_initial_s=0.1)
    with MessageCollector(mosquitto.url, ["spBv1.0/#"]) as reader:
        node.start()
        try:
            yield node, metrics, reader
        finally:
            node.stop()


def test_births_data_and_deaths_carry_the_right_sequence_numbers(node_and_reader) -> None:
    node, metrics, reader = node_and_reader
    reader.wait_for(lambda m: len(of_type(m, "DBIRTH")) == 1)
    metrics.values.update(frames=120, defects=3, last_score=0.97)
    assert node.publish_data() is True
    assert node.publish_data() is False  # nothing changed: no DDATA
    assert node.publish_data(force=True) is True
    node.stop()
    messages = reader.wait_for(lambda m: len(of_type(m, "NDEATH")) == 1)

    assert [parse_topic(m.topic).message_type for m in messages] == [
        "NBIRTH",
        "DBIRTH",
        "DDATA",
        "DDATA",
        "DDEATH",
        "NDEATH",
    ]
    assert messages[0].topic == "spBv1.0/plant7/NBIRTH/line1"
    assert messages[1].topic == "spBv1.0/plant7/DBIRTH/line1/st1"
    decoded = [decode_payload(m.payload) for m in messages]
    assert [d.seq for d in decoded] == [0, 1, 2, 3, 4, None]  # NDEATH carries no seq

    nbirth, dbirth, changed, forced, _, ndeath = decoded
    assert nbirth.value("bdSeq") == 0 and nbirth.value("Node Control/Rebirth") is False
    assert ndeath.value("bdSeq") == nbirth.value("bdSeq")
    assert {name: m.datatype for name, m in dbirth.metrics.items()} == {
        "frames": DataType.UInt64,
        "defects": DataType.UInt64,
        "fps": DataType.Double,
        "threshold": DataType.Double,
        "last_score": DataType.Double,
        "broker_connected": DataType.Boolean,
        "camera_connected": DataType.Boolean,
        "spool_depth": DataType.UInt64,
        "state": DataType.String,
    }
    assert dbirth.value("last_score") is None and dbirth.value("state") == "running"
    assert all(m.timestamp and m.timestamp > 1_600_000_000_000 for m in dbirth.metrics.values())
    assert {name: m.value for name, m in changed.metrics.items()} == {
        "frames": 120,
        "defects": 3,
        "last_score": 0.97,
    }
    assert set(forced.metrics) == set(dbirth.metrics)
    assert all(m.qos == 0 for m in messages[:-1]) and messages[-1].qos == 1  # spec: births QoS 0, death QoS 1


def test_sequence_numbers_wrap_after_255(node_and_reader) -> None:
    node, metrics, reader = node_and_reader
    reader.wait_for(lambda m: len(of_type(m, "DBIRTH")) == 1)
    for frame in range(1, 261):
        metrics.values["frames"] = frame
        assert node.publish_data()
    ddata = reader.wait_for(lambda m: len(of_type(m, "DDATA")) == 260, timeout_s=20)
    seqs = [decode_payload(m.payload).seq for m in of_type(ddata, "DDATA")]
    assert seqs == [(2 + i) % 256 for i in range(260)]
    assert [decode_payload(m.payload).value("frames") for m in of_type(ddata, "DDATA")] == list(range(1, 261))


def test_reconnect_brings_a_new_bdseq_and_rebirth_on_request(
    node_and_reader, mosquitto: MosquittoBroker
) -> None:
    node, _, reader = node_and_reader
    reader.wait_for(lambda m: len(of_type(m, "DBIRTH")) == 1)
    mosquitto.kill()  # a broker crash: the node must reconnect with the next bdSeq
    wait_until(lambda: not node.connected, what="node saw the connection drop")
    mosquitto.start()
    wait_until(lambda: node.born and node.bd_seq == 1, timeout_s=20, what="node reborn")
    wait_until(lambda: _resubscribed(reader), timeout_s=20, what="reader subscribed again")
    requested_ms = int(time.time() * 1000)
    reader.publish(
        f"spBv1.0/{GROUP}/NCMD/line1",
        encode_payload({"Node Control/Rebirth": (DataType.Boolean, True)}, seq=None),
    )

    def rebirth(messages: list[Received], message_type: str) -> list[DecodedPayload]:
        decoded = [decode_payload(m.payload) for m in of_type(messages, message_type)]
        return [d for d in decoded if d.timestamp is not None and d.timestamp >= requested_ms]

    messages = reader.wait_for(lambda m: bool(rebirth(m, "NBIRTH")) and bool(rebirth(m, "DBIRTH")))
    nbirth, dbirth = rebirth(messages, "NBIRTH")[-1], rebirth(messages, "DBIRTH")[-1]
    assert nbirth.seq == 0 and dbirth.seq == 1
    assert nbirth.value("bdSeq") == 1


def _resubscribed(reader: MessageCollector) -> bool:
    """True once the reader is subscribed again after the broker came back (a probe reaches it)."""
    probe = "spBv1.0/probe/NDATA/x"
    try:
        reader.publish(probe, b"")
    except (RuntimeError, ValueError):  # not connected yet
        return False
    return any(m.topic == probe for m in reader.snapshot())


SPB_VICTIM = """
import sys, time
from device.config import LineSettings, MqttSettings
from device.station.sparkplug import SparkplugNode
settings = MqttSettings(url=sys.argv[1], client_id="spb-victim", sparkplug_group_id="plant7")
node = SparkplugNode(settings, LineSettings(line_id="line9", station_id="st9"), lambda: {"frames": 1})
node.start()
time.sleep(60)
"""


def test_ndeath_is_delivered_when_the_node_process_dies(mosquitto: MosquittoBroker) -> None:
    with MessageCollector(mosquitto.url, ["spBv1.0/plant7/#"]) as reader:
        victim = subprocess.Popen(
            [sys.executable, "-c", SPB_VICTIM, mosquitto.url],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            reader.wait_for(lambda m: len(of_type(m, "DBIRTH")) == 1, timeout_s=20)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            messages = reader.wait_for(lambda m: len(of_type(m, "NDEATH")) == 1, timeout_s=20)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(10)
    ndeath = of_type(messages, "NDEATH")[0]
    assert ndeath.topic == "spBv1.0/plant7/NDEATH/line9"
    nbirth = decode_payload(of_type(messages, "NBIRTH")[0].payload)
    assert decode_payload(ndeath.payload).value("bdSeq") == nbirth.value("bdSeq") == 0
    assert decode_payload(ndeath.payload).seq is None
