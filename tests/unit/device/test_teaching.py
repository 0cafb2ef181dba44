"""Teach job bookkeeping (`device.station.teaching.TeachJobs`) over a real AlertStore: one job at a time
(either
kind), progress, failures reported (never raised), completion callback, taught false alarms remembered;
teach-defects takes every confirmed defect and keeps a fifth out to check. The real `ArchiveLearner` teaches
defects from a real archive onto a real Gaussian-head model (`gaussian_trained_model`)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures_mqtt import wait_until

from device.config import ArchiveSettings, TeachSettings
from device.station.alerts import AlertStore, ReviewState
from device.station.archive import ArchiveRecord, ImageArchive
from device.station.model_registry import ModelRegistry
from device.station.teaching import (
    ArchiveLearner,
    Learned,
    TeachBusyError,
    TeachJob,
    TeachJobs,
    TeachRequestError,
    split_check,
)
from vision import onnx_proto
from vision.data.synthetic import LineSimulator
from vision.inspector import Inspector
from vision.teach import BeforeAfter, ProgressFn, TeachError, TeachReport
from vision.teach_defects import DefectTeachReport
from vision.teach_gaussian import BASIS


def _report(taught: int) -> TeachReport:
    half = BeforeAfter(before=1.0, after=0.0)
    return TeachReport(
        parent_version="1",
        model_version="2",
        taught_examples=taught,
        bank_entries_added=taught,
        bank_size_before=10,
        bank_size_after=10 + taught,
        uncovered_patches=0,
        good_images_calibration=0,
        good_images_evaluation=0,
        confirmed_defects=0,
        threshold=BeforeAfter(before=2.0, after=2.0),
        threshold_recalibrated=False,
        false_reject_rate_good=None,
        false_reject_rate_taught=half,
        defect_auroc=None,
        defect_detection_rate=None,
        notes=[],
    )


def _defects_report(taught: int, check: int) -> DefectTeachReport:
    caught = BeforeAfter(before=0.0, after=1.0)
    return DefectTeachReport(
        parent_version="1",
        model_version="2-defects",
        defects_taught=taught,
        defects_with_mask=0,
        positive_patches=taught,
        negative_patches=100,
        good_images_calibration=2,
        good_images_evaluation=2,
        threshold=BeforeAfter(before=2.0, after=2.1),
        false_reject_rate_good=BeforeAfter(before=0.0, after=0.0),
        detection_rate_taught=caught,
        detection_rate_check=caught if check else None,
        notes=[],
    )


class GatedLearner:
    """Learns only when the test opens the gate; frames exist for every alert but `no_frame`."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.fail_with = fail_with
        self.no_frame: set[str] = set()
        self.learned: list[list[str]] = []
        self.learned_defects: list[tuple[list[str], list[str]]] = []
        self.refusal: str | None = None

    def with_images(self, alert_ids: list[str]) -> tuple[list[str], list[str]]:
        return [a for a in alert_ids if a not in self.no_frame], [a for a in alert_ids if a in self.no_frame]

    def learn(self, alert_ids: list[str], progress: ProgressFn) -> Learned:
        progress(0.5, "half way")
        assert self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        self.learned.append(alert_ids)
        return Learned(
            model_id=f"m-{len(self.learned)}", parent_model_id="m-0", report=_report(len(alert_ids))
        )

    def defects_refusal(self) -> str | None:
        return self.refusal

    def learn_defects(self, alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        progress(0.5, "fitting the classifier")
        assert self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        self.learned_defects.append((alert_ids, check_ids))
        report = _defects_report(len(alert_ids), len(check_ids))
        return Learned(model_id=f"d-{len(self.learned_defects)}", parent_model_id="m-0", report=report)


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "alerts.sqlite3")


def _reviewed(store: AlertStore, count: int, state: ReviewState) -> list[str]:
    ids = []
    for index in range(count):
        alert: dict[str, Any] = {"alert_id": str(uuid.uuid4()), "ts": f"2026-01-01T00:00:{index:02d}Z"}
        store.add({**alert, "defect_class": "spot", "is_defect": True}, None)
        store.review(alert["alert_id"], state, "", "op")
        ids.append(alert["alert_id"])
    return ids


