"""MqttLink against a real Mosquitto: ordered QoS 1 delivery from the spool, retained status, last will,
and commands in."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_mqtt import MessageCollector, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import MqttSettings
from device.station.broker import MosquittoBroker
from device.station.commands import Command, CommandResult, SetThreshold
from device.station.mqtt_link import MqttLink
from device.station.outbox import Outbox
from device.station.topics import Topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOPICS = Topics("edgeinspect", "line1", "st1")


def put_alerts(outbox: Outbox, ids: range, link: MqttLink | None = None) -> None:
    for i in ids:
        outbox.put(f"alert-{i:05d}", TOPICS.alert, json.dumps({"alert_id": f"alert-{i:05d}"}).encode())
        if link is not None:
            link.wake()


def alert_ids(collector: MessageCollector) -> list[str]:
    return [json.loads(m.payload)["alert_id"] for m in collector.snapshot(TOPICS.alert)]


def status(collector: MessageCollector) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in collector.snapshot(TOPICS.status)]


class Runtime:
    """Stands in for EdgeRuntime.execute/_status_payload: records commands, reports a changing status."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.threshold = 0.5
        self.fail_with: Exception | None = None

    def execute(self, command: Command) -> CommandResult:
        if self.fail_with is not None:
            raise self.fail_with
        self.commands.append(command)
        old = self.threshold
        if isinstance(command, SetThreshold):
            self.threshold = command.threshold
        return CommandResult(ok=True, command=command.command, old_value=old, new_value=self.threshold)

    def status(self) -> dict[str, Any]:
        return {"state": "running", "threshold": self.threshold, "frames": 12}


@pytest.fixture
def make_link(tmp_path: Path) -> Iterator[Callable[..., tuple[MqttLink, Outbox, Runtime]]]:
    made: list[tuple[MqttLink, Outbox]] = []

    def make(
        url: str, protocol: str = "5", outbox_path: Path | None = None
    ) -> tuple[MqttLink, Outbox, Runtime]:
        runtime = Runtime()
        outbox = Outbox(outbox_path or tmp_path / "outbox.sqlite3", 10_000)
        settings = MqttSettings(url=url, client_id=f"edgeinspect-test-{len(made)}", protocol=protocol)
        settings = settings.model_copy(update={"reconnect_max_s": 1.0})
        link = MqttLink(settings, TOPICS, outbox, runtime.execute, runtime.status, reconnect_initial_s=0.1)
        made.append((link, outbox))
        return link, outbox, runtime

    yield make
    for link, outbox in made:
        link.stop()
        outbox.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_alerts_arrive_in_order_with_qos1_and_leave_the_spool(
    mosquitto: MosquittoBroker, make_link, protocol: str
) -> None:
    link, outbox, _ = make_link(mosquitto.url, protocol=protocol)
    with MessageCollector(mosquitto.url, [TOPICS.alert], qos=1) as collector:
        put_alerts(outbox, range(100))  # spooled before the link even exists on the broker
        link.start()
        put_alerts(outbox, range(100, 200), link)
        collector.wait_for(lambda m: len(m) >= 200, timeout_s=20, topic=TOPICS.alert)
        wait_until(lambda: outbox.depth() == 0, what="spool drained (every row acked on PUBACK)")
    assert alert_ids(collector) == [f"alert-{i:05d}" for i in range(200)]
    assert all(m.qos == 1 for m in collector.snapshot(TOPICS.alert))  # granted min(pub, sub) = 1
    assert link.delivered == 200
    assert link.connected


def test_status_is_retained_online_and_follows_publish_status(mosquitto: MosquittoBroker, make_link) -> None:
    link, _, runtime = make_link(mosquitto.url)
    link.start()
    wait_until(lambda: link.connected, what="connected")
    with MessageCollector(mosquitto.url, [TOPICS.status]) as late:  # joins after the fact: retained
        first = late.wait_for(lambda m: len(m) >= 1, topic=TOPICS.status)[0]
    document = json.loads(first.payload)
    assert first.retain is True
    assert document["state"] == "online"
    assert document["runtime_state"] == "running"  # the runtime's own `state` is kept, renamed
    assert document["threshold"] == 0.5 and document["station_id"] == "st1" and "ts" in document

    runtime.threshold = 0.9
    assert link.publish_status() is True  # queued: under load the broker may not have it yet
    with MessageCollector(mosquitto.url, [TOPICS.status]) as later:
        # the retained status first (old or new), then the new one live if it was still in flight
        seen = later.wait_for(
            lambda m: any(json.loads(x.payload)["threshold"] == 0.9 for x in m), topic=TOPICS.status
        )
    latest = json.loads(seen[-1].payload)
    assert latest["threshold"] == 0.9 and latest["state"] == "online"


