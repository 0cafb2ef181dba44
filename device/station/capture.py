"""The capture stage: one thread pulls frames from the camera, stamps, crops and resizes them, and hands
them to inspection through a bounded queue that drops the oldest frame, so a slow model never stalls
the camera and the model always judges the freshest part."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.config import CameraSettings, RegionOfInterest
from device.station.camera.base import CameraError, CorruptFrame, Frame, FrameSource
from device.station.camera.transform import checked_frame, clip_roi, crop_and_resize, to_bgr

log = logging.getLogger(__name__)


class RawFrameRing:
    """The last `size` raw camera frames (BGR, before the ROI crop), newest last: what the ROI preview
    scores a proposed region on. Thread-safe; owned by the runtime so it outlives a stopped capture."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._frames: deque[np.ndarray] = deque(maxlen=size)

    def add(self, image: np.ndarray) -> None:
        with self._lock:
            self._frames.append(image)

    def snapshot(self) -> list[np.ndarray]:
        with self._lock:
            return list(self._frames)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


class FrameQueue:
    """Bounded, thread-safe, drop-oldest. `put` never blocks: on a full queue the oldest frame goes and
    `dropped` counts it (a stale part is worth less than the one now under the camera)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, frame: Frame) -> Frame | None:
        """Enqueue; return the frame dropped to make room, if any."""
        with self._cond:
            evicted = None
            if len(self._items) >= self.maxsize:
                evicted = self._items.popleft()
                self._dropped += 1
            self._items.append(frame)
            self._cond.notify()
            return evicted

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame; None if none arrives within `timeout` seconds (None: wait forever)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def clear(self) -> int:
        """Discard queued frames (e.g. after a model swap); return how many. Not counted as dropped."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            return count


class Backoff:
    """Exponential reconnect delays: initial, 2x, 4x ... capped at max_s, each shortened by up to `jitter`
    (a fraction) so several boxes that lost the same camera server do not hammer it in lockstep.

    With jitter < 0.5 every delay before the cap is longer than the one before it.
    """

    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None):
        if initial_s <= 0 or max_s <= 0:
            raise ValueError("backoff delays must be > 0")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._base = min(initial_s, max_s)

    def reset(self) -> None:
        self._base = min(self.initial_s, self.max_s)

    def next_delay(self) -> float:
        delay = self._base * (1.0 - self.jitter * self._rng.random())
        self._base = min(self._base * 2.0, self.max_s)
        return delay


@dataclass(frozen=True)
class CaptureStats:
    """A consistent snapshot for status, health and metrics."""

    frames: int
    corrupt_frames: int
    reconnects: int
    dropped_frames: int
    queue_depth: int
    connected: bool
    finished: bool
    last_error: str | None
    last_corrupt: str | None
    source: str