def _false_alarms(store: AlertStore, count: int) -> list[str]:
    return _reviewed(store, count, "false_alarm")


def _state(jobs: TeachJobs, job_id: str) -> TeachJob:
    job = jobs.get(job_id)
    assert job is not None
    return job


def test_one_job_at_a_time_with_progress_and_a_callback(store: AlertStore) -> None:
    ids = _false_alarms(store, 3)
    learner = GatedLearner()
    jobs = TeachJobs(store, learner)
    finished: list[TeachJob] = []
    job = jobs.start(None, "admin", on_done=finished.append)
    assert sorted(job.alert_ids) == sorted(ids)
    wait_until(lambda: _state(jobs, job.job_id).stage == "half way", what="progress reported")
    assert _state(jobs, job.job_id).progress == 0.5 and _state(jobs, job.job_id).state == "running"
    with pytest.raises(TeachBusyError, match="still running"):
        jobs.start(None, "admin")
    learner.gate.set()
    wait_until(lambda: _state(jobs, job.job_id).state == "done", what="job done")
    done = _state(jobs, job.job_id)
    assert done.model_id == "m-1" and done.report is not None and done.finished_at is not None
    wait_until(lambda: len(finished) == 1, what="callback")
    assert finished[0].model_id == "m-1"
    assert store.reviewed_ids("false_alarm", untaught_only=True) == []
    with pytest.raises(TeachRequestError, match="left to teach"):
        jobs.start(None, "admin")


def test_a_failing_job_reports_why_and_frees_the_slot(store: AlertStore) -> None:
    ids = _false_alarms(store, 2)
    learner = GatedLearner(fail_with=TeachError("need at least 2 held-back good images, got 0"))
    learner.gate.set()
    jobs = TeachJobs(store, learner)
    job = jobs.start(ids[:1], "admin")
    wait_until(lambda: _state(jobs, job.job_id).state == "failed", what="job failed")
    assert "held-back good images" in (_state(jobs, job.job_id).error or "")
    assert store.reviewed_ids("false_alarm", untaught_only=True) == list(reversed(ids))  # nothing taught
    learner.fail_with = None
    second = jobs.start(ids, "admin")
    wait_until(lambda: _state(jobs, second.job_id).state == "done", what="second job done")


def test_requests_are_checked_before_a_job_starts(store: AlertStore) -> None:
    ids = _false_alarms(store, 3)
    learner = GatedLearner()
    jobs = TeachJobs(store, learner, max_examples=2)
    with pytest.raises(TeachRequestError, match="at most 2 per job"):
        jobs.start(ids, "admin")
    learner.no_frame = {ids[0]}
    with pytest.raises(TeachRequestError, match=f"no archived frame for alert\\(s\\) {ids[0]}"):
        jobs.start(ids[:2], "admin")
    learner.gate.set()
    learner.no_frame = {ids[2]}
    job = jobs.start(None, "admin")  # the default skips the frameless one and says so
    assert job.skipped_alert_ids == [ids[2]] and job.alert_ids == [ids[1], ids[0]]
    assert jobs.get("unknown") is None


# ---- teach-defects -----------------------------------------------------------------------------------
def test_split_check_keeps_every_fifth_out() -> None:
    ids = [str(i) for i in range(12)]
    assert split_check(ids[:4]) == (ids[:4], [])  # too few to spare one
    assert split_check(ids[:5]) == (ids[:4], ["4"])
    taught, check = split_check(ids)
    assert check == ["4", "9"] and taught == [i for i in ids if i not in check]


