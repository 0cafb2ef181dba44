"""Faults the line will meet: broker restarts mid-stream, the process dying with a backlog, and a flood
of garbage on the command topic. Nothing may be lost, order of first arrival must hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_mqtt import MessageCollector, wait_until

from device.config import MqttSettings
from device.station.broker import MosquittoBroker
from device.station.commands import Command, CommandResult
from device.station.mqtt_link import MqttLink
from device.station.outbox import Outbox
from device.station.topics import Topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOPICS = Topics("edgeinspect", "line1", "st1")


def alert_id(i: int) -> str:
    return f"alert-{i:05d}"


def first_arrivals(collector: MessageCollector) -> list[str]:
    seen: dict[str, None] = {}
    for message in collector.snapshot(TOPICS.alert):
        seen.setdefault(json.loads(message.payload)["alert_id"], None)
    return list(seen)


def new_link(url: str, outbox: Outbox, client_id: str = "edgeinspect-faults") -> MqttLink:
    settings = MqttSettings(url=url, client_id=client_id, reconnect_max_s=1.0)
    return MqttLink(
        settings,
        TOPICS,
        outbox,
        lambda command: CommandResult(ok=True, command=command.command),
        lambda: {"state": "running"},
        reconnect_initial_s=0.1,
    )


def test_1000_alerts_survive_two_broker_restarts_in_order(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    total = 1000
    outbox = Outbox(tmp_path / "outbox.sqlite3", 10_000)
    link = new_link(mosquitto.url, outbox)
    reader = MessageCollector(mosquitto.url, [TOPICS.alert], persistent=True, client_id="historian").start()
    restarts = 0
    spooled_while_down: list[int] = []
    try:
        link.start()
        wait_until(lambda: link.connected, what="link connected")
        for i in range(total):
            outbox.put(alert_id(i), TOPICS.alert, json.dumps({"alert_id": alert_id(i)}).encode())
            link.wake()
            if i in (300, 650):  # mid-stream: some alerts in flight, more arriving while it is down
                mosquitto.stop()
                restarts += 1
            if i in (400, 750):
                spooled_while_down.append(outbox.depth())
                mosquitto.start()
        wait_until(lambda: outbox.depth() == 0, timeout_s=40, what="spool drained")
        reader.wait_for(lambda m: len({x.payload for x in m}) >= total, timeout_s=30, topic=TOPICS.alert)
    finally:
        link.stop()
        reader.stop()
        outbox.close()
    assert restarts == 2
    assert min(spooled_while_down) >= 99  # the outages really held alerts back
    arrivals = first_arrivals(reader)
    assert arrivals == [alert_id(i) for i in range(total)]  # zero missing, first arrivals in order
    assert len(reader.snapshot(TOPICS.alert)) >= total  # duplicates are allowed, not required


def test_a_new_link_on_the_same_spool_delivers_the_backlog_in_order(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with MessageCollector(mosquitto.url, [TOPICS.alert], persistent=True, client_id="historian") as reader:
        mosquitto.stop()  # the broker is away: everything spools
        outbox = Outbox(path, 10_000)
        link = new_link(mosquitto.url, outbox)
        link.start()
        for i in range(150):
            outbox.put(alert_id(i), TOPICS.alert, json.dumps({"alert_id": alert_id(i)}).encode())
            link.wake()
        link.stop()  # with 150 undelivered: must not hang, must not lose them
        assert outbox.depth() == 150
        outbox.close()

        mosquitto.start()
        outbox = Outbox(path, 10_000)
        successor = new_link(mosquitto.url, outbox)
        successor.start()
        try:
            wait_until(lambda: outbox.depth() == 0, timeout_s=20, what="backlog delivered")
            reader.wait_for(lambda m: len(m) >= 150, timeout_s=20, topic=TOPICS.alert)
        finally:
            successor.stop()
            outbox.close()
    assert first_arrivals(reader) == [alert_id(i) for i in range(150)]


CRASHER = """
import json, sys, time
from device.config import MqttSettings
from device.station.mqtt_link import MqttLink
from device.station.outbox import Outbox
from device.station.topics import Topics
from device.station.commands import CommandResult
topics = Topics("edgeinspect", "line1", "st1")
outbox = Outbox(sys.argv[2], 100000)
link = MqttLink(MqttSettings(url=sys.argv[1], client_id="crasher"), topics, outbox,
                lambda c: CommandResult(ok=True, command=c.command), lambda: {})
link.start()
for i in range(100000):
    alert = f"alert-{i:05d}"
    outbox.put(alert, topics.alert, json.dumps({"alert_id": alert}).encode())
    link.wake()
    time.sleep(0.002)
