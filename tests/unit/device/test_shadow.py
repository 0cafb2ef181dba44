"""Shadow mode's bookkeeping with a stand-in candidate: agreement, disagreements kept with a view, stop."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import pytest

from device.station.camera.base import Frame
from device.station.shadow import ShadowRun
from vision.inspector import Inspector
from vision.types import InspectionResult


class StandInCandidate:
    """Says NG when the frame's first pixel is odd (the Inspector's `inspect` and `info.threshold`)."""

    class info:  # mirrors Inspector.info
        threshold = 0.5

    def inspect(self, image: np.ndarray, **_: Any) -> InspectionResult:
        score = float(image[0, 0, 0] % 2)
        return InspectionResult(score, 0.5, score > 0.5, [], np.full(image.shape[:2], score, np.float32), 1.0)


def _part(i: int, active_ng: bool) -> tuple[Frame, InspectionResult]:
    image = np.full((24, 24, 3), i, np.uint8)
    frame = Frame(frame_id=i, captured_at=time.time(), captured_mono=time.monotonic(), image=image)
    score = 0.9 if active_ng else 0.1
    return frame, InspectionResult(score, 0.5, active_ng, [], np.zeros((24, 24), np.float32), 1.0)


def _feed(shadow: ShadowRun, parts: list[tuple[Frame, InspectionResult]]) -> None:
    for frame, active in parts:
        before = shadow.status().compared + shadow.status().skipped
        shadow.offer(frame, active)
        deadline = time.monotonic() + 10
        while shadow.running and shadow.status().compared + shadow.status().skipped == before:
            assert time.monotonic() < deadline, "the shadow never judged the part"
            time.sleep(0.002)


def test_counts_agreement_and_keeps_disagreements_with_the_candidates_view() -> None:
    shadow = ShadowRun("cand", lambda: cast(Inspector, StandInCandidate()), parts=6)
    # Active says NG for parts 0-2; the candidate says NG for odd parts: parts 0, 2 (cand OK, line NG)
    # and 3, 5 (cand NG, line OK) disagree; 1 and 4 agree.
    _feed(shadow, [_part(i, active_ng=i < 3) for i in range(6)])
    assert shadow.wait(10)
    status = shadow.status()
    assert (status.state, status.compared, status.agreed) == ("done", 6, 2)
    assert (status.candidate_ng_active_ok, status.candidate_ok_active_ng) == (2, 2)
    assert [d.frame_id for d in status.disagreements] == [5, 3, 2, 0]  # most recent first
    assert status.candidate_threshold == 0.5
    assert shadow.thumbnail(3)[:2] == b"\xff\xd8"
    with pytest.raises(KeyError):
        shadow.thumbnail(1)  # agreed: nothing kept
    shadow.offer(*_part(7, active_ng=False))  # done: not compared
    assert shadow.status().compared == 6


def test_stop_and_a_candidate_that_will_not_load() -> None:
    shadow = ShadowRun("cand", lambda: cast(Inspector, StandInCandidate()), parts=100)
    _feed(shadow, [_part(1, active_ng=False)])
    shadow.stop()
    assert shadow.wait(10) and shadow.status().state == "stopped" and shadow.status().compared == 1

    def broken() -> Inspector:
        raise ValueError("tampered file")

    failed = ShadowRun("bad", broken, parts=3)
    assert failed.wait(10)
    assert failed.status().state == "failed" and "tampered file" in (failed.status().error or "")
