"""Teach-defects over the real app and the FakeRuntime's real AlertStore, archive and jobs: confirmed
defects become an inactive candidate with before/after figures; refusals are 409s with the reason; both the
request and the outcome are audited."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures_mqtt import wait_until
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime

from device.station.teaching import Learned
from vision.teach import ProgressFn, TeachError


def _alerts(runtime: FakeRuntime, count: int) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    while len(alerts) < count:
        alert = runtime.advance()
        if alert is not None:
            alerts.append(alert)
    return alerts


def _review(client: TestClient, alert_id: str, state: str) -> None:
    response = client.post(f"/alerts/{alert_id}/review", json={"state": state}, headers=headers("operator"))
    assert response.status_code == 200, response.text


def _audit(client: TestClient, action: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/audit?limit=100", headers=headers("admin")).json()["items"]
    return [e for e in items if e["action"] == action]


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def done() -> bool:
        job.update(client.get(f"/models/teach-defects/{job_id}", headers=headers("viewer")).json())
        return job["state"] in ("done", "failed")

    wait_until(done, timeout_s=20, what="teach-defects job finished")
    return job


def test_teach_defects_builds_an_inactive_candidate_with_figures(
    client: TestClient, runtime: FakeRuntime
) -> None:
    alerts = _alerts(runtime, 7)
    confirmed = [a["alert_id"] for a in alerts[:6]]
    for alert_id in confirmed:
        _review(client, alert_id, "confirmed")
    _review(client, alerts[6]["alert_id"], "false_alarm")
    for role in ("viewer", "operator"):
        assert client.post("/models/teach-defects", headers=headers(role)).status_code == 403
    started = client.post("/models/teach-defects", headers=headers("admin"))
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["kind"] == "defects" and len(body["check_alert_ids"]) == 1 and len(body["alert_ids"]) == 5
    assert sorted(body["alert_ids"] + body["check_alert_ids"]) == sorted(confirmed)

    job = _finished(client, body["job_id"])
    assert job["state"] == "done" and job["progress"] == 1.0, job
    report = job["report"]
    assert report["defects_taught"] == 5 and report["detection_rate_check"] == {"before": 1.0, "after": 1.0}
    assert {"threshold", "false_reject_rate_good", "detection_rate_taught"} <= set(report)
    models = {m["id"]: m for m in client.get("/models", headers=headers("viewer")).json()}
    candidate = models[job["model_id"]]
    assert candidate["active"] is False and candidate["teach_defects"] == report
    assert candidate["teach"] is None and models[job["parent_model_id"]]["active"] is True

    # Audited: the request and its outcome, with the figures that matter.
    assert [e["ok"] for e in _audit(client, "teach_defects")] == [True]
    assert _audit(client, "teach_defects")[0]["new_value"]["check_alert_ids"] == body["check_alert_ids"]
    (outcome,) = _audit(client, "teach_defects_done")
    assert outcome["ok"] and outcome["new_value"]["model_id"] == job["model_id"]
    assert outcome["new_value"]["figures"]["detection_rate_check"] == report["detection_rate_check"]

    # Nothing is marked taught (the false alarm is still there to teach as normal); teaching defects
    # again takes every confirmed defect again. A defects job is not a teach-normal job.
    assert client.get("/alerts/reviews/summary", headers=headers("viewer")).json()["taught"] == 0
    assert client.get(f"/models/teach-normal/{job['job_id']}", headers=headers("viewer")).status_code == 404
    again = client.post("/models/teach-defects", headers=headers("admin"))
    assert again.status_code == 202 and sorted(again.json()["alert_ids"]) == sorted(body["alert_ids"])
    assert _finished(client, again.json()["job_id"])["state"] == "done"
    normal = client.post("/models/teach-normal", json={}, headers=headers("admin"))
    assert normal.status_code == 202 and normal.json()["alert_ids"] == [alerts[6]["alert_id"]]


def test_teach_defects_refusals_are_409s_with_the_reason_and_audited(
    client: TestClient, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = _alerts(runtime, 2)
    _review(client, alerts[0]["alert_id"], "false_alarm")
    nothing = client.post("/models/teach-defects", headers=headers("admin"))
    assert nothing.status_code == 409 and "nothing to teach" in nothing.json()["detail"]

    _review(client, alerts[1]["alert_id"], "confirmed")
    runtime.learner.gaussian_head = False
    no_head = client.post("/models/teach-defects", headers=headers("admin"))
    assert no_head.status_code == 409 and "per-position Gaussian head" in no_head.json()["detail"]
    runtime.learner.gaussian_head = True

    # Busy: a job of either kind holds the one slot.
    gate = threading.Event()
    learn = runtime.learner.learn_defects

    def gated(alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        assert gate.wait(10)
        return learn(alert_ids, check_ids, progress)

    monkeypatch.setattr(runtime.learner, "learn_defects", gated)
    first = client.post("/models/teach-defects", headers=headers("admin"))
    assert first.status_code == 202
    busy = client.post("/models/teach-defects", headers=headers("admin"))
    assert busy.status_code == 409 and "still running" in busy.json()["detail"]
    busy_normal = client.post("/models/teach-normal", json={}, headers=headers("admin"))
    assert busy_normal.status_code == 409 and "still running" in busy_normal.json()["detail"]
    running = client.get(f"/models/teach-defects/{first.json()['job_id']}", headers=headers("viewer"))
    assert running.json()["state"] in ("queued", "running")
    gate.set()
    assert _finished(client, first.json()["job_id"])["state"] == "done"

    assert [e["ok"] for e in _audit(client, "teach_defects")] == [False, True, False, False]  # newest first
    reasons = [e["message"] for e in reversed(_audit(client, "teach_defects")) if not e["ok"]]
    assert (
        "nothing to teach" in reasons[0] and "Gaussian head" in reasons[1] and "still running" in reasons[2]
    )
    assert client.get("/models/teach-defects/abc123", headers=headers("viewer")).status_code == 404
    assert client.get("/models/teach-defects/abc123").status_code == 401
    assert client.get("/models/teach-defects/not..an..id", headers=headers("viewer")).status_code == 422


def test_a_failed_job_reports_why_and_is_audited(
    client: TestClient, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(alert_ids: list[str], check_ids: list[str], progress: ProgressFn) -> Learned:
        raise TeachError("need at least 6 held-back good images, got 2")

    monkeypatch.setattr(runtime.learner, "learn_defects", fails)
    (alert,) = _alerts(runtime, 1)
    _review(client, alert["alert_id"], "confirmed")
    started = client.post("/models/teach-defects", headers=headers("admin"))
    assert started.status_code == 202, started.text
    job = _finished(client, started.json()["job_id"])
    assert job["state"] == "failed" and job["model_id"] is None and job["report"] is None
    assert job["error"] == "need at least 6 held-back good images, got 2"
    wait_until(lambda: bool(_audit(client, "teach_defects_done")), what="outcome audited")
    (outcome,) = _audit(client, "teach_defects_done")
    assert not outcome["ok"] and outcome["message"] == job["error"]
    assert len(client.get("/models", headers=headers("viewer")).json()) == 1  # nothing registered
