"""Alert review and teach-normal over the real app and the FakeRuntime's real AlertStore, archive and jobs."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from fixtures_mqtt import wait_until
from unit.app.api_helpers import KEYS, headers
from unit.app.fake_runtime import FakeRuntime

from app.api.main import create_app
from app.api.security import KeyStore
from app.settings import Settings
from device.station.alerts import iso_utc


def _alerts(runtime: FakeRuntime, count: int) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    while len(alerts) < count:
        alert = runtime.advance()
        if alert is not None:
            alerts.append(alert)
    return alerts


def _review(client: TestClient, alert_id: str, state: str, comment: str = "", role: str = "operator") -> Any:
    body = {"state": state, "comment": comment}
    return client.post(f"/alerts/{alert_id}/review", json=body, headers=headers(role))


def _audit(client: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/audit?limit=100", headers=headers("admin")).json()["items"]
    return items


def test_operator_reviews_and_a_re_review_replaces_and_is_audited(
    client: TestClient, runtime: FakeRuntime
) -> None:
    (alert,) = _alerts(runtime, 1)
    first = _review(client, alert["alert_id"], "false_alarm", "label on the plate")
    assert first.status_code == 200, first.text
    assert first.json()["review"]["state"] == "false_alarm" and first.json()["previous"] is None
    second = _review(client, alert["alert_id"], "confirmed", "no: a scratch under the label")
    assert second.json()["previous"]["comment"] == "label on the plate"
    item = client.get("/alerts", headers=headers("viewer")).json()["items"][0]
    assert item["review"]["state"] == "confirmed" and item["review"]["reviewer"] == "operator"
    entries = [e for e in _audit(client) if e["action"] == "review_alert"]
    assert len(entries) == 2 and all(e["ok"] for e in entries)
    assert entries[0]["old_value"]["state"] == "false_alarm"
    assert entries[0]["new_value"]["state"] == "confirmed"


def test_review_refusals(client: TestClient, runtime: FakeRuntime) -> None:
    (alert,) = _alerts(runtime, 1)
    alert_id = alert["alert_id"]
    assert _review(client, alert_id, "confirmed", role="viewer").status_code == 403
    missing = _review(client, "no-such-alert", "confirmed")
    assert missing.status_code == 404 and "no-such-alert" in missing.json()["detail"]
    assert [e["ok"] for e in _audit(client) if e["action"] == "review_alert"] == [False]
    for body in (
        {"state": "maybe"},
        {"state": "confirmed", "comment": "x" * 501},
        {"state": "confirmed", "comment": "bell\u0007"},
        {"state": "confirmed", "colour": "red"},
        {"comment": "no state"},
    ):
        response = client.post(f"/alerts/{alert_id}/review", json=body, headers=headers("operator"))
        assert response.status_code == 422, body
    assert client.get("/alerts", headers=headers("viewer")).json()["items"][0]["review"] is None


def test_filter_summary_metrics_and_csv_export(client: TestClient, runtime: FakeRuntime) -> None:
    alerts = _alerts(runtime, 3)
    _review(client, alerts[0]["alert_id"], "confirmed", '=HYPERLINK("http://x")')
    _review(client, alerts[1]["alert_id"], "false_alarm", "sticker")
    page = client.get("/alerts?review_state=unreviewed", headers=headers("viewer")).json()
    assert [i["alert_id"] for i in page["items"]] == [alerts[2]["alert_id"]]
    page = client.get("/alerts?review_state=false_alarm", headers=headers("viewer")).json()
    assert page["total"] == 1 and page["items"][0]["review"]["comment"] == "sticker"
    assert client.get("/alerts?review_state=maybe", headers=headers("viewer")).status_code == 422
    summary = client.get("/alerts/reviews/summary", headers=headers("viewer")).json()
    assert summary == {"total": 3, "unreviewed": 1, "confirmed": 1, "false_alarm": 1, "taught": 0}
    metrics = client.get("/metrics", headers=headers("viewer")).text
    assert 'edgeinspect_alert_reviews{state="false_alarm"} 1.0' in metrics
    export = client.get("/alerts/reviews/export.csv", headers=headers("viewer"))
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["alert_id"] for r in rows] == [a["alert_id"] for a in alerts]  # oldest first
    assert [r["review_state"] for r in rows] == ["confirmed", "false_alarm", "unreviewed"]
    assert rows[0]["review_comment"].startswith("'=")  # a spreadsheet must not run it
    assert rows[1]["model_name"] == "fake" and float(rows[1]["score"]) == alerts[1]["score"]
    only = client.get("/alerts/reviews/export.csv?review_state=confirmed", headers=headers("viewer"))
    assert len(list(csv.DictReader(io.StringIO(only.text)))) == 1
    assert client.get("/alerts/reviews/export.csv").status_code == 401


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def done() -> bool:
        job.update(client.get(f"/models/teach-normal/{job_id}", headers=headers("viewer")).json())
        return job["state"] in ("done", "failed")

    wait_until(done, timeout_s=20, what="teach job finished")
    return job


def test_teach_normal_builds_an_inactive_candidate_with_figures(
    client: TestClient, runtime: FakeRuntime
) -> None:
    alerts = _alerts(runtime, 3)
    for alert in alerts[:2]:
        _review(client, alert["alert_id"], "false_alarm", "sticker")
    _review(client, alerts[2]["alert_id"], "confirmed")
    for role in ("viewer", "operator"):
        assert client.post("/models/teach-normal", headers=headers(role)).status_code == 403
    started = client.post("/models/teach-normal", json={}, headers=headers("admin"))
    assert started.status_code == 202, started.text
    assert sorted(started.json()["alert_ids"]) == sorted(a["alert_id"] for a in alerts[:2])
    job = _finished(client, started.json()["job_id"])
    assert job["state"] == "done" and job["progress"] == 1.0, job
    report = job["report"]
    assert report["taught_examples"] == 2 and report["confirmed_defects"] == 1
    assert report["false_reject_rate_taught"] == {"before": 1.0, "after": 0.0}
    models = {m["id"]: m for m in client.get("/models", headers=headers("viewer")).json()}
    candidate = models[job["model_id"]]
    assert candidate["active"] is False and candidate["teach"] == report
    assert models[job["parent_model_id"]]["active"] is True
    actions = [(e["action"], e["ok"]) for e in _audit(client)]
    assert ("teach_normal", True) in actions and ("teach_normal_done", True) in actions
    summary = client.get("/alerts/reviews/summary", headers=headers("viewer")).json()
    assert summary["taught"] == 2
    again = client.post("/models/teach-normal", headers=headers("admin"))
    assert again.status_code == 409 and "left to teach" in again.json()["detail"]
    activated = client.post(f"/models/{job['model_id']}/activate", headers=headers("admin"))
    assert activated.status_code == 200 and activated.json()["new_value"] == job["model_id"]
    assert (
        client.post("/models/rollback", headers=headers("admin")).json()["new_value"]
        == job["parent_model_id"]
    )


def test_teach_normal_refusals(client: TestClient, runtime: FakeRuntime) -> None:
    alerts = _alerts(runtime, 2)
    _review(client, alerts[0]["alert_id"], "confirmed")
    nothing = client.post("/models/teach-normal", headers=headers("admin"))
    assert nothing.status_code == 409 and "no reviewed false alarms" in nothing.json()["detail"]
    ids = [alerts[0]["alert_id"], alerts[1]["alert_id"]]
    ghost = client.post("/models/teach-normal", json={"alert_ids": [*ids, "ghost"]}, headers=headers("admin"))
    assert ghost.status_code == 404 and ghost.json()["detail"] == "no such alert(s): ghost"
    wrong = client.post("/models/teach-normal", json={"alert_ids": ids}, headers=headers("admin"))
    assert (
        wrong.status_code == 409
        and wrong.json()["detail"] == f"not reviewed as false alarms: {', '.join(ids)}"
    )
    for body in ({"alert_ids": ["../x"]}, {"alert_ids": []}, {"alert_ids": ids, "all": True}):
        assert client.post("/models/teach-normal", json=body, headers=headers("admin")).status_code == 422
    assert client.get("/models/teach-normal/abc123", headers=headers("viewer")).status_code == 404
    assert [e["ok"] for e in _audit(client) if e["action"] == "teach_normal"] == [False, False, False]


def _earlier(runtime: FakeRuntime, alert: dict[str, Any], hours_ago: float) -> str:
    """A copy of `alert` captured `hours_ago`, straight into the runtime's real history."""
    old = dict(alert, alert_id=f"old-{alert['alert_id']}", ts=iso_utc(time.time() - 3600 * hours_ago))
    runtime.alert_store.add(old, None)
    return str(old["alert_id"])


