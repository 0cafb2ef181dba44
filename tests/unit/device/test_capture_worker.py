"""The capture stage: the drop-oldest queue, backoff, ROI + resize, reconnects, corrupt frames, stop."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from device.config import CameraSettings, RegionOfInterest
from device.station.camera.base import CameraError, CorruptFrame, Frame
from device.station.camera.transform import clip_roi, crop_and_resize, to_bgr
from device.station.capture import Backoff, CaptureWorker, FrameQueue


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def make_frame(frame_id: int) -> Frame:
    return Frame(frame_id, time.time(), time.monotonic(), np.zeros((2, 2, 3), np.uint8))


class ScriptedSource:
    """A fake camera: `opens` lists what each open() does (None: succeed, an exception: raise it), `reads`
    what each read() returns or raises. After the script it blocks until interrupted, like a quiet camera."""

    name = "scripted"

    def __init__(self, reads: list[Any], opens: list[BaseException | None] | None = None) -> None:
        self._reads = list(reads)
        self._opens = list(opens or [])
        self._released = threading.Event()
        self.open_calls = 0
        self.close_calls = 0

    def open(self) -> None:
        self.open_calls += 1
        self._released.clear()
        if self._opens:
            outcome = self._opens.pop(0)
            if outcome is not None:
                raise outcome

    def read(self) -> Any:
        if self._reads:
            item = self._reads.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        self._released.wait()
        raise CameraError("interrupted")

    def interrupt(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.close_calls += 1


def gray(value: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def drain(queue: FrameQueue) -> list[Frame]:
    frames = []
    while (frame := queue.get(timeout=0)) is not None:
        frames.append(frame)
    return frames


# -- FrameQueue ----------------------------------------------------------------------------------------


def test_queue_drops_oldest_and_counts() -> None:
    queue = FrameQueue(3)
    evicted = [queue.put(make_frame(i)) for i in range(5)]
    assert [e.frame_id if e else None for e in evicted] == [None, None, None, 0, 1]
    assert queue.dropped == 2
    assert len(queue) == 3
    assert [f.frame_id for f in drain(queue)] == [2, 3, 4]
    assert queue.get(timeout=0.01) is None
    assert queue.dropped == 2


def test_queue_get_waits_for_a_put_from_another_thread() -> None:
    queue = FrameQueue(2)
    timer = threading.Timer(0.05, queue.put, args=(make_frame(7),))
    timer.start()
    frame = queue.get(timeout=10)
    timer.join()
    assert frame is not None and frame.frame_id == 7


def test_queue_accounts_for_every_frame_under_concurrency() -> None:
    queue = FrameQueue(4)
    per_producer, producers = 500, 4
    received: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while not (done.is_set() and len(queue) == 0):
            frame = queue.get(timeout=0.01)
            if frame is not None:
                received.append(frame.frame_id)

    def produce(base: int) -> None:
        for i in range(per_producer):
            queue.put(make_frame(base + i))

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(p * per_producer,)) for p in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    consumer.join(10)
    assert len(received) + queue.dropped == per_producer * producers
    assert len(set(received)) == len(received)


def test_queue_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="queue size"):
        FrameQueue(0)


# -- Backoff -------------------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(0.5, 8.0, jitter=0.2, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= base
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[:5]))
    assert len({round(d, 6) for d in delays[4:]}) > 1, "jitter should vary delays at the cap"
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_validates_arguments() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(1, 1, jitter=1.0)


# -- ROI + resize --------------------------------------------------------------------------------------


def quadrants() -> np.ndarray:
    """100x200 image: top-left blue, top-right green, bottom-left red, bottom-right white (BGR)."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[:50, :100] = (255, 0, 0)
    image[:50, 100:] = (0, 255, 0)
    image[50:, :100] = (0, 0, 255)
    image[50:, 100:] = (255, 255, 255)
    return image


def test_roi_crop_then_resize() -> None:
    image = quadrants()
    box = clip_roi(RegionOfInterest(x=100, y=0, width=100, height=50), 200, 100)
    out = crop_and_resize(image, box, 32, 16)
    assert out.shape == (16, 32, 3)
    assert (out == (0, 255, 0)).all()


def test_roi_is_clipped_to_the_frame_or_rejected() -> None:
    assert clip_roi(RegionOfInterest(x=150, y=80, width=500, height=500), 200, 100) == (150, 80, 200, 100)
    assert clip_roi(RegionOfInterest(x=300, y=0, width=10, height=10), 200, 100) is None


