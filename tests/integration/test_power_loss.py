"""Power loss loses no alert: the real `edgeinspect run` is SIGKILLed while its broker is down or slow.

What must hold, for the integrator: every alert in the station's own history (`alerts.sqlite3`) reaches a
persistent QoS 1 subscriber that was subscribed before the run, across the kill and the restart on the same
data dir. Duplicates are allowed (consumers drop them by `alert_id`); a missing alert is a failure.

Each test proves the kill really hit alerts in flight: the dead process's outbox file still held
undelivered alerts when the successor started.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EdgeStack, free_port, start_edge_stack, stop_edge_stack
from fixtures_mqtt import MessageCollector, wait_until
from tcp_proxy import StallingProxy

from device.station.broker import MosquittoBroker
from device.station.topics import Topics

pytestmark = pytest.mark.integration

TOPICS = Topics("edgeinspect", "line1", "st1")  # what write_stack_config sets up
# A line at 100% defects (an alert per judged frame) and a fast simulated camera.
FAST_DEFECTIVE_LINE = {"camera": {"fps": 20, "defect_rate": 1.0}}
SUBSCRIBER_ID = "historian-power-loss"
SPOOLED_AT_KILL = 4  # undelivered alerts the kill must catch in the outbox
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Station:
    """One `edgeinspect run` process on a data dir; restartable on the same config (same MQTT client id)."""

    data_dir: Path
    model: Path
    mqtt_url: str
    port: int
    stack: EdgeStack | None = None
    runs: int = 0

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.stack.process if self.stack is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"edgeinspect-{self.runs}.log"

    def start(self) -> None:
        """Start the main job and return once its API answers (the runtime is then running)."""
        self.runs += 1
        self.stack = start_edge_stack(
            self.data_dir,
            self.model,
            self.mqtt_url,
            {"PYTHONUNBUFFERED": "1"},
            overrides=FAST_DEFECTIVE_LINE,
            port=self.port,
            keys={},
            log_path=self.log_path,
            start_timeout_s=START_TIMEOUT_S,
        )

    def power_loss(self) -> None:
        """SIGKILL: no stop hook runs, no offline status, no final acks; whatever was durable stays."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        """A planned stop (SIGTERM); returns the exit code."""
        assert self.stack is not None
        code = stop_edge_stack(self.stack, STOP_TIMEOUT_S)
        if code is None:
            raise AssertionError(f"edgeinspect run did not stop on SIGTERM:\n{self.log_tail()}")
        return code

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no log)"

    # ---- the station's files, read the way an inspector would, without changing them --------
    def spooled_alert_ids(self) -> list[str]:
        """Alerts still undelivered in the outbox file (the runtime may be alive or dead)."""
        rows = _read(self.data_dir / "outbox.sqlite3", "SELECT message_id, topic FROM outbox ORDER BY id")
        return [message_id for message_id, topic in rows if topic == TOPICS.alert]

    def history_alert_ids(self) -> set[str]:
        """Every alert the station recorded for its operators (AlertStore, see device/station/alerts.py)."""
        return {row[0] for row in _read(self.data_dir / "alerts.sqlite3", "SELECT alert_id FROM alerts")}


def _read(path: Path, query: str) -> list[tuple[str, ...]]:
    """Read-only (no checkpoint, no recovery written back): the file stays as the runtime left it."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as conn:
        try:
            return [tuple(row) for row in conn.execute(query).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, schema not yet committed
                return []
            raise


def received_alert_ids(collector: MessageCollector) -> set[str]:
    return {json.loads(m.payload)["alert_id"] for m in collector.snapshot(TOPICS.alert)}


@pytest.fixture
def historian(mosquitto: MosquittoBroker) -> Iterator[MessageCollector]:
    """The plant historian: a persistent session (fixed id, clean_start=false), QoS 1, subscribed first."""
    collector = MessageCollector(
        mosquitto.url,
        [TOPICS.alert, TOPICS.command_response],
        qos=1,
        persistent=True,
        client_id=SUBSCRIBER_ID,
    )
    with collector:
        yield collector


def make_station(tmp_path: Path, model: Path, mqtt_url: str) -> Station:
    """A station running `FAST_DEFECTIVE_LINE` on a fresh data dir (not started yet)."""
    return Station(data_dir=tmp_path / "data", model=model, mqtt_url=mqtt_url, port=free_port())


@pytest.fixture
def stations() -> Iterator[list[Station]]:
    """Stations a test started; none outlives it, even when an assertion fails half-way."""
    started: list[Station] = []
    yield started
    for station in started:
        station.ensure_dead()


def in_flight_kinds(station: Station, historian: MessageCollector) -> tuple[int, int]:
    """Spooled alerts the broker already has (PUBACK pending), and spooled alerts it never saw."""
    spooled = set(station.spooled_alert_ids())
    received = received_alert_ids(historian)
    return len(spooled & received), len(spooled - received)


def pause_and_settle(station: Station, historian: MessageCollector) -> None:
    """Pause inspection (a real command over MQTT), then wait until the spool is empty and the historian
    has every alert in the history, so the final check compares a history that no longer grows."""
    request = {"command": "pause", "request_id": "power-loss-settle"}
    historian.publish(TOPICS.command, json.dumps(request))
    historian.wait_for(
        lambda msgs: any(json.loads(m.payload).get("request_id") == "power-loss-settle" for m in msgs),
        timeout_s=10,
        topic=TOPICS.command_response,
    )
    wait_until(
        lambda: (
            not station.spooled_alert_ids() and station.history_alert_ids() <= received_alert_ids(historian)
        ),
        timeout_s=20,
        what="spool drained and every recorded alert received",
    )


def settle_after_restart(station: Station, historian: MessageCollector, recorded_at_kill: set[str]) -> None:
    """The successor records (and must deliver) new alerts of its own; then the line is paused."""
    wait_until(
        lambda: len(station.history_alert_ids() - recorded_at_kill) >= 2,
        timeout_s=20,
        what="new alerts recorded after the restart",
    )
    pause_and_settle(station, historian)
    assert station.stop() == 0, station.log_tail()


def assert_nothing_lost(
    station: Station, historian: MessageCollector, spooled: list[str], recorded_at_kill: set[str]
) -> None:
    history = station.history_alert_ids()
    received = received_alert_ids(historian)
    missing = history - received
    assert not missing, (
        f"{len(missing)} of {len(history)} recorded alerts never arrived: {sorted(missing)[:5]}"
    )
    assert recorded_at_kill <= history  # the kill took nothing out of the history either
    assert len(recorded_at_kill) >= SPOOLED_AT_KILL and len(history - recorded_at_kill) >= 2
    assert set(spooled) <= received, "alerts spooled across the kill were not delivered after the restart"
    # Spooled alerts were recorded too (put() comes first; a kill between the two may leave one out).
    assert len(set(spooled) & recorded_at_kill) >= len(spooled) - 1


def test_alerts_spooled_while_the_broker_is_down_survive_a_power_loss(
    mosquitto: MosquittoBroker,
    historian: MessageCollector,
    stations: list[Station],
    trained_model: Path,
    tmp_path: Path,
) -> None:
    station = make_station(tmp_path, trained_model, mosquitto.url)
    stations.append(station)
    station.start()
    historian.wait_for(lambda msgs: len(msgs) >= 2, timeout_s=20, topic=TOPICS.alert)

    mosquitto.stop()  # the site broker goes away; the line keeps judging parts
    wait_until(
        lambda: len(station.spooled_alert_ids()) >= SPOOLED_AT_KILL,
        timeout_s=20,
        what=f"{SPOOLED_AT_KILL} alerts spooled while the broker is down",
    )
    station.power_loss()
    spooled = station.spooled_alert_ids()  # what the dead process left on disk
    recorded_at_kill = station.history_alert_ids()
    assert len(spooled) >= SPOOLED_AT_KILL, "the kill did not catch undelivered alerts in the outbox"

    mosquitto.start()  # same port, persistent sessions restored (the historian's queue included)
    station.start()
    historian.wait_for(
        lambda msgs: set(spooled) <= received_alert_ids(historian), timeout_s=20, topic=TOPICS.alert
    )
    settle_after_restart(station, historian, recorded_at_kill)

    assert_nothing_lost(station, historian, spooled, recorded_at_kill)


def test_alerts_in_flight_to_a_stalled_broker_survive_a_power_loss(
    mosquitto: MosquittoBroker,
    historian: MessageCollector,
    stations: list[Station],
    trained_model: Path,
    tmp_path: Path,
) -> None:
    with StallingProxy(mosquitto.host, mosquitto.port, delay_s=0.05) as proxy:
        station = make_station(tmp_path, trained_model, proxy.url)
        stations.append(station)
        station.start()
        historian.wait_for(lambda msgs: len(msgs) >= 2, timeout_s=20, topic=TOPICS.alert)

        # PUBACKs stop coming back: the broker (and the historian) get the alerts, the box never hears so.
        proxy.stall_downstream.set()
        # Three, not two: a PUBACK already past the proxy when it stalled may still ack one of them.
        wait_until(
            lambda: len(set(station.spooled_alert_ids()) & received_alert_ids(historian)) >= 3,
            timeout_s=20,
            what="alerts with the broker whose PUBACK is held back",
        )
        # Then the uplink stalls too: later alerts are sent but never reach the broker. Both kinds must be
        # in the spool at once (a PUBACK already past the proxy may still ack one of the first kind).
        proxy.stall_upstream.set()
        wait_until(
            lambda: min(in_flight_kinds(station, historian)) >= 2,
            timeout_s=20,
            what="alerts both unacknowledged at the broker and stuck in a stalled uplink",
        )
        assert proxy.held_bytes(upstream=False) > 0, "no PUBACK was in flight"
        station.power_loss()
        spooled = station.spooled_alert_ids()
        recorded_at_kill = station.history_alert_ids()
        received_at_kill = received_alert_ids(historian)
        assert len(spooled) >= SPOOLED_AT_KILL, "the kill did not catch undelivered alerts in the outbox"
        assert set(spooled) & received_at_kill, "no alert had reached the broker unacknowledged"
        assert set(spooled) - received_at_kill, "no alert was still on its way to the broker"

        proxy.stall_downstream.clear()
        proxy.stall_upstream.clear()
        station.start()  # through the same (now merely slow) proxy
        historian.wait_for(
            lambda msgs: set(spooled) <= received_alert_ids(historian), timeout_s=20, topic=TOPICS.alert
        )
        settle_after_restart(station, historian, recorded_at_kill)

    assert_nothing_lost(station, historian, spooled, recorded_at_kill)
    assert proxy.connections >= 2  # the successor really went through the proxy too
