"""The inference thread: takes frames from the capture queue, judges them, and hands defects on.

Order matters for the no-loss promise: an alert is written to the outbox (durable) *before* anything else
learns of it, and the latency we report ends there. With escalation (`decide`), an uncertain part may be
held for a plant verifier's answer, never longer than the escalation deadline, before that happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from device.station.camera.base import Frame
from device.station.capture import FrameQueue
from device.station.escalation.decision import EDGE_DECISION, Decision
from device.station.metrics import RuntimeMetrics
from vision.inspector import Inspector
from vision.types import InspectionResult

log = logging.getLogger(__name__)


@dataclass
class Judgement:
    frame: Frame
    result: InspectionResult | None  # None while inspection is paused
    latency_ms: float
    seq: int


@dataclass(frozen=True)
class DecisionKnobs:
    """What judges one frame: the model and the knobs of the recipe it was captured under. The runtime
    replaces it whole on a change (no torn reads), and keeps the previous recipe's until its frames are
    through, so a recipe switch lands between two frames."""

    threshold: float
    min_area: int
    max_boxes: int
    judging: bool
    inspector: Inspector | None = None
    recipe: str | None = None


class InspectionWorker:
    def __init__(
        self,
        queue: FrameQueue,
        knobs_for: Callable[[Frame], DecisionKnobs],
        on_defect: Callable[[Frame, InspectionResult, Decision], None],
        metrics: RuntimeMetrics,
        on_judged: Callable[[Frame, InspectionResult, Decision], None] | None = None,
        decide: Callable[[Frame, InspectionResult], tuple[InspectionResult, Decision]] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        """`on_frame` sees every frame taken from the queue, judged or not (a product capture); it must
        not block."""
        self._queue = queue
        self._knobs_for = knobs_for
        self._on_defect = on_defect
        self._metrics = metrics
        self._on_judged = on_judged
        self._decide = decide
        self._on_frame = on_frame
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inspection", daemon=True)
        self.latest: Judgement | None = None
        self.seq = 0
        self.last_judged_mono: float | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # also safe when start() never ran (a runtime that failed to start)
            self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._queue.get(timeout=0.2)
            if frame is None:
                continue
            try:
                self._judge(frame)
            except Exception as exc:  # a bug must not stop the line; it is counted and shown in health
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("inspection failed on frame %s", frame.frame_id)
                self._metrics.record_corrupt()

    def _judge(self, frame: Frame) -> None:
        if self._on_frame is not None:
            self._on_frame(frame)
        knobs = self._knobs_for(frame)
        self.seq += 1
        if not knobs.judging or knobs.inspector is None:
            self.latest = Judgement(frame, None, 0.0, self.seq)
            return
        try:
            result = knobs.inspector.inspect(
                frame.image, threshold=knobs.threshold, min_area=knobs.min_area, max_boxes=knobs.max_boxes
            )
        except ValueError as exc:  # corrupt / wrong-shaped frame
            self.last_error = f"frame {frame.frame_id}: {exc}"
            self._metrics.record_corrupt()
            return
        decision = EDGE_DECISION
        if self._decide is not None:  # bounded by the escalation deadline
            result, decision = self._decide(frame, result)
        if result.is_defect:
            self._on_defect(frame, result, decision)
        latency_ms = (time.monotonic() - frame.captured_mono) * 1000.0
        self._metrics.record_frame(latency_ms, result.inference_ms, result.is_defect)
        self.last_judged_mono = time.monotonic()
        self.latest = Judgement(frame, result, latency_ms, self.seq)
        if self._on_judged is not None:  # per-part outputs, after the alert is durable
            self._on_judged(frame, result, decision)