def test_a_clean_stop_logs_no_error(
    mosquitto: MosquittoBroker, make_link, caplog: pytest.LogCaptureFixture
) -> None:
    link, _, _ = make_link(mosquitto.url)
    with caplog.at_level(logging.INFO, logger="device"):
        link.start()
        wait_until(lambda: link.connected, what="connected")
        link.stop()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_clean_stop_leaves_a_retained_offline_status(mosquitto: MosquittoBroker, make_link) -> None:
    link, _, _ = make_link(mosquitto.url)
    link.start()
    wait_until(lambda: link.connected, what="connected")
    link.stop()
    assert not link.connected
    with MessageCollector(mosquitto.url, [TOPICS.status]) as late:
        retained = late.wait_for(lambda m: len(m) >= 1, topic=TOPICS.status)[0]
    assert retained.retain and json.loads(retained.payload)["state"] == "offline"
    assert json.loads(retained.payload)["reason"] == "stopped"


VICTIM = """
import sys, time
from device.config import MqttSettings
from device.station.mqtt_link import MqttLink
from device.station.outbox import Outbox
from device.station.topics import Topics
from device.station.commands import CommandResult
link = MqttLink(MqttSettings(url=sys.argv[1], client_id="victim"), Topics("edgeinspect", "line1", "st1"),
                Outbox(sys.argv[2], 100), lambda c: CommandResult(ok=True, command=c.command), lambda: {})
link.start()
time.sleep(60)
"""


