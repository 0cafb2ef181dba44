"""Teach the model from reviewed alerts: background jobs that build a candidate model version.

Two kinds of job, one at a time, through the same bookkeeping:

- `normal` ("this is normal"): the job reads the false alarms' archived frames, the archive's sampled OK
  frames (held back: calibration and before/after figures) and the confirmed defects' frames, and runs
  `vision.teach` on the active model.
- `defects` (teach the confirmed defects): the frames of the alerts reviewed `confirmed` (with the
  archive's true mask where it has one) train a supervised classifier on top of the model's per-position
  Gaussian head (`vision.teach_defects`); about a fifth of them are kept out of teaching (`check`), so the
  candidate's detection rate on them is a fair forecast. The good frames are the archive's sampled OK
  frames, as for `normal`. Nothing is marked as taught: teaching defects again takes every confirmed
  defect (the classifier's numbers are replaced, not added to).

Both run ONNX Runtime only (the box has no torch) and register the result as a new model version with its
figures attached. A job never activates it: that stays an admin's explicit `POST /models/{id}/activate`,
and `POST /models/rollback` undoes it.

The job bookkeeping (`TeachJobs`) is separate from the learning (`Learner`), so the API tests' fake
runtime runs the same jobs with its own in-memory learner.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field

from device.config import TeachSettings
from device.station.alerts import AlertStore
from device.station.archive import ImageArchive
from device.station.model_registry import ModelRegistry, sha256_bytes
from vision import onnx_proto
from vision.inspector import ModelFileError
from vision.teach import ProgressFn, TeachError, TeachOptions, TeachReport, teach_normal
from vision.teach_defects import DefectTeachOptions, DefectTeachReport, LabelledDefect, teach_defects
from vision.teach_gaussian import find_gaussian

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
TeachKind = Literal["normal", "defects"]
AnyTeachReport = TeachReport | DefectTeachReport
KEEP_JOBS = 20  # finished jobs remembered for GET /models/teach-*/{id} (the model keeps its figures)
CHECK_EVERY = 5  # teach-defects keeps every 5th confirmed defect (a fifth, 1 from 5 on) out, to check


class TeachJob(BaseModel):
    """One teach run (teach-normal or teach-defects), as the API shows it."""

    job_id: str
    kind: TeachKind = Field(
        "normal", description="normal: false alarms taught as normal; defects: confirmed defects taught."
    )
    state: JobState = "queued"
    progress: float = Field(0.0, ge=0.0, le=1.0)
    stage: str = "queued"
    requested_by: str
    alert_ids: list[str] = Field(
        description="The alerts taught: false alarms (normal) or confirmed defects (defects)."
    )
    check_alert_ids: list[str] = Field(
        default_factory=list,
        description="defects: confirmed defects kept out of teaching, to check the candidate on "
        "(`report.detection_rate_check`).",
    )
    skipped_alert_ids: list[str] = Field(
        default_factory=list, description="Alerts left out: their frame is not in the image archive."
    )
    created_at: str
    finished_at: str | None = None
    parent_model_id: str | None = None
    model_id: str | None = Field(None, description="The registered candidate (not active until activated).")
    report: AnyTeachReport | None = Field(
        None, description="Before/after figures: a TeachReport (normal) or a DefectTeachReport (defects)."
    )
    error: str | None = None


class TeachRequestError(ValueError):
    """The request cannot start a job in the present state (nothing left to teach, alerts that are not
    false alarms or whose frame is gone, more than `teach.max_examples`, a model that cannot be taught
    defects): a 409."""


class UnknownAlertsError(TeachRequestError):
    """Alert ids that are not in the history (never were, or pruned): a 404."""


class TeachBusyError(RuntimeError):
    """A job is already running (one at a time: it takes the box's spare CPU): a 409."""


class Learned(BaseModel):
    model_id: str
    parent_model_id: str | None
    report: AnyTeachReport


class Learner(Protocol):
    """What a job needs from the runtime: which alerts have frames, and the learning itself (one method
    per kind of job)."""

    def with_images(self, alert_ids: list[str]) -> tuple[list[str], list[str]]:
        """(alerts whose frame is archived, alerts whose frame is not)."""
        ...

    def learn(self, alert_ids: list[str], progress: ProgressFn) -> Learned:
        """Teach these false alarms as normal: build and register the candidate; TeachError (or
        ModelFileError) with the reason when it fails."""
        ...

    def defects_refusal(self) -> str | None:
        """Why the active model cannot be taught defects (e.g. it has no per-position Gaussian head), or
        None when it can."""
        ...

    def learn_defects(self, alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        """Teach these confirmed defects (`check_ids`: confirmed defects kept out, for the figures); build
        and register the candidate; TeachError (or ModelFileError) with the reason when it fails."""
        ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class TeachJobs:
    """Starts and tracks teach jobs (teach-normal and teach-defects), one at a time, each on its own
    thread."""

    def __init__(
        self, alert_store: AlertStore, learner: Learner, max_examples: int = 200, max_defects: int = 200
    ) -> None:
        self._alerts = alert_store
        self._learner = learner
        self._max_examples = max_examples
        self._max_defects = max_defects
        self._lock = threading.Lock()
        self._jobs: dict[str, TeachJob] = {}
        self._running: str | None = None

    def start(
        self, alert_ids: list[str] | None, actor: str, on_done: Callable[[TeachJob], None] | None = None
    ) -> TeachJob:
        """Teach-normal: check the request now (TeachRequestError, TeachBusyError) and start the job;
        `on_done` is called with the finished job (the API audits it)."""
        chosen, skipped = self._choose(alert_ids)
        return self._launch("normal", actor, chosen, [], skipped, on_done)

    def start_defects(self, actor: str, on_done: Callable[[TeachJob], None] | None = None) -> TeachJob:
        """Teach-defects: every alert reviewed `confirmed` (the newest `max_defects` with an archived
        frame), every `CHECK_EVERY`th of them kept out to check the candidate on. TeachRequestError when
        there is none or the active model cannot be taught defects, TeachBusyError while a job runs."""
        wanted = self._alerts.reviewed_ids("confirmed", limit=5 * self._max_defects)
        if not wanted:
            raise TeachRequestError("no alerts reviewed as confirmed defects: nothing to teach")
        found, skipped = self._learner.with_images(wanted)
        found = found[: self._max_defects]  # the newest with a frame
        if not found:
            raise TeachRequestError(
                f"none of the {len(wanted)} confirmed defects has its frame in the image archive any more"
            )
        refusal = self._learner.defects_refusal()
        if refusal is not None:
            raise TeachRequestError(refusal)
        taught, check = split_check(found)
        return self._launch("defects", actor, taught, check, skipped, on_done)

    def get(self, job_id: str) -> TeachJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.model_copy(deep=True)

    def wait(self, job_id: str, timeout_s: float) -> TeachJob | None:
        """The job once finished, or as it is at the timeout (benchmarks and scripts)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.state in ("done", "failed"):
                return job
            time.sleep(0.2)
        return self.get(job_id)

    # ---- internals -----------------------------------------------------------------------------------
    def _launch(
        self,
        kind: TeachKind,
        actor: str,
        alert_ids: list[str],
        check_ids: list[str],
        skipped: list[str],
        on_done: Callable[[TeachJob], None] | None,
    ) -> TeachJob:
        with self._lock:
            if self._running is not None:
                raise TeachBusyError(f"teach job {self._running} is still running; wait for it to finish")
            job = TeachJob(
                job_id=uuid.uuid4().hex[:16],
                kind=kind,
                requested_by=actor,
                alert_ids=alert_ids,
                check_alert_ids=check_ids,
                skipped_alert_ids=skipped,
                created_at=_now(),
            )
            self._jobs[job.job_id] = job
            self._running = job.job_id
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(job.job_id, on_done), name=f"teach-{kind}", daemon=True
        )
        thread.start()
        return job.model_copy()

    def _choose(self, alert_ids: list[str] | None) -> tuple[list[str], list[str]]:
        """The false alarms to teach and those skipped for lack of an archived frame."""
        if alert_ids is None:
            wanted = self._alerts.reviewed_ids(
                "false_alarm", untaught_only=True, limit=5 * self._max_examples
            )
            if not wanted:
                raise TeachRequestError("no reviewed false alarms left to teach (all are taught already)")
            found, skipped = self._learner.with_images(wanted)
            chosen = found[: self._max_examples]  # the newest with a frame
        else:
            wanted = list(dict.fromkeys(alert_ids))
            if len(wanted) > self._max_examples:
                raise TeachRequestError(f"{len(wanted)} alerts given; at most {self._max_examples} per job")
            self._check_false_alarms(wanted)
            chosen, skipped = self._learner.with_images(wanted)
            if skipped:
                raise TeachRequestError(
                    f"no archived frame for alert(s) {', '.join(skipped)} (not archived, or pruned)"
                )
        if not chosen:
            raise TeachRequestError(
                f"none of the {len(wanted)} false alarms has its frame in the image archive any more"
            )
        return chosen, skipped

    def _check_false_alarms(self, alert_ids: list[str]) -> None:
        alerts = {alert_id: self._alerts.get(alert_id) for alert_id in alert_ids}
        unknown = [alert_id for alert_id, alert in alerts.items() if alert is None]
        if unknown:
            raise UnknownAlertsError(f"no such alert(s): {', '.join(unknown)}")
        wrong = [
            a
            for a, alert in alerts.items()
            if ((alert or {}).get("review") or {}).get("state") != "false_alarm"
        ]
        if wrong:
            raise TeachRequestError(f"not reviewed as false alarms: {', '.join(wrong)}")

    def _update(self, job_id: str, **changes: object) -> TeachJob:
        with self._lock:
            job = self._jobs[job_id].model_copy(update=changes)
            self._jobs[job_id] = job
            return job

    def _run(self, job_id: str, on_done: Callable[[TeachJob], None] | None) -> None:
        job = self._update(job_id, state="running", stage="starting")

        def progress(fraction: float, stage: str) -> None:
            self._update(job_id, progress=round(fraction, 3), stage=stage)

        try:
            if job.kind == "defects":  # nothing marked: teaching defects again takes every one
                learned = self._learner.learn_defects(job.alert_ids, job.check_alert_ids, progress)
            else:
                learned = self._learner.learn(job.alert_ids, progress)
                self._alerts.mark_taught(job.alert_ids, learned.model_id)
            job = self._update(
                job_id,
                state="done",
                progress=1.0,
                stage="done: candidate registered, not active",
                model_id=learned.model_id,
                parent_model_id=learned.parent_model_id,
                report=learned.report,
                finished_at=_now(),
            )
        except Exception as exc:  # the job reports every failure; it must never take the runtime down
            known = isinstance(exc, TeachError | ModelFileError | ValueError)
            if not known:
                log.exception("teach job %s failed", job_id)
            message = str(exc) if known else f"{type(exc).__name__}: {exc}"
            job = self._update(job_id, state="failed", stage="failed", error=message, finished_at=_now())
        finally:
            with self._lock:
                self._running = None
        if on_done is not None:
            try:
                on_done(job.model_copy(deep=True))
            except Exception:
                log.exception("teach job %s: completion callback failed", job_id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in finished[: max(0, len(self._jobs) - KEEP_JOBS)]:
            del self._jobs[job.job_id]


def split_check(alert_ids: list[str]) -> tuple[list[str], list[str]]:
    """(taught, check): every `CHECK_EVERY`th alert kept out of teaching, so a fifth of them (at least one
    from five on, none below), spread over the history rather than the newest or the oldest."""
    check = alert_ids[CHECK_EVERY - 1 :: CHECK_EVERY]
    kept = set(check)
    return [a for a in alert_ids if a not in kept], check


class ArchiveLearner:
    """The real learner: frames from the image archive, the active model from the registry."""

    def __init__(
        self,
        alert_store: AlertStore,
        archive: ImageArchive,
        registry: ModelRegistry,
        active_model_id: Callable[[], str | None],
        settings: TeachSettings,
        target_false_reject_rate: float,
    ) -> None:
        self._alerts = alert_store
        self._archive = archive
        self._registry = registry
        self._active_model_id = active_model_id
        self._settings = settings
        self._target_frr = target_false_reject_rate
        self._refusals: dict[str, str | None] = {}  # model id -> why it cannot be taught defects

    def with_images(self, alert_ids: list[str]) -> tuple[list[str], list[str]]:
        found: list[str] = []
        missing: list[str] = []
        for alert_id in alert_ids:
            item = self._archive.find_by_alert(alert_id)
            (found if item is not None and item.image_path.is_file() else missing).append(alert_id)
        return found, missing

    def learn(self, alert_ids: list[str], progress: ProgressFn) -> Learned:
        parent_id = self._active_model_id()
        if parent_id is None:
            raise TeachError("no active model to teach")
        parent = self._parent_bytes(parent_id)
        progress(0.0, "reading archived frames")
        taught = self._frames_of(alert_ids)
        good = self._good_frames()
        defects = self._frames_of(
            self._alerts.reviewed_ids("confirmed", limit=self._settings.max_defect_images)
        )
        options = TeachOptions(
            target_false_reject_rate=self._target_frr,
            min_good_images=self._settings.min_good_images,
            max_new_entries=self._settings.max_new_entries,
            threads=self._settings.threads,
        )
        result = teach_normal(parent, taught, good, defects, options, progress)
        filename = f"taught-{parent_id}.onnx"
        entry = self._registry.register(
            result.model_bytes, filename, sha256_bytes(result.model_bytes), teach=result.report
        )
        return Learned(model_id=entry.id, parent_model_id=parent_id, report=result.report)

    def defects_refusal(self) -> str | None:
        parent_id = self._active_model_id()
        if parent_id is None:
            return "no active model to teach"
        if parent_id not in self._refusals:
            self._refusals[parent_id] = self._why_not_teachable(parent_id)
        return self._refusals[parent_id]

    def _why_not_teachable(self, parent_id: str) -> str | None:
        """Why the model cannot be taught defects, or None (cached per model id: files do not change)."""
        try:
            model = onnx_proto.load_model(self._registry.path_of(parent_id).read_bytes())
            if find_gaussian(model) is not None:
                return None
        except (OSError, ValueError) as exc:  # unreadable, or a Gaussian head teaching does not support
            return f"the active model {parent_id} cannot be taught defects: {exc}"
        return (
            f"the active model {parent_id} cannot be taught defects: that needs a per-position Gaussian "
            "head (model.head: gaussian, or auto on parts in a fixture); this model has a memory bank"
        )

    def learn_defects(self, alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        parent_id = self._active_model_id()
        if parent_id is None:
            raise TeachError("no active model to teach")
        parent = self._parent_bytes(parent_id)
        progress(0.0, "reading archived frames")
        defects = self._labelled_defects(alert_ids)
        check = self._frames_of(check_ids)
        good = self._good_frames()
        options = DefectTeachOptions(
            target_false_reject_rate=self._target_frr, threads=self._settings.threads
        )
        result = teach_defects(parent, defects, good, check, options, progress)
        filename = f"defects-{parent_id}.onnx"
        entry = self._registry.register(
            result.model_bytes, filename, sha256_bytes(result.model_bytes), teach_defects=result.report
        )
        return Learned(model_id=entry.id, parent_model_id=parent_id, report=result.report)

    def _labelled_defects(self, alert_ids: list[str]) -> list[LabelledDefect]:
        """Each confirmed defect's frame, with the archive's true mask where it kept one."""
        defects = []
        for alert_id in alert_ids:
            item = self._archive.find_by_alert(alert_id)
            image = _read_bgr(item.image_path) if item is not None else None
            if item is None or image is None:
                continue
            mask = _read_mask(item.mask_path) if item.mask_path is not None else None
            defects.append(LabelledDefect(image=image, mask=mask))
        return defects

    def _parent_bytes(self, model_id: str) -> bytes:
        """The active model's file, refused if it changed on disk since it was registered."""
        data = self._registry.path_of(model_id).read_bytes()
        expected = self._registry.get(model_id).sha256
        if sha256_bytes(data) != expected:
            raise ModelFileError(f"model {model_id} changed on disk since it was registered; not teaching it")
        return data

    def _frames_of(self, alert_ids: list[str]) -> list[np.ndarray]:
        frames = []
        for alert_id in alert_ids:
            item = self._archive.find_by_alert(alert_id)
            image = _read_bgr(item.image_path) if item is not None else None
            if image is not None:
                frames.append(image)
        return frames

    def _good_frames(self) -> list[np.ndarray]:
        """The newest sampled OK frames (never taught, never trained on: held back)."""
        _, items = self._archive.query(verdict="OK", limit=self._settings.max_good_images)
        frames = [_read_bgr(item.image_path) for item in items]
        return [frame for frame in frames if frame is not None]


def _read_bgr(path: Path) -> np.ndarray | None:
    """An archived JPEG as BGR, or None if it was pruned meanwhile or does not decode."""
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if isinstance(image, np.ndarray) else None


def _read_mask(path: Path) -> np.ndarray | None:
    """An archived true mask (PNG) as a grey image, or None if it is gone or does not decode."""
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError:
        return None
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return mask if isinstance(mask, np.ndarray) else None