"""


def test_nothing_is_lost_when_the_process_is_killed_mid_stream(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with MessageCollector(mosquitto.url, [TOPICS.alert], persistent=True, client_id="historian") as reader:
        crasher = subprocess.Popen(
            [sys.executable, "-c", CRASHER, mosquitto.url, str(path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # 150 distinct alerts seen (a QoS 1 redelivery would count twice in the raw messages)
            reader.wait_for(lambda m: len(first_arrivals(reader)) >= 150, timeout_s=30, topic=TOPICS.alert)
            os.kill(crasher.pid, signal.SIGKILL)  # mid-put, mid-publish, mid-PUBACK
            crasher.wait(10)
        finally:
            if crasher.poll() is None:
                crasher.kill()
                crasher.wait(10)
        outbox = Outbox(path, 100_000)  # whatever the dead process made durable
        left = [m.message_id for m in outbox.peek(100_000)]
        successor = new_link(mosquitto.url, outbox)
        successor.start()
        try:
            wait_until(lambda: outbox.depth() == 0, timeout_s=20, what="backlog delivered")
            delivered_before = {json.loads(m.payload)["alert_id"] for m in reader.snapshot(TOPICS.alert)}
            last = max(int(a.split("-")[1]) for a in {*left, *delivered_before})
            reader.wait_for(
                lambda m: len(first_arrivals(reader)) >= last + 1, timeout_s=20, topic=TOPICS.alert
            )
        finally:
            successor.stop()
            outbox.close()
    # Alerts were put one after another, so everything up to the newest one seen must have arrived. The
    # newest is taken from what finally arrived too: under load the broker may still hand the reader
    # alerts the dead process had published (and so no longer held) after `last` was computed.
    arrived = first_arrivals(reader)
    newest = max(last, *(int(a.split("-")[1]) for a in arrived))
    assert arrived == [alert_id(i) for i in range(newest + 1)]
    assert last >= 149  # alert-00000 .. alert-00149 at least: the kill came mid-stream, not before it


def test_a_flood_of_malformed_commands_is_answered_and_the_link_survives(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    handled: list[Command] = []
    outbox = Outbox(tmp_path / "outbox.sqlite3", 10_000)

    def execute(command: Command) -> CommandResult:
        handled.append(command)
        return CommandResult(ok=True, command=command.command)

    link = MqttLink(MqttSettings(url=mosquitto.url, client_id="flooded"), TOPICS, outbox, execute, lambda: {})
    garbage = [
        b"not json at all",
        b"\xff\xfe\xfd",
        b"[]",
        b"42",
        b'{"command": "self_destruct"}',
        b'{"command": "set_threshold", "threshold": "high"}',
        b'{"command": "set_threshold", "threshold": -3}',
        b'{"command": "set_roi", "x": 0, "y": 0, "width": "wide", "height": 10}',
        b'{"command": "pause", "unexpected": true}',
        b'{"command": 7}',
        b'{"command": "activate_model", "model_id": "../../etc/passwd"}',
    ]
    huge = b'{"command": "pause", "pad": "' + b"x" * 1_000_000 + b'"}'
    flood = [huge] + [garbage[i % len(garbage)] for i in range(300)]
    link.start()
    try:
        wait_until(lambda: link.connected, what="connected")
        with MessageCollector(mosquitto.url, [TOPICS.command_response]) as client:
            for payload in flood:
                client.publish(TOPICS.command, payload, wait=False)
            errors = client.wait_for(
                lambda m: len(m) >= len(flood), timeout_s=30, topic=TOPICS.command_response
            )
            client.publish(TOPICS.command, json.dumps({"command": "resume", "request_id": "after-flood"}))
            replies = client.wait_for(
                lambda m: len(m) >= len(flood) + 1, timeout_s=10, topic=TOPICS.command_response
            )
        outbox.put("after-flood", TOPICS.alert, b'{"alert_id": "after-flood"}')
        link.wake()
        wait_until(lambda: outbox.depth() == 0, what="alerts still flow after the flood")
    finally:
        link.stop()
        outbox.close()
    answers = [json.loads(m.payload) for m in errors[: len(flood)]]
    assert all(a["ok"] is False and a["message"] for a in answers)
    assert any("not valid JSON" in a["message"] for a in answers)
    assert any("does not match any of the expected tags" in a["message"] for a in answers)
    assert any("the limit is 65536" in a["message"] for a in answers)
    final = json.loads(replies[-1].payload)
    assert final == {**final, "ok": True, "command": "resume", "request_id": "after-flood"}
    assert [c.command for c in handled] == ["resume"]
    assert link.commands_rejected == len(flood)