class CaptureWorker:
    """Runs the camera in its own thread: open, read, stamp, crop, resize, enqueue; on failure close,
    wait (exponential backoff with jitter) and open again. Frame ids keep increasing across reconnects,
    so a gap means frames were dropped, never that they were renumbered.

    `wait(delay) -> bool` (True: stop requested) can be injected to observe backoff without sleeping.
    `raw_frames` keeps a copy of each raw frame before the crop (for the ROI preview).
    """

    def __init__(
        self,
        source: FrameSource,
        settings: CameraSettings,
        queue: FrameQueue,
        *,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        first_frame_id: int = 0,
        raw_frames: RawFrameRing | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.queue = queue
        self.backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s, rng=rng)
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._ids = itertools.count(first_frame_id)
        self._roi_lock = threading.Lock()
        self._roi = settings.roi
        self._recipe: str | None = None
        self._raw_frames = raw_frames
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.corrupt_frames = 0
        self.reconnects = 0
        self.connected = False
        self.finished = False
        self.last_error: str | None = None
        self.last_corrupt: str | None = None
        self.roi_outside_frame = False
        self.source_size: tuple[int, int] | None = None  # (width, height) of the raw frames
        self.latest_frame: Frame | None = None

    # -- control -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("capture worker already started")
        self._thread = threading.Thread(target=self._run, name=f"capture[{self.source.name}]", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and join; True if the thread ended within `timeout` (a backoff wait or a paced read ends
        at once; a driver stuck inside OpenCV may not, and is then left to die with the process)."""
        self._stop.set()
        interrupt = getattr(self.source, "interrupt", None)
        if callable(interrupt):
            try:
                interrupt()
            except Exception:  # best effort: the thread also checks the stop flag
                log.debug("interrupting %s failed", self.source.name, exc_info=True)
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            log.warning("capture thread for %s did not stop within %.1fs", self.source.name, timeout)
        return not alive

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def roi(self) -> RegionOfInterest | None:
        with self._roi_lock:
            return self._roi

    def set_roi(self, roi: RegionOfInterest | None) -> None:
        """Takes effect from the next frame captured."""
        with self._roi_lock:
            self._roi = roi
            self.roi_outside_frame = False

    def set_recipe(self, recipe: str | None, roi: RegionOfInterest | None) -> None:
        """Stamp frames with `recipe` and crop them with its ROI, both from the same next frame."""
        with self._roi_lock:
            self._recipe = recipe
            self._roi = roi
            self.roi_outside_frame = False

    def stats(self) -> CaptureStats:
        return CaptureStats(
            frames=self.frames,
            corrupt_frames=self.corrupt_frames,
            reconnects=self.reconnects,
            dropped_frames=self.queue.dropped,
            queue_depth=len(self.queue),
            connected=self.connected,
            finished=self.finished,
            last_error=self.last_error,
            last_corrupt=self.last_corrupt,
            source=self.source.name,
        )

    # -- the thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        ever_connected = False
        try:
            while not self._stop.is_set():
                if not self.connected:
                    if not self._connect():
                        if self._wait(self.backoff.next_delay()):
                            break
                        continue
                    if ever_connected:
                        self.reconnects += 1
                        log.info("camera %s reconnected", self.source.name)
                    ever_connected = True
                if not self._capture_one():
                    break
        finally:
            self.connected = False
            self._close_source()

    def _connect(self) -> bool:
        try:
            self.source.open()
        except Exception as exc:
            self._record_failure(exc, "open")
            self._close_source()
            return False
        self.connected = True
        return True

    def _capture_one(self) -> bool:
        """Read and enqueue one frame; False when capture should end (stop requested, finite source over)."""
        try:
            result = self.source.read()
        except CorruptFrame as exc:
            self._count_corrupt(exc)
            return True
        except Exception as exc:
            if self._stop.is_set():
                return False
            self._record_failure(exc, "read")
            self.connected = False
            self._close_source()
            return not self._wait(self.backoff.next_delay())
        captured_at, captured_mono = time.time(), time.monotonic()
        if result is None:
            log.info("camera %s reached the end of its frames", self.source.name)
            self.finished = True
            return False
        image, truth = result if isinstance(result, tuple) else (result, {})
        if "part_mono" in truth:  # the camera's own timestamp (GenICam): when the part was under the lens
            captured_at, captured_mono = float(truth.pop("part_time")), float(truth.pop("part_mono"))
        try:
            frame = self._build_frame(image, dict(truth), captured_at, captured_mono)
        except CorruptFrame as exc:
            self._count_corrupt(exc)
            return True
        self.queue.put(frame)
        self.latest_frame = frame
        self.frames += 1
        self.backoff.reset()  # only a delivered frame proves the camera is healthy again
        return True

    def _build_frame(
        self, raw: Any, truth: dict[str, Any], captured_at: float, captured_mono: float
    ) -> Frame:
        image = checked_frame(raw)  # a mono camera's frame stays mono until it is model-sized
        height, width = image.shape[:2]
        self.source_size = (width, height)
        with self._roi_lock:
            roi, recipe = self._roi, self._recipe
        box = None
        if roi is not None:
            box = clip_roi(roi, width, height)
            if box is None and not self.roi_outside_frame:
                log.warning("ROI %s lies outside the %dx%d frame; using the whole frame", roi, width, height)
            self.roi_outside_frame = box is None
        out_w, out_h = self.settings.width, self.settings.height
        if self._raw_frames is not None:  # a copy: a driver may reuse its buffer for the next read
            self._raw_frames.add(image.copy())
        mask = truth.get("mask")
        if isinstance(mask, np.ndarray) and mask.shape[:2] == (height, width):
            truth["mask"] = crop_and_resize(mask, box, out_w, out_h, nearest=True)
        return Frame(
            frame_id=next(self._ids),
            captured_at=captured_at,
            captured_mono=captured_mono,
            image=to_bgr(crop_and_resize(image, box, out_w, out_h)),
            truth=truth,
            recipe=recipe,
        )

    def _count_corrupt(self, exc: Exception) -> None:
        self.corrupt_frames += 1
        self.last_corrupt = str(exc) or type(exc).__name__
        log.debug("corrupt frame from %s: %s", self.source.name, self.last_corrupt)

    def _record_failure(self, exc: Exception, stage: str) -> None:
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, CameraError):
            message = f"{type(exc).__name__}: {message}"
        if message != self.last_error:
            log.warning("camera %s %s failed: %s", self.source.name, stage, message)
        self.last_error = message

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.debug("closing %s failed", self.source.name, exc_info=True)
