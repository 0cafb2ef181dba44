"""Shadow mode: a candidate model judges the live parts beside the active one, without deciding anything.

Before a new model (a new product's first build, a retrain, a taught version) judges parts, it runs in the
shadow of the active model for `parts` judged parts: each part the line judged is judged again by the
candidate, at its own calibrated threshold, and where the two verdicts differ the part is kept with both
verdicts and a small overlay of the candidate's view (the panel's "where they disagree"). Promoting is the
ordinary model activation; the shadow only informs it.

Guarantees: the line never waits for the shadow. Parts are handed over through a bounded queue; when the
candidate falls behind, parts are skipped (counted) rather than delayed. The candidate runs on one thread
at low priority (nice 10), so on a 2-core box the line keeps a core.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from device.station.camera.base import Frame
from vision.inspector import Inspector
from vision.overlay import overlay_thumbnail
from vision.types import InspectionResult

log = logging.getLogger(__name__)

ShadowState = Literal["running", "done", "stopped", "failed"]
PENDING_PARTS = 4  # parts waiting for the candidate; more are skipped, the line never waits
KEEP_DISAGREEMENTS = 50  # the most recent ones, with thumbnails
THUMBNAIL_PX = 160
LOW_PRIORITY = 10  # nice value of the candidate's thread


class Disagreement(BaseModel):
    frame_id: int
    captured_at: float
    active_verdict: Literal["OK", "NG"]
    active_score: float
    active_threshold: float
    candidate_verdict: Literal["OK", "NG"]
    candidate_score: float
    candidate_threshold: float


class ShadowStatus(BaseModel):
    """What the panel shows while a candidate runs in the shadow."""

    model_id: str
    state: ShadowState
    target: int = Field(..., description="Parts to compare.")
    compared: int
    agreed: int
    candidate_ng_active_ok: int = Field(
        0, description="Parts the candidate would reject and the line passed."
    )
    candidate_ok_active_ng: int = Field(
        0, description="Parts the line rejected and the candidate would pass."
    )
    skipped: int = Field(0, description="Parts not compared because the candidate was still busy.")
    candidate_threshold: float | None = None
    disagreements: list[Disagreement] = Field(default_factory=list, description="Most recent first.")
    error: str | None = None


def _verdict(is_defect: bool) -> Literal["OK", "NG"]:
    return "NG" if is_defect else "OK"


class ShadowRun:
    """One candidate in the shadow: `offer` from the inspection thread, a low-priority thread judges."""

    def __init__(self, model_id: str, load: Callable[[], Inspector], parts: int) -> None:
        if parts < 1:
            raise ValueError("parts must be at least 1")
        self.model_id = model_id
        self._load = load
        self._target = parts
        self._lock = threading.Lock()
        self._state: ShadowState = "running"
        self._compared = self._agreed = self._skipped = 0
        self._candidate_ng = self._candidate_ok = 0
        self._threshold: float | None = None
        self._error: str | None = None
        self._disagreements: list[tuple[Disagreement, bytes]] = []
        self._pending: queue.Queue[tuple[Frame, InspectionResult] | None] = queue.Queue(PENDING_PARTS)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    # ---- from the inspection thread ----------------------------------------------------------
    def offer(self, frame: Frame, active: InspectionResult) -> None:
        if not self.running:
            return
        try:
            self._pending.put_nowait((frame, active))
        except queue.Full:
            with self._lock:
                self._skipped += 1

    # ---- control and views -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        with self._lock:
            return self._state == "running"

    def stop(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "stopped"
        with contextlib.suppress(queue.Full):
            self._pending.put_nowait(None)

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def status(self) -> ShadowStatus:
        with self._lock:
            return ShadowStatus(
                model_id=self.model_id,
                state=self._state,
                target=self._target,
                compared=self._compared,
                agreed=self._agreed,
                candidate_ng_active_ok=self._candidate_ng,
                candidate_ok_active_ng=self._candidate_ok,
                skipped=self._skipped,
                candidate_threshold=self._threshold,
                disagreements=[d for d, _ in reversed(self._disagreements)],
                error=self._error,
            )

    def thumbnail(self, frame_id: int) -> bytes:
        """The candidate's overlay of a part where the two disagreed (KeyError if not kept)."""
        with self._lock:
            for disagreement, jpeg in self._disagreements:
                if disagreement.frame_id == frame_id:
                    return jpeg
        raise KeyError(frame_id)

    # ---- the candidate's thread --------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(OSError):  # a thread's own nice value on Linux; elsewhere as it is
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
        try:
            candidate = self._load()  # created on this thread, so ONNX Runtime's threads are low too
        except Exception as exc:
            with self._lock:
                self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._threshold = candidate.info.threshold
        while True:
            item = self._pending.get()
            if item is None or not self.running:
                return
            frame, active = item
            try:
                result = candidate.inspect(frame.image)
            except ValueError as exc:  # a frame the candidate cannot take: counted as skipped
                log.warning("shadow model %s skipped frame %s: %s", self.model_id, frame.frame_id, exc)
                with self._lock:
                    self._skipped += 1
                continue
            self._record(frame, active, result)
            if not self.running:  # done: nothing more to compare
                return

    def _record(self, frame: Frame, active: InspectionResult, candidate: InspectionResult) -> None:
        agreed = active.is_defect == candidate.is_defect
        jpeg = b"" if agreed else overlay_thumbnail(frame.image, candidate, THUMBNAIL_PX)
        with self._lock:
            self._compared += 1
            if agreed:
                self._agreed += 1
            else:
                self._candidate_ng += int(candidate.is_defect)
                self._candidate_ok += int(active.is_defect)
                disagreement = Disagreement(
                    frame_id=frame.frame_id,
                    captured_at=frame.captured_at,
                    active_verdict=_verdict(active.is_defect),
                    active_score=float(active.score),
                    active_threshold=float(active.threshold),
                    candidate_verdict=_verdict(candidate.is_defect),
                    candidate_score=float(candidate.score),
                    candidate_threshold=float(candidate.threshold),
                )
                self._disagreements = [*self._disagreements, (disagreement, jpeg)][-KEEP_DISAGREEMENTS:]
            if self._compared >= self._target and self._state == "running":
                self._state = "done"