def test_summary_counts_since_a_time_or_the_current_shift(tmp_path: Path, runtime: FakeRuntime) -> None:
    now = datetime.now().astimezone()
    # A shift clock whose running shift began two hours ago and ends in two (the box's own zone).
    starts = [f"{now - timedelta(hours=2):%H:%M}", f"{now + timedelta(hours=2):%H:%M}"]
    settings = Settings(
        data_dir=str(tmp_path),
        auth={"audit_path": str(tmp_path / "audit.sqlite3")},
        trends={"shift_starts": starts},
    )
    with TestClient(create_app(runtime, settings, KeyStore.from_keys(KEYS))) as client:
        current = _alerts(runtime, 3)
        earlier = [_earlier(runtime, current[1], 3), _earlier(runtime, current[2], 5)]  # the shift before
        _review(client, earlier[0], "confirmed")
        _review(client, current[0]["alert_id"], "false_alarm")
        whole = client.get("/alerts/reviews/summary", headers=headers("viewer")).json()
        assert whole["total"] == 5 and whole["unreviewed"] == 3
        assert "since" not in whole and "shift" not in whole

        shift = client.get("/alerts/reviews/summary?current_shift=true", headers=headers("viewer")).json()
        assert {k: shift[k] for k in ("total", "unreviewed", "confirmed", "false_alarm")} == {
            "total": 3,
            "unreviewed": 2,
            "confirmed": 0,
            "false_alarm": 1,
        }
        assert shift["shift"]["label"] == f"{starts[0]}-{starts[1]}"
        start = datetime.fromisoformat(shift["shift"]["start"])
        assert timedelta(hours=2) <= now - start < timedelta(hours=2, minutes=1)  # whole minutes
        assert shift["since"] == iso_utc(start.timestamp())

        since = (now - timedelta(hours=4)).isoformat()
        four_hours = client.get("/alerts/reviews/summary", params={"since": since}, headers=headers("viewer"))
        assert four_hours.json()["total"] == 4 and four_hours.json()["confirmed"] == 1

        both = client.get(
            "/alerts/reviews/summary",
            params={"since": since, "current_shift": "true"},
            headers=headers("viewer"),
        )
        assert both.status_code == 422 and "not both" in both.json()["detail"]
        for bad in ("yesterday", "1700000000", "0001-01-01T00:00:00+05:00"):
            response = client.get("/alerts/reviews/summary", params={"since": bad}, headers=headers("viewer"))
            assert response.status_code == 422, bad
        assert (
            client.get("/alerts/reviews/summary?current_shift=maybe", headers=headers("viewer")).status_code
            == 422
        )