def test_teach_defects_takes_every_confirmed_defect_and_marks_nothing(store: AlertStore) -> None:
    false_alarms = _false_alarms(store, 2)
    confirmed = list(reversed(_reviewed(store, 7, "confirmed")))  # newest first, as the job takes them
    learner = GatedLearner()
    learner.no_frame = {confirmed[1]}
    jobs = TeachJobs(store, learner, max_defects=100)
    finished: list[TeachJob] = []
    job = jobs.start_defects("admin", on_done=finished.append)
    with_frame = [a for a in confirmed if a != confirmed[1]]
    assert job.kind == "defects" and job.skipped_alert_ids == [confirmed[1]]
    assert job.check_alert_ids == [with_frame[4]] and job.alert_ids == [
        a for a in with_frame if a != with_frame[4]
    ]
    wait_until(lambda: _state(jobs, job.job_id).stage == "fitting the classifier", what="progress reported")
    with pytest.raises(TeachBusyError, match="still running"):  # one job at a time, whichever kind
        jobs.start(None, "admin")
    with pytest.raises(TeachBusyError):
        jobs.start_defects("admin")
    learner.gate.set()
    wait_until(lambda: _state(jobs, job.job_id).state == "done", what="job done")
    done = _state(jobs, job.job_id)
    assert done.model_id == "d-1" and isinstance(done.report, DefectTeachReport)
    assert done.report.detection_rate_check is not None
    wait_until(lambda: len(finished) == 1, what="callback")
    assert learner.learned_defects == [(job.alert_ids, job.check_alert_ids)] and learner.learned == []
    # Nothing marked: the false alarms are still there to teach as normal, the defects to teach again.
    assert store.review_counts()["taught"] == 0
    assert store.reviewed_ids("false_alarm", untaught_only=True) == list(reversed(false_alarms))
    again = jobs.start_defects("admin")
    assert again.alert_ids == job.alert_ids
    wait_until(lambda: _state(jobs, again.job_id).state == "done", what="second job done")
    normal = jobs.start(None, "admin")
    assert normal.kind == "normal" and sorted(normal.alert_ids) == sorted(false_alarms)


def test_teach_defects_refusals_and_failures(store: AlertStore) -> None:
    learner = GatedLearner(fail_with=TeachError("need at least 6 held-back good images, got 2"))
    learner.gate.set()
    jobs = TeachJobs(store, learner, max_defects=3)
    _false_alarms(store, 1)
    with pytest.raises(TeachRequestError, match="no alerts reviewed as confirmed defects"):
        jobs.start_defects("admin")
    confirmed = list(reversed(_reviewed(store, 5, "confirmed")))
    learner.no_frame = set(confirmed)
    with pytest.raises(TeachRequestError, match="none of the 5 confirmed defects has its frame"):
        jobs.start_defects("admin")
    learner.no_frame = set()
    learner.refusal = "needs a per-position Gaussian head"
    with pytest.raises(TeachRequestError, match="Gaussian head"):
        jobs.start_defects("admin")
    learner.refusal = None
    job = jobs.start_defects("admin")
    assert job.alert_ids == confirmed[:3] and job.check_alert_ids == []  # the newest 3: too few to check
    wait_until(lambda: _state(jobs, job.job_id).state == "failed", what="job failed")
    assert "held-back good images" in (_state(jobs, job.job_id).error or "")
    assert _state(jobs, job.job_id).model_id is None


# ---- the real learner: archive frames (with true masks) onto a real Gaussian-head model ------------------
CATEGORY = "bracket"  # the model fixtures' product


