"""Map a camera's own timestamp (ticks in ns since its power-up, or PTP time) onto this box's clocks.

The part was under the lens at the camera timestamp; the buffer reached us later by the transport delay.
The smallest observed (arrival - camera) gap is the best estimate of the clock offset (the delay's floor),
so `host_time = camera_ns + offset`. Reset on every reconnect: a rebooted camera restarts its counter.
"""

from __future__ import annotations

import time


class CameraClock:
    """Converts camera timestamps to host wall and monotonic time."""

    def __init__(self) -> None:
        self._offset_ns: int | None = None

    def reset(self) -> None:
        self._offset_ns = None

    def observe(self, camera_ns: int, arrival_wall_ns: int) -> None:
        """One frame: its camera timestamp and when it arrived here (host wall clock, ns)."""
        gap = arrival_wall_ns - camera_ns
        if self._offset_ns is None or gap < self._offset_ns:
            self._offset_ns = gap

    def to_host(self, camera_ns: int) -> tuple[float, float] | None:
        """(wall time, monotonic time) in seconds when the camera took the frame; None before any frame.

        Never later than now: a frame cannot come from the future even if the offset estimate drifts.
        """
        if self._offset_ns is None:
            return None
        now_wall, now_mono = time.time(), time.monotonic()
        wall = min((camera_ns + self._offset_ns) / 1e9, now_wall)
        return wall, now_mono - (now_wall - wall)
