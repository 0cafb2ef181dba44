"""The whole runtime under faults, with a real Mosquitto: no alert is ever lost.

- The broker stops mid-run and comes back: every alert the runtime raised (its local history is the
  record) reaches a persistent subscriber, by id.
- The runtime stops with alerts still spooled and a new runtime on the same data folder delivers them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.settings import Settings, load_settings
from device.broker import MosquittoBroker
from device.commands import StopLine
from device.runtime import EdgeRuntime

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class PersistentSubscriber:
    """QoS 1 with a session that outlives disconnects, as a SCADA historian would subscribe."""

    def __init__(self, port: int, topic: str) -> None:
        self.ids: set[str] = set()
        self.frames: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="historian", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber got no SUBACK"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        alert = json.loads(msg.payload)
        with self._lock:
            self.ids.add(alert["alert_id"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _settings(tmp_path: Path, model: Path, broker: MosquittoBroker, client_id: str) -> Settings:
    return load_settings(
        None,
        {
            "data_dir": str(tmp_path / "data"),
            "camera": {"category": "bracket", "fps": 20, "defect_rate": 0.5, "seed": 7, "queue_size": 500},
            "model": {"path": str(model), "auto_build": False},
            "mqtt": {"url": broker.url, "client_id": client_id, "reconnect_max_s": 1.0},
        },
    )


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _history_ids(runtime: EdgeRuntime) -> set[str]:
    _, alerts = runtime.alert_store.query(limit=100_000)
    return {a["alert_id"] for a in alerts}


def test_broker_outage_mid_run_loses_no_alert(tmp_path: Path, trained_model: Path) -> None:
    with MosquittoBroker(persistence_dir=tmp_path / "broker") as broker:
        runtime = EdgeRuntime(_settings(tmp_path, trained_model, broker, "edge-outage"))
        subscriber = PersistentSubscriber(broker.port, runtime.topics.alert)
        try:
            runtime.start()
            _wait(lambda: runtime.metrics.defects >= 5, 60, "first alerts")
            broker.stop()
            _wait(lambda: not runtime.link.connected, 15, "link to notice the outage")
            before = runtime.metrics.defects
            _wait(lambda: runtime.metrics.defects >= before + 5, 60, "alerts during the outage")
            assert runtime.outbox.depth() > 0, "alerts raised during the outage must be spooled"
            assert runtime.health().status == "degraded"
            broker.restart()
            _wait(lambda: runtime.metrics.defects >= before + 10, 60, "alerts after the restart")
            runtime.execute(StopLine(), actor="test")
            _wait(lambda: runtime.outbox.depth() == 0, 60, "the spool to drain")
            raised = _history_ids(runtime)
            _wait(lambda: raised <= subscriber.ids, 30, "every alert at the subscriber")
            assert runtime.health().components["broker"].ok
        finally:
            runtime.stop()
            subscriber.close()
    assert len(raised) >= 15


def test_restart_with_a_full_spool_delivers_the_backlog(tmp_path: Path, trained_model: Path) -> None:
    with MosquittoBroker(persistence_dir=tmp_path / "broker") as broker:
        settings = _settings(tmp_path, trained_model, broker, "edge-restart")
        subscriber = PersistentSubscriber(broker.port, "edgeinspect/+/+/alert")
        try:
            broker.stop()
            first = EdgeRuntime(settings)
            first.start()
            _wait(lambda: first.metrics.defects >= 8, 60, "alerts while the broker is down")
            first.execute(StopLine(), actor="test")
            spooled = first.outbox.depth()
            raised = _history_ids(first)
            first.stop()
            assert spooled >= 8 and len(raised) >= 8

            broker.restart()
            idle = settings.inspection.model_copy(update={"enabled": False})  # deliver only, judge nothing
            second = EdgeRuntime(settings.model_copy(update={"inspection": idle}))
            second.start()
            try:
                _wait(lambda: second.outbox.depth() == 0, 60, "the backlog to drain")
                _wait(lambda: raised <= subscriber.ids, 30, "the backlog at the subscriber")
            finally:
                second.stop()
        finally:
            subscriber.close()