def _parts(seed: int, count: int, defects: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
    simulator = LineSimulator(CATEGORY, seed=seed, defect_rate=1.0 if defects else 0.0)
    parts = []
    for _ in range(count):
        part = simulator.next_part()
        image = cv2.cvtColor(part.image, cv2.COLOR_RGB2BGR)
        parts.append((image, part.mask if defects else None))
    return parts


def _archive_part(
    archive: ImageArchive, index: int, image: np.ndarray, mask: np.ndarray | None, alert_id: str | None
) -> None:
    archive.store(
        ArchiveRecord(
            captured_at=1_767_225_600.0 + index,
            frame_id=index,
            image=image,
            verdict="NG" if alert_id else "OK",
            score=3.0 if alert_id else 0.2,
            threshold=1.0,
            defect_class="spot" if alert_id else None,
            alert_id=alert_id,
            mask=mask,
        )
    )


def test_archive_learner_teaches_confirmed_defects_into_an_inactive_candidate(
    tmp_path: Path, store: AlertStore, gaussian_trained_model: Path
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    parent = registry.register_file(gaussian_trained_model)
    registry.mark_active(parent.id)
    archive = ImageArchive(ArchiveSettings(path=str(tmp_path / "archive"), ok_sample_rate=1.0))
    for index, (image, _) in enumerate(_parts(11, 12, defects=False)):
        _archive_part(archive, index, image, None, None)
    confirmed = []
    for index, (image, mask) in enumerate(_parts(12, 6, defects=True)):
        alert_id = f"defect-{index}"
        store.add(
            {
                "alert_id": alert_id,
                "ts": f"2026-01-01T00:01:{index:02d}Z",
                "defect_class": "spot",
                "is_defect": True,
            },
            None,
        )
        store.review(alert_id, "confirmed", "", "op")
        _archive_part(archive, 100 + index, image, mask if index % 2 == 0 else None, alert_id)
        confirmed.append(alert_id)
    settings = TeachSettings(threads=1)
    learner = ArchiveLearner(store, archive, registry, lambda: registry.active_id, settings, 0.05)
    assert learner.defects_refusal() is None
    jobs = TeachJobs(store, learner)
    job = jobs.start_defects("admin")
    assert len(job.alert_ids) == 5 and len(job.check_alert_ids) == 1
    wait_until(lambda: _state(jobs, job.job_id).state in ("done", "failed"), timeout_s=120, what="job")
    done = _state(jobs, job.job_id)
    assert done.state == "done", done.error
    report = done.report
    assert isinstance(report, DefectTeachReport)
    assert report.defects_taught == 5 and report.detection_rate_check is not None
    taught_with_mask = sum(1 for a in job.alert_ids if int(a.split("-")[1]) % 2 == 0)
    assert report.defects_with_mask == taught_with_mask  # the archive's true masks were read
    entries = {entry.id: entry for entry in registry.list()}
    candidate = entries[done.model_id or ""]
    assert candidate.teach_defects == report and candidate.teach is None and not candidate.active
    assert registry.active_id == parent.id and done.parent_model_id == parent.id
    assert Inspector(registry.path_of(candidate.id), threads=1).info.version == report.model_version
    reloaded = ModelRegistry(tmp_path / "models").get(candidate.id)  # the figures survive a restart
    assert reloaded.teach_defects == report
    archive.close()


def test_archive_learner_refuses_a_model_without_a_gaussian_head(
    tmp_path: Path, store: AlertStore, gaussian_trained_model: Path
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    model = onnx_proto.load_model(gaussian_trained_model.read_bytes())
    for tensor in model.graph.initializer:  # as a memory-bank model has: no position Gaussians
        if tensor.name == BASIS:
            tensor.name = "memory_bank.bank"
    registry.path_of("bank-model").write_bytes(model.SerializeToString())
    archive = ImageArchive(ArchiveSettings(path=str(tmp_path / "archive")))
    active: list[str | None] = [None]
    learner = ArchiveLearner(store, archive, registry, lambda: active[0], TeachSettings(), 0.05)
    assert learner.defects_refusal() == "no active model to teach"
    active[0] = "bank-model"
    refusal = learner.defects_refusal() or ""
    assert "bank-model" in refusal and "per-position Gaussian head" in refusal
    _archive_part(archive, 0, np.zeros((64, 64, 3), np.uint8), None, "defect-0")
    store.add(
        {"alert_id": "defect-0", "ts": "2026-01-01T00:00:00Z", "defect_class": "spot", "is_defect": True},
        None,
    )
    store.review("defect-0", "confirmed", "", "op")
    with pytest.raises(TeachRequestError, match="per-position Gaussian head"):
        TeachJobs(store, learner).start_defects("admin")
    archive.close()
