"""Teach the confirmed defects through the real running stack: the real `edgeinspect run` (runtime, the
default model with its per-position Gaussian head, simulated camera, Mosquitto, API), real HTTP.

An operator confirms a few NG alerts through the reviews API; an admin starts teach-defects; the job runs
on the box (ONNX Runtime only) from the archived frames and their true masks, and registers a candidate
with its before/after figures, which `GET /models` shows and which is not active until an admin activates it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EdgeStack, launch_edge_stack
from fixtures_mqtt import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONFIRMED = 6  # a fifth (1) is kept out of teaching to check the candidate on
GOOD_FRAMES = 12  # archived OK frames held back: classifier negatives, calibration, evaluation


@pytest.fixture
def stack(tmp_path: Path, gaussian_trained_model: Path, mosquitto: Any) -> Iterator[EdgeStack]:
    """The `edge_stack` fixture's stack, archiving half the OK parts so good frames are there to hold back."""
    overrides = {"archive": {"ok_sample_rate": 0.5}, "teach": {"max_good_images": 30}}
    with launch_edge_stack(
        tmp_path / "data", gaussian_trained_model, mosquitto.url, overrides=overrides
    ) as stack:
        yield stack


def test_confirmed_defects_become_an_inactive_candidate_with_figures(stack: EdgeStack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:

        def get(path: str, role: str = "viewer", **params: Any) -> Any:
            response = http.get(path, params=params, headers=stack.headers(role))
            assert response.status_code == 200, response.text
            return response.json()

        def enough_evidence() -> bool:
            alerts = get("/alerts", limit=50)["total"]
            return bool(
                alerts >= CONFIRMED and get("/archive", verdict="OK", limit=1)["total"] >= GOOD_FRAMES
            )

        wait_until(enough_evidence, timeout_s=180, what="NG alerts and archived OK frames")
        alerts = get("/alerts", limit=CONFIRMED)["items"]
        for alert in alerts:
            reviewed = http.post(
                f"/alerts/{alert['alert_id']}/review",
                json={"state": "confirmed", "comment": "real defect"},
                headers=stack.headers("operator"),
            )
            assert reviewed.status_code == 200, reviewed.text
        assert get("/alerts/reviews/summary")["confirmed"] == CONFIRMED

        for role in ("viewer", "operator"):  # as teach-normal: an admin's action
            assert http.post("/models/teach-defects", headers=stack.headers(role)).status_code == 403
        parent = get("/status")["model"]["id"]
        started = http.post("/models/teach-defects", headers=stack.headers("admin"))
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["kind"] == "defects" and len(job["alert_ids"]) == CONFIRMED - 1
        assert len(job["check_alert_ids"]) == 1 and job["skipped_alert_ids"] == []
        seen: set[float] = set()

        def finished() -> bool:
            job.update(get(f"/models/teach-defects/{job['job_id']}"))
            seen.add(job["progress"])
            return job["state"] in ("done", "failed")

        wait_until(finished, timeout_s=300, what="teach-defects job")
        assert job["state"] == "done", job
        report, candidate = job["report"], job["model_id"]
        assert report["defects_taught"] == CONFIRMED - 1 and report["detection_rate_check"] is not None
        assert report["defects_with_mask"] == CONFIRMED - 1  # the archive kept the camera's true masks
        assert report["good_images_evaluation"] >= GOOD_FRAMES // 3
        assert report["model_version"].endswith("-defects") and job["parent_model_id"] == parent

        # Registered with its figures; the line keeps the parent until an admin activates the candidate.
        models = {m["id"]: m for m in get("/models")}
        assert models[candidate]["teach_defects"] == report and models[candidate]["active"] is False
        assert models[candidate]["version"] == report["model_version"] and models[parent]["active"]
        assert get("/status")["model"]["id"] == parent
        assert get("/alerts/reviews/summary")["taught"] == 0  # nothing marked: teach again takes them all

        audit = get("/audit", "admin", limit=50)["items"]
        actions = {(e["action"], e["ok"]) for e in audit}
        assert {("teach_defects", True), ("teach_defects_done", True)} <= actions
