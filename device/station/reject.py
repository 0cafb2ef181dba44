"""The reject gate: a defective part is kicked off the belt some time after the camera saw it.

The gate sits downstream of the camera, so the reject command is issued `gate_delay_ms` after capture
(not after inference) and carries the frame id and, if configured, the encoder position the PLC uses.
Commands go through the outbox like alerts, so a broker outage delays them but never loses them.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from device.config import RejectSettings


class RejectScheduler:
    def __init__(self, settings: RejectSettings, emit: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self._emit = emit
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._pending_ack: dict[int, float] = {}
        self.issued = 0
        self.acknowledged = 0
        self._thread = threading.Thread(target=self._run, name="reject-gate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():  # also safe when start() never ran
            self._thread.join(timeout=2)

    def schedule(self, frame_id: int, alert_id: str, captured_mono: float) -> None:
        if not self.settings.enabled:
            return
        command: dict[str, Any] = {"action": "reject", "frame_id": frame_id, "alert_id": alert_id}
        position = encoder_position(frame_id, self.settings)
        if position is not None:
            command["encoder_position"] = position
        due = captured_mono + self.settings.gate_delay_ms / 1000.0
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._counter), command))
            self._cond.notify()

    def acknowledge(self, frame_id: int) -> bool:
        """The PLC confirmed the gate fired; returns False for a frame we never asked to reject."""
        with self._cond:
            if self._pending_ack.pop(frame_id, None) is None:
                return False
            self.acknowledged += 1
            return True

    @property
    def awaiting_ack(self) -> int:
        with self._cond:
            return len(self._pending_ack)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cond.wait(timeout=timeout)
                if self._stopped:
                    return
                _, _, command = heapq.heappop(self._heap)
                self._pending_ack[command["frame_id"]] = time.monotonic()
                if len(self._pending_ack) > 10_000:  # PLC never acks: keep memory bounded
                    self._pending_ack.pop(next(iter(self._pending_ack)))
                self.issued += 1
            self._emit(command)


def encoder_position(frame_id: int, settings: RejectSettings) -> int | None:
    """Where the part is on the conveyor, in encoder counts, when the line has an encoder configured."""
    counts = settings.encoder_counts_per_frame
    return frame_id * counts if counts else None