def test_mask_resize_stays_binary() -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[20:60, 30:90] = 255
    out = crop_and_resize(mask, None, 37, 23, nearest=True)
    assert out.shape == (23, 37)
    assert set(np.unique(out).tolist()) == {0, 255}


def test_to_bgr_converts_mono_and_bgra_and_rejects_the_rest() -> None:
    assert to_bgr(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_bgr(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    for bad in (
        np.zeros((4, 5, 3), np.float32),
        np.zeros((4, 5, 2), np.uint8),
        np.zeros((0, 5, 3), np.uint8),
    ):
        with pytest.raises(CorruptFrame):
            to_bgr(bad)
    with pytest.raises(CorruptFrame):
        to_bgr(b"not an array")


def test_a_mono_camera_frame_is_judged_as_the_same_bgr_pixels_and_kept_mono() -> None:
    """Capture resizes a mono frame before making it BGR (cheaper at full resolution): the model sees
    exactly what converting first would give, and the ROI preview's ring keeps the one-channel frame."""
    from device.station.capture import RawFrameRing

    mono = np.random.default_rng(0).integers(0, 256, (96, 120), dtype=np.uint8)
    ring = RawFrameRing(2)
    roi = RegionOfInterest(x=10, y=5, width=90, height=80)
    settings = CameraSettings(width=32, height=32, roi=roi)
    worker = CaptureWorker(ScriptedSource([]), settings, FrameQueue(2), raw_frames=ring)
    frame = worker._build_frame(mono, {}, 0.0, 0.0)
    converted_first = crop_and_resize(to_bgr(mono), clip_roi(roi, 120, 96), 32, 32)
    assert frame.image.shape == (32, 32, 3)
    assert np.array_equal(frame.image, converted_first)
    assert ring.snapshot()[0].shape == (96, 120)


def test_worker_applies_roi_and_resize_and_set_roi_takes_effect() -> None:
    source = ScriptedSource([quadrants() for _ in range(3)])
    settings = CameraSettings(width=40, height=20, roi=RegionOfInterest(x=0, y=50, width=100, height=50))
    queue = FrameQueue(10)
    worker = CaptureWorker(source, settings, queue)
    before = [worker._build_frame(quadrants(), {}, 0.0, 0.0)]
    worker.set_roi(RegionOfInterest(x=100, y=50, width=100, height=50))
    after = worker._build_frame(quadrants(), {}, 0.0, 0.0)
    worker.set_roi(None)
    whole = worker._build_frame(quadrants(), {}, 0.0, 0.0)
    assert before[0].image.shape == (20, 40, 3) and (before[0].image == (0, 0, 255)).all()
    assert (after.image == (255, 255, 255)).all()
    assert whole.image.shape == (20, 40, 3) and len(np.unique(whole.image.reshape(-1, 3), axis=0)) >= 4
    assert worker.source_size == (200, 100)


def test_roi_outside_the_frame_falls_back_to_the_whole_frame() -> None:
    settings = CameraSettings(width=20, height=10, roi=RegionOfInterest(x=500, y=500, width=10, height=10))
    worker = CaptureWorker(ScriptedSource([]), settings, FrameQueue(2))
    frame = worker._build_frame(quadrants(), {}, 0.0, 0.0)
    assert frame.image.shape == (10, 20, 3)
    assert worker.roi_outside_frame


def test_truth_mask_follows_the_roi_and_resize() -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[50:, 100:] = 255  # defect in the bottom-right quadrant only
    settings = CameraSettings(width=16, height=8, roi=RegionOfInterest(x=100, y=50, width=100, height=50))
    worker = CaptureWorker(ScriptedSource([]), settings, FrameQueue(2))
    frame = worker._build_frame(quadrants(), {"mask": mask, "is_defect": True}, 0.0, 0.0)
    assert frame.truth["mask"].shape == (8, 16)
    assert (frame.truth["mask"] == 255).all()
    assert frame.truth["is_defect"] is True


# -- the worker thread ---------------------------------------------------------------------------------


def test_worker_stamps_numbers_and_counts_corrupt_frames() -> None:
    reads = [
        gray(10),
        CorruptFrame("bad jpeg"),
        np.zeros((3, 3, 3), np.float64),
        (gray(20), {"is_defect": False}),
    ]
    source = ScriptedSource(reads)
    queue = FrameQueue(10)
    worker = CaptureWorker(source, CameraSettings(width=4, height=4), queue)
    before = time.time()
    worker.start()
    try:
        assert wait_until(lambda: worker.frames == 2 and worker.corrupt_frames == 2)
        assert worker.connected
    finally:
        assert worker.stop(timeout=5)
    frames = drain(queue)
    assert [f.frame_id for f in frames] == [0, 1]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20]
    assert all(f.image.shape == (4, 4, 3) for f in frames)
    assert all(f.captured_at >= before for f in frames)
    assert frames[0].captured_mono <= frames[1].captured_mono
    assert frames[1].truth == {"is_defect": False}
    assert "float64" in (worker.last_corrupt or "")
    assert worker.last_error is None
    assert worker.reconnects == 0


def test_worker_reconnects_with_growing_capped_backoff_and_ids_keep_increasing() -> None:
    gone = CameraError("unplugged")
    source = ScriptedSource(
        reads=[gray(1), gray(2), RuntimeError("driver bug"), gray(3), gone, gray(4)],
        opens=[None, gone, gone, gone, gone, gone, None, None],
    )
    delays: list[float] = []
    settings = CameraSettings(width=8, height=8, reconnect_initial_s=1.0, reconnect_max_s=4.0)
    queue = FrameQueue(10)

    def fake_wait(delay: float) -> bool:
        delays.append(delay)
        return False  # no real sleeping: the backoff schedule is what is under test

    worker = CaptureWorker(source, settings, queue, wait=fake_wait, rng=random.Random(0))
    worker.start()
    try:
        assert wait_until(lambda: worker.frames == 4)
    finally:
        assert worker.stop(timeout=5)
    # A driver exception is handled like a lost camera: 1 read failure + 5 failed opens (growing, capped
    # at 4 s); after frames flow again the next outage starts from the initial delay.
    assert len(delays) == 7
    first_outage = delays[:6]
    assert all(later > earlier for earlier, later in itertools.pairwise(first_outage[:3]))
    assert all(d <= 4.0 for d in delays)
    assert all(d >= 0.8 * 4.0 for d in first_outage[2:])
    assert delays[6] <= 1.0, "a delivered frame resets the backoff"
    assert worker.reconnects == 2
    assert worker.last_error == "unplugged"
    assert [f.frame_id for f in drain(queue)] == [0, 1, 2, 3]
    assert source.close_calls >= 7


def test_worker_reports_disconnected_while_the_source_is_down() -> None:
    source = ScriptedSource(
        reads=[gray(1), CameraError("stream lost")], opens=[None] + [CameraError("refused")] * 50
    )
    settings = CameraSettings(reconnect_initial_s=0.01, reconnect_max_s=0.02)
    worker = CaptureWorker(source, settings, FrameQueue(4))
    worker.start()
    try:
        assert wait_until(lambda: worker.frames == 1)
        assert wait_until(lambda: source.open_calls >= 4)
        assert not worker.connected
        assert worker.last_error == "refused"
    finally:
        assert worker.stop(timeout=5)


def test_stop_returns_while_blocked_in_backoff() -> None:
    source = ScriptedSource(reads=[], opens=[CameraError("no camera")] * 5)
    settings = CameraSettings(reconnect_initial_s=60.0, reconnect_max_s=120.0)
    worker = CaptureWorker(source, settings, FrameQueue(4))
    worker.start()
    assert wait_until(lambda: source.open_calls == 1 and worker.last_error is not None)
    assert worker.stop(timeout=5), "stop must not wait out a 60 s backoff"
    assert not worker.running
    assert source.open_calls == 1


def test_stop_returns_while_blocked_in_read() -> None:
    source = ScriptedSource(reads=[gray(1)])  # then blocks like a quiet camera
    worker = CaptureWorker(source, CameraSettings(), FrameQueue(4))
    worker.start()
    assert wait_until(lambda: worker.frames == 1)
    assert worker.stop(timeout=5)
    assert not worker.connected
    assert source.close_calls >= 1


def test_finite_source_end_finishes_the_worker() -> None:
    source = ScriptedSource(reads=[gray(1), gray(2), None])
    queue = FrameQueue(4)
    worker = CaptureWorker(source, CameraSettings(width=8, height=8), queue)
    worker.start()
    assert wait_until(lambda: not worker.running)
    assert worker.finished and worker.frames == 2
    stats = worker.stats()
    assert stats.frames == 2 and stats.finished and not stats.connected and stats.queue_depth == 2


def test_slow_consumer_never_blocks_capture() -> None:
    source = ScriptedSource(reads=[gray(i % 255) for i in range(50)])
    queue = FrameQueue(3)
    worker = CaptureWorker(source, CameraSettings(width=8, height=8), queue)
    worker.start()
    try:
        assert wait_until(lambda: worker.frames == 50)
    finally:
        worker.stop(timeout=5)
    assert queue.dropped == 47
    assert [f.frame_id for f in drain(queue)] == [47, 48, 49]
