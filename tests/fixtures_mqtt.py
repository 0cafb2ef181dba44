"""MQTT test fixtures: a real Mosquitto per test and a subscriber that records what really arrived.

The lead imports `mosquitto` into tests/conftest.py; the helpers are imported by the MQTT tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.mqtt_client import parse_broker_url
from device.station.broker import MosquittoBroker


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A fresh broker on a free loopback port, with persistence so restarts keep sessions."""
    persistence = tmp_path_factory.mktemp("mosquitto-db")
    with MosquittoBroker(persistence_dir=persistence) as broker:
        yield broker


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    properties: Properties | None


class MessageCollector:
    """A paho subscriber (MQTT 5) that records every message; `persistent` keeps its session across
    broker restarts so QoS 1 messages published while it reconnects are queued for it."""

    def __init__(
        self,
        url: str,
        topics: list[str],
        qos: int = 1,
        persistent: bool = False,
        client_id: str | None = None,
    ) -> None:
        address = parse_broker_url(url)
        self.topics = topics
        self.qos = qos
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        properties = Properties(PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = 600
        self._client.connect_async(
            address.host, address.port, keepalive=10, clean_start=not persistent, properties=properties
        )

    def _on_connect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        if self.topics:
            client.subscribe([(topic, self.qos) for topic in self.topics])
        else:  # a publish-only client is ready once connected
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(
                    message.topic, bytes(message.payload), message.retain, message.qos, message.properties
                )
            )

    def start(self, timeout_s: float = 10.0) -> MessageCollector:
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise TimeoutError("collector did not subscribe in time")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, wait: bool = True, **kwargs) -> None:
        """Publish as another client would; `wait=False` pipelines a flood instead of a round trip each."""
        info = self._client.publish(topic, payload, qos=qos, **kwargs)
        if wait:
            info.wait_for_publish(timeout=5)

    def snapshot(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float = 10.0, topic: str | None = None
    ) -> list[Received]:
        """Poll until `predicate(messages)` holds; raise with what did arrive otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            messages = self.snapshot(topic)
            if predicate(messages):
                return messages
            time.sleep(0.05)
        messages = self.snapshot(topic)
        raise AssertionError(
            f"condition not met in {timeout_s} s; got {len(messages)} message(s): {messages[-3:]}"
        )

    def __enter__(self) -> MessageCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout_s} s")