def test_last_will_marks_the_station_offline_when_the_process_dies(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with MessageCollector(mosquitto.url, [TOPICS.status]) as collector:
        victim = subprocess.Popen(
            [sys.executable, "-c", VICTIM, mosquitto.url, str(tmp_path / "victim.sqlite3")],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            collector.wait_for(
                lambda m: any(json.loads(x.payload)["state"] == "online" for x in m), 20, TOPICS.status
            )
            os.kill(victim.pid, signal.SIGKILL)  # no DISCONNECT, no offline status of its own
            victim.wait(10)
            collector.wait_for(lambda m: json.loads(m[-1].payload)["state"] == "offline", 20, TOPICS.status)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(10)
    will = status(collector)[-1]
    assert will["reason"] == "connection lost" and will["client_id"] == "victim"
    with MessageCollector(mosquitto.url, [TOPICS.status]) as late:  # and it stays retained for newcomers
        retained = late.wait_for(lambda m: len(m) >= 1, topic=TOPICS.status)[0]
    assert retained.retain and json.loads(retained.payload)["state"] == "offline"


def test_a_valid_command_runs_and_is_answered_with_its_correlation(
    mosquitto: MosquittoBroker, make_link
) -> None:
    link, _, runtime = make_link(mosquitto.url)
    link.start()
    wait_until(lambda: link.connected, what="connected")
    with MessageCollector(mosquitto.url, [TOPICS.command_response]) as client:
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = b"corr-1"
        client.publish(
            TOPICS.command,
            json.dumps({"command": "set_threshold", "threshold": 0.8, "request_id": "req-1"}),
            properties=properties,
        )
        reply = client.wait_for(lambda m: len(m) >= 1, topic=TOPICS.command_response)[0]
    result = json.loads(reply.payload)
    assert result == {
        "ok": True,
        "command": "set_threshold",
        "request_id": "req-1",
        "message": "",
        "old_value": 0.5,
        "new_value": 0.8,
    }
    assert reply.properties.CorrelationData == b"corr-1"
    assert isinstance(runtime.commands[0], SetThreshold) and runtime.threshold == 0.8


def test_a_failing_handler_is_answered_as_an_error_and_the_link_goes_on(
    mosquitto: MosquittoBroker, make_link
) -> None:
    link, _, runtime = make_link(mosquitto.url)
    runtime.fail_with = RuntimeError("model file vanished")
    link.start()
    wait_until(lambda: link.connected, what="connected")
    with MessageCollector(mosquitto.url, [TOPICS.command_response]) as client:
        client.publish(TOPICS.command, json.dumps({"command": "rollback_model", "request_id": "r9"}))
        failed = json.loads(client.wait_for(lambda m: len(m) >= 1, topic=TOPICS.command_response)[0].payload)
        runtime.fail_with = None
        client.publish(TOPICS.command, json.dumps({"command": "pause"}))
        ok = json.loads(client.wait_for(lambda m: len(m) >= 2, topic=TOPICS.command_response)[1].payload)
    assert failed["ok"] is False and failed["request_id"] == "r9" and failed["command"] == "rollback_model"
    assert "RuntimeError: model file vanished" in failed["message"]
    assert ok["ok"] is True and ok["command"] == "pause"


def test_a_retained_command_is_refused_not_replayed(mosquitto: MosquittoBroker, make_link) -> None:
    link, _, runtime = make_link(mosquitto.url)
    with MessageCollector(mosquitto.url, [TOPICS.command_response]) as client:
        client.publish(TOPICS.command, json.dumps({"command": "stop"}), retain=True)
        link.start()
        reply = json.loads(client.wait_for(lambda m: len(m) >= 1, topic=TOPICS.command_response)[0].payload)
        client.publish(TOPICS.command, b"", retain=True)  # clear it again
    assert reply["ok"] is False and "retained" in reply["message"]
    assert runtime.commands == []


def test_starts_without_a_broker_and_delivers_once_one_appears(make_link, tmp_path: Path) -> None:
    broker = MosquittoBroker(persistence_dir=tmp_path / "db")
    try:
        broker.start()
        # A reader with a persistent session, so it gets what is published while it is away.
        MessageCollector(broker.url, [TOPICS.alert], persistent=True, client_id="late-reader").start().stop()
        broker.stop()  # the port is known but nothing listens
        link, outbox, _ = make_link(broker.url)
        link.start()
        put_alerts(outbox, range(20), link)
        wait_until(lambda: link.last_error is not None, what="connection failure reported")
        assert not link.connected and outbox.depth() == 20
        broker.start()
        wait_until(lambda: outbox.depth() == 0, timeout_s=20, what="backlog delivered")
        assert link.connected
        with MessageCollector(broker.url, [TOPICS.alert], persistent=True, client_id="late-reader") as reader:
            reader.wait_for(lambda m: len(m) >= 20, topic=TOPICS.alert)
        assert alert_ids(reader) == [f"alert-{i:05d}" for i in range(20)]
    finally:
        broker.close()


def make_certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI; EC keys are quick)."""
    ca_key, ca_crt = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, crt = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            "1",
            "-subj",
            f"/CN={name}-ca",
        ],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True, timeout=30)
    return ca_crt, crt, key


def test_tls_link_delivers_and_refuses_an_untrusted_broker(tmp_path: Path) -> None:
    ca, crt, key = make_certificates(tmp_path, "site")
    other_ca, _, _ = make_certificates(tmp_path, "other")
    with MosquittoBroker(tls_files=(ca, crt, key)) as broker:
        assert broker.url.startswith("mqtts://")
        links = []
        for name, ca_file in (("trusted", ca), ("untrusted", other_ca)):
            outbox = Outbox(tmp_path / f"{name}.sqlite3", 100)
            settings = MqttSettings(url=broker.url, client_id=f"tls-{name}", tls_ca_file=str(ca_file))
            link = MqttLink(settings, TOPICS, outbox, Runtime().execute, Runtime().status)
            put_alerts(outbox, range(5))
            link.start()
            links.append((link, outbox))
        try:
            trusted, untrusted = links
            wait_until(lambda: trusted[1].depth() == 0, what="alerts delivered over TLS")
            wait_until(lambda: untrusted[0].last_error is not None, what="untrusted broker refused")
            assert trusted[0].connected and not untrusted[0].connected
            assert untrusted[1].depth() == 5  # nothing leaves the spool for a broker we cannot trust
        finally:
            for link, outbox in links:
                link.stop()
                outbox.close()


def test_missing_tls_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    settings = MqttSettings(url="mqtts://127.0.0.1:8883", tls_ca_file=str(tmp_path / "nope.pem"))
    with Outbox(tmp_path / "o.sqlite3", 100) as outbox, pytest.raises(ValueError, match=r"mqtt\.tls_ca_file"):
        MqttLink(settings, TOPICS, outbox, Runtime().execute, Runtime().status)
