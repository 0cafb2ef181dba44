"""Teach-normal job bookkeeping (`device.teaching.TeachJobs`) over a real AlertStore: one job at a time,
progress, failures reported (never raised), completion callback, taught alerts remembered."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixtures_mqtt import wait_until

from device.alerts import AlertStore
from device.teaching import Learned, TeachBusyError, TeachJob, TeachJobs, TeachRequestError
from vision.teach import BeforeAfter, ProgressFn, TeachError, TeachReport


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


class GatedLearner:
    """Learns only when the test opens the gate; frames exist for every alert but `no_frame`."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.fail_with = fail_with
        self.no_frame: set[str] = set()
        self.learned: list[list[str]] = []

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


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "alerts.sqlite3")


def _false_alarms(store: AlertStore, count: int) -> list[str]:
    ids = []
    for index in range(count):
        alert: dict[str, Any] = {"alert_id": str(uuid.uuid4()), "ts": f"2026-01-01T00:00:{index:02d}Z"}
        store.add({**alert, "defect_class": "spot", "is_defect": True}, None)
        store.review(alert["alert_id"], "false_alarm", "", "op")
        ids.append(alert["alert_id"])
    return ids


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
