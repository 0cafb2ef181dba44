"""The whole runtime under faults, with a real Mosquitto: no alert is ever lost.

- The broker stops mid-run and comes back: every alert the runtime raised (its local history is the
  record) reaches a persistent subscriber, by id.
- The runtime stops with alerts still spooled and a new runtime on the same data folder delivers them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_mqtt import MessageCollector, wait_until

from app.settings import Settings, load_settings
from device.station.broker import MosquittoBroker
from device.station.commands import StopLine
from device.station.runtime import EdgeRuntime

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class AlertIds(MessageCollector):
    """A persistent QoS 1 subscriber, as a SCADA historian would subscribe; `ids` are the alert ids seen."""

    def __init__(self, url: str, topic: str) -> None:
        super().__init__(url, [topic], persistent=True, client_id="historian")
        self.start()

    @property
    def ids(self) -> set[str]:
        return {json.loads(m.payload)["alert_id"] for m in self.snapshot()}


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


def _history_ids(runtime: EdgeRuntime) -> set[str]:
    _, alerts = runtime.alert_store.query(limit=100_000)
    return {a["alert_id"] for a in alerts}


def test_broker_outage_mid_run_loses_no_alert(tmp_path: Path, trained_model: Path) -> None:
    with MosquittoBroker(persistence_dir=tmp_path / "broker") as broker:
        runtime = EdgeRuntime(_settings(tmp_path, trained_model, broker, "edge-outage"))
        subscriber = AlertIds(broker.url, runtime.topics.alert)
        try:
            runtime.start()
            wait_until(lambda: runtime.metrics.defects >= 5, 60, "first alerts")
            broker.stop()
            wait_until(lambda: not runtime.link.connected, 15, "link to notice the outage")
            before = runtime.metrics.defects
            wait_until(lambda: runtime.metrics.defects >= before + 5, 60, "alerts during the outage")
            assert runtime.outbox.depth() > 0, "alerts raised during the outage must be spooled"
            assert runtime.health().status == "degraded"
            broker.restart()
            wait_until(lambda: runtime.metrics.defects >= before + 10, 60, "alerts after the restart")
            runtime.execute(StopLine(), actor="test")
            wait_until(lambda: runtime.outbox.depth() == 0, 60, "the spool to drain")
            raised = _history_ids(runtime)
            wait_until(lambda: raised <= subscriber.ids, 30, "every alert at the subscriber")
            assert runtime.health().components["broker"].ok
        finally:
            runtime.stop()
            subscriber.stop()
    assert len(raised) >= 15


def test_restart_with_a_full_spool_delivers_the_backlog(tmp_path: Path, trained_model: Path) -> None:
    with MosquittoBroker(persistence_dir=tmp_path / "broker") as broker:
        settings = _settings(tmp_path, trained_model, broker, "edge-restart")
        subscriber = AlertIds(broker.url, "edgeinspect/+/+/alert")
        try:
            broker.stop()
            first = EdgeRuntime(settings)
            first.start()
            wait_until(lambda: first.metrics.defects >= 8, 60, "alerts while the broker is down")
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
                wait_until(lambda: second.outbox.depth() == 0, 60, "the backlog to drain")
                wait_until(lambda: raised <= subscriber.ids, 30, "the backlog at the subscriber")
            finally:
                second.stop()
        finally:
            subscriber.stop()
