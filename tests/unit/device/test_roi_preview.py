"""The ROI preview: the same raw frames judged under the current and the proposed ROI, and the verdict."""

from __future__ import annotations

import numpy as np
import pytest

from device.config import CameraSettings, RegionOfInterest
from device.station.camera.transform import roi_view
from device.station.capture import CaptureWorker, FrameQueue, RawFrameRing
from device.station.roi_preview import (
    REBUILD_HINT,
    WARN_MIN_EXTRA_REJECTS,
    WARN_REJECT_SHARE_POINTS,
    WARN_REJECT_SHARE_RATIO,
    RoiWarning,
    judge_verdict,
    preview_roi,
)
from vision.types import InspectionResult

SIZE = (32, 32)  # the model's input (camera.width x height)
THRESHOLD = 0.2


def part(shift: int = 0) -> np.ndarray:
    """A 100 x 100 raw frame: dark, with a 10 x 10 bright part near the centre."""
    image = np.zeros((100, 100, 3), np.uint8)
    image[45 + shift : 55 + shift, 45:55] = 255
    return image


class BrightnessModel:
    """Scores a frame by its share of bright pixels: a whole frame shows a little of the part; a tight ROI
    around it shows mostly part (a zoomed view), so it is judged NG. Records what it was shown."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, image: np.ndarray) -> InspectionResult:
        self.shapes.append(image.shape)
        score = float((image > 127).mean())
        return InspectionResult(
            score=score,
            threshold=THRESHOLD,
            is_defect=score >= THRESHOLD,
            boxes=[],
            anomaly_map=np.zeros(image.shape[:2], np.float32),
            inference_ms=0.0,
        )


def test_a_zooming_roi_warns_and_the_whole_frame_is_ok() -> None:
    frames = [part(shift % 3) for shift in range(10)]
    model = BrightnessModel()
    tight = RegionOfInterest(x=40, y=40, width=20, height=20)
    warned = preview_roi(frames, None, tight, model, SIZE, threshold=THRESHOLD, model_id="m1")
    assert warned.frames == 10 and warned.rejects_now == 0 and warned.rejects_proposed == 10
    assert (warned.reject_share_now, warned.reject_share_proposed) == (0.0, 1.0)
    assert warned.verdict == "warn" and "+100 points" in warned.reasons[0]
    assert warned.roi == tight.model_dump() and warned.current_roi is None and warned.model_id == "m1"
    assert warned.scores_now is not None and warned.scores_proposed is not None
    assert warned.scores_now.max < THRESHOLD <= warned.scores_proposed.min
    assert not warned.rebuild_available and warned.rebuild_hint == REBUILD_HINT
    assert set(model.shapes) == {(SIZE[1], SIZE[0], 3)}  # every view resized to the model's input
    assert len(model.shapes) == 20  # each frame judged once per setting

    whole = RegionOfInterest(x=0, y=0, width=100, height=100)
    ok = preview_roi(frames, None, whole, BrightnessModel(), SIZE, threshold=THRESHOLD)
    assert ok.verdict == "ok" and ok.rejects_proposed == ok.rejects_now == 0
    # From the tight ROI back to a loose one: fewer rejects is never a warning.
    back = preview_roi(frames, tight, whole, BrightnessModel(), SIZE, threshold=THRESHOLD)
    assert back.verdict == "ok" and back.reject_share_now == 1.0 and back.reject_share_proposed == 0.0

    message = str(RoiWarning(warned))
    assert "0% now, 100% with this region, on 10 recent frames" in message and "force" in message


def test_no_frames_is_unknown_not_ok() -> None:
    preview = preview_roi([], None, None, BrightnessModel(), SIZE, threshold=THRESHOLD)
    assert preview.verdict == "unknown" and preview.frames == 0 and preview.scores_now is None
    assert "no recent camera frames" in preview.reasons[0]


@pytest.mark.parametrize(
    ("frames", "now", "proposed", "verdict"),
    [
        (100, 3, 3, "ok"),
        (100, 10, 15, "ok"),  # +5 points is not more than 5, and 1.5x
        (100, 10, 16, "warn"),  # +6 points
        (100, 3, 8, "warn"),  # +5 points, but 2.7x
        (100, 1, 2, "ok"),  # 2x, but one frame more
        (100, 1, 3, "warn"),  # 3x and two frames more
        (100, 0, 5, "ok"),  # from nothing, only the absolute rule decides
        (100, 0, 6, "warn"),
        (100, 50, 20, "ok"),  # fewer rejects
        (0, 0, 0, "unknown"),
    ],
)
def test_verdict_thresholds(frames: int, now: int, proposed: int, verdict: str) -> None:
    assert (WARN_REJECT_SHARE_POINTS, WARN_REJECT_SHARE_RATIO, WARN_MIN_EXTRA_REJECTS) == (0.05, 2.0, 2)
    got, reasons = judge_verdict(frames, now, proposed)
    assert got == verdict and reasons


def test_capture_keeps_raw_frames_and_the_preview_crops_them_as_capture_does() -> None:
    """The ring holds the frames before the crop, and `roi_view` of one is what capture queued."""
    ring = RawFrameRing(3)
    roi = RegionOfInterest(x=30, y=35, width=40, height=30)
    settings = CameraSettings(width=SIZE[0], height=SIZE[1], roi=roi)
    worker = CaptureWorker(_NoSource(), settings, FrameQueue(10), raw_frames=ring)
    built = [worker._build_frame(part(shift), {}, 0.0, 0.0) for shift in range(5)]
    kept = ring.snapshot()
    assert len(kept) == 3 and all(image.shape == (100, 100, 3) for image in kept)
    assert np.array_equal(kept[-1], part(4))
    for raw, frame in zip(kept, built[-3:], strict=True):
        assert np.array_equal(roi_view(raw, roi, *SIZE), frame.image)
    # An ROI outside the frame: capture and preview both fall back to the whole frame.
    outside = RegionOfInterest(x=500, y=500, width=5, height=5)
    worker.set_roi(outside)
    frame = worker._build_frame(part(), {}, 0.0, 0.0)
    assert np.array_equal(roi_view(part(), outside, *SIZE), frame.image)


class _NoSource:
    name = "none"

    def open(self) -> None: ...

    def read(self) -> None:
        return None

    def close(self) -> None: ...
