"""Frame pacing for sources that have no clock of their own (simulator, image folder, video file)."""

from __future__ import annotations

import threading
import time


class Pacer:
    """Releases one frame every 1/fps seconds on a fixed schedule, so pacing does not drift with the
    time spent producing a frame. Waiting happens on an Event, so `interrupt()` ends it at once."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period_s = 1.0 / fps
        self._next: float | None = None
        self._interrupted = threading.Event()

    def reset(self) -> None:
        self._next = None
        self._interrupted.clear()

    def interrupt(self) -> None:
        self._interrupted.set()

    def wait(self) -> bool:
        """Block until the next frame is due; False if interrupted."""
        now = time.monotonic()
        if self._next is None or now - self._next > self.period_s:
            # First frame, or we fell more than a period behind: restart the schedule rather than burst.
            self._next = now
        delay = self._next - now
        self._next += self.period_s
        if delay > 0:
            return not self._interrupted.wait(delay)
        return not self._interrupted.is_set()
