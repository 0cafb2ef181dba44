"""The reject gate fires after the configured delay from capture, and tracks PLC acknowledgements."""

from __future__ import annotations

import threading
import time

from device.config import RejectSettings
from device.station.reject import RejectScheduler


def _collect(settings: RejectSettings) -> tuple[RejectScheduler, list[tuple[float, dict]], threading.Event]:
    fired: list[tuple[float, dict]] = []
    done = threading.Event()

    def emit(command: dict) -> None:
        fired.append((time.monotonic(), command))
        done.set()

    return RejectScheduler(settings, emit), fired, done


def test_reject_waits_for_the_gate_delay_and_carries_the_encoder_position() -> None:
    scheduler, fired, done = _collect(RejectSettings(gate_delay_ms=150, encoder_counts_per_frame=40))
    scheduler.start()
    captured = time.monotonic()
    scheduler.schedule(frame_id=12, alert_id="a-12", captured_mono=captured)
    assert done.wait(2.0)
    scheduler.stop()
    at, command = fired[0]
    assert at - captured >= 0.15
    assert command == {"action": "reject", "frame_id": 12, "alert_id": "a-12", "encoder_position": 480}


def test_rejects_fire_in_due_order_and_acks_are_matched() -> None:
    scheduler, fired, _ = _collect(RejectSettings(gate_delay_ms=50))
    scheduler.start()
    now = time.monotonic()
    scheduler.schedule(2, "b", now + 0.05)
    scheduler.schedule(1, "a", now)
    deadline = time.monotonic() + 2
    while len(fired) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    scheduler.stop()
    assert [c["frame_id"] for _, c in fired] == [1, 2]
    assert scheduler.acknowledge(1) is True
    assert scheduler.acknowledge(1) is False  # already acknowledged
    assert scheduler.acknowledge(99) is False  # never rejected
    assert scheduler.awaiting_ack == 1


def test_disabled_gate_issues_nothing() -> None:
    scheduler, fired, _ = _collect(RejectSettings(enabled=False))
    scheduler.start()
    scheduler.schedule(1, "a", time.monotonic())
    time.sleep(0.1)
    scheduler.stop()
    assert fired == []
