"""Read-only views: alerts with thumbnails, frames, health, metrics, the panel and the offline docs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime

JPEG_MAGIC = b"\xff\xd8\xff"


def test_alerts_are_paged_newest_first_with_thumbnails(client: TestClient, runtime: FakeRuntime) -> None:
    alerts = [a for a in (runtime.advance() for _ in range(12)) if a]
    assert len(alerts) == 3
    page = client.get("/alerts?limit=2", headers=headers("viewer")).json()
    assert page["total"] == 3 and page["limit"] == 2
    assert [a["alert_id"] for a in page["items"]] == [alerts[2]["alert_id"], alerts[1]["alert_id"]]
    rest = client.get("/alerts?limit=2&offset=2", headers=headers("viewer")).json()
    assert [a["alert_id"] for a in rest["items"]] == [alerts[0]["alert_id"]]

    thumb = client.get(f"/alerts/{alerts[0]['alert_id']}/thumbnail.jpg", headers=headers("viewer"))
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content.startswith(JPEG_MAGIC)
    assert client.get("/alerts/missing/thumbnail.jpg", headers=headers("viewer")).status_code == 404


def test_alert_filters(client: TestClient, runtime: FakeRuntime) -> None:
    for _ in range(8):
        runtime.advance()
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert client.get("/alerts", params={"since": future}, headers=headers("viewer")).json()["total"] == 0
    naive_past = "2000-01-01T00:00:00"
    assert client.get("/alerts", params={"since": naive_past}, headers=headers("viewer")).json()["total"] == 2
    assert client.get("/alerts?defect_type=linear", headers=headers("viewer")).json()["total"] == 2
    assert client.get("/alerts?defect_type=area", headers=headers("viewer")).json()["total"] == 0
    bad = client.get("/alerts?limit=0&since=yesterday", headers=headers("viewer"))
    assert bad.status_code == 422
    assert {tuple(d["loc"]) for d in bad.json()["detail"]} == {("query", "limit"), ("query", "since")}
    extreme = client.get("/alerts", params={"since": "0001-01-01T00:00:00+05:00"}, headers=headers("viewer"))
    assert extreme.status_code == 422 and "out of range" in extreme.json()["detail"]


def test_latest_frame_with_etag_and_overlay(client: TestClient, runtime: FakeRuntime) -> None:
    empty = client.get("/frames/latest.jpg", headers=headers("viewer"))
    assert empty.status_code == 503 and empty.headers["retry-after"] == "1"
    for _ in range(4):  # frame 4 is a defect: the overlay differs from the plain frame
        runtime.advance()
    frame = client.get("/frames/latest.jpg?overlay=1", headers=headers("viewer"))
    assert frame.status_code == 200 and frame.content.startswith(JPEG_MAGIC)
    assert frame.headers["x-frame-seq"] == "4"
    plain = client.get("/frames/latest.jpg?overlay=0", headers=headers("viewer"))
    assert plain.content != frame.content
    same = client.get(
        "/frames/latest.jpg?overlay=1", headers={**headers("viewer"), "If-None-Match": frame.headers["etag"]}
    )
    assert same.status_code == 304
    runtime.advance()
    newer = client.get(
        "/frames/latest.jpg?overlay=1", headers={**headers("viewer"), "If-None-Match": frame.headers["etag"]}
    )
    assert newer.status_code == 200 and newer.headers["x-frame-seq"] == "5"


def frame_headers(response: Response) -> dict[str, str | None]:
    names = ("verdict", "id", "seq", "score", "threshold")
    return {name: response.headers.get(f"x-frame-{name}") for name in names}


def test_latest_frame_carries_the_verdict_on_that_very_frame(
    client: TestClient, runtime: FakeRuntime
) -> None:
    for _ in range(3):
        runtime.advance()
    ok = client.get("/frames/latest.jpg", headers=headers("viewer"))
    assert ok.status_code == 200
    assert frame_headers(ok) == {"verdict": "OK", "id": "3", "seq": "3", "score": "0.1", "threshold": "0.5"}
    captured = datetime.fromisoformat(ok.headers["x-frame-captured-at"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - captured).total_seconds()) < 60

    runtime.advance()  # frame 4 is a defect
    ng = client.get("/frames/latest.jpg", headers=headers("viewer"))
    assert frame_headers(ng) == {"verdict": "NG", "id": "4", "seq": "4", "score": "0.9", "threshold": "0.5"}

    # A frame shown but not judged (inspection paused) says so, with no score to misread.
    unjudged = runtime.latest_verdict()
    assert unjudged is not None
    runtime._verdict = unjudged.model_copy(update={"verdict": None, "score": None, "threshold": None})
    paused = client.get("/frames/latest.jpg", headers=headers("viewer"))
    assert frame_headers(paused) == {
        "verdict": "unjudged",
        "id": "4",
        "seq": "4",
        "score": None,
        "threshold": None,
    }


def test_a_frame_judged_while_the_jpeg_is_read_is_not_sent_with_the_older_verdict(
    client: TestClient, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        runtime.advance()
    read = runtime.latest_frame_jpeg
    calls: list[bool] = []

    def racing(overlay: bool = True) -> bytes | None:
        data = read(overlay)
        if not calls:  # frame 4 (a defect) is judged right after frame 3's JPEG was read
            runtime.advance()
        calls.append(overlay)
        return data

    monkeypatch.setattr(runtime, "latest_frame_jpeg", racing)
    frame = client.get("/frames/latest.jpg", headers=headers("viewer"))
    assert (frame.headers["x-frame-id"], frame.headers["x-frame-verdict"]) == ("4", "NG")
    assert frame.content == read(True) and len(calls) == 2
    assert frame.headers["etag"] == '"4-1"'


def test_mjpeg_stream_parts_are_jpegs(client: TestClient, runtime: FakeRuntime) -> None:
    runtime.advance()
    response = client.get("/frames/stream.mjpeg?max_frames=1", headers=headers("viewer"))
    assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
    head, _, rest = response.content.partition(b"\r\n\r\n")
    assert head.startswith(b"--frame\r\nContent-Type: image/jpeg")
    assert rest.startswith(JPEG_MAGIC)


def test_health_needs_no_key_and_reports_degraded(client: TestClient, runtime: FakeRuntime) -> None:
    runtime.broker_connected = False
    report = client.get("/health")
    assert report.status_code == 200
    assert report.json()["status"] == "degraded"
    assert report.json()["components"]["broker"]["ok"] is False


def test_metrics_joins_runtime_and_api_counters(client: TestClient, runtime: FakeRuntime) -> None:
    runtime.advance()
    client.get("/status")  # an auth failure
    text = client.get("/metrics", headers=headers("viewer")).text
    assert "edgeinspect_frames_total 1" in text
    assert "edgeinspect_api_auth_failures_total 1.0" in text
    assert 'edgeinspect_api_requests_total{method="GET",route="/status",status="401"} 1.0' in text


def test_panel_and_docs_are_served_offline_with_security_headers(client: TestClient) -> None:
    panel = client.get("/")
    assert panel.status_code == 200 and 'data-testid="login-key"' in panel.text
    assert "http://" not in panel.text and "https://" not in panel.text
    assert "default-src 'self'" in panel.headers["content-security-policy"]
    assert panel.headers["x-frame-options"] == "DENY"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text and "cdn" not in docs.text.lower()
    for asset in ("app.js", "style.css", "docs.js", "docs.css"):
        body = client.get(f"/static/{asset}").text
        assert "https://" not in body and "http://" not in body, asset


def test_alerts_page_by_cursor_and_hold_still_while_alerts_arrive(
    client: TestClient, runtime: FakeRuntime
) -> None:
    alerts = [a for a in (runtime.advance() for _ in range(20)) if a]  # five, newest last
    ids = [a["alert_id"] for a in reversed(alerts)]  # newest first
    first = client.get("/alerts?limit=2", headers=headers("viewer")).json()
    assert [a["alert_id"] for a in first["items"]] == ids[:2] and first["next_before_id"] == ids[1]
    for _ in range(8):  # two new alerts
        runtime.advance()
    second = client.get(f"/alerts?limit=2&before_id={ids[1]}", headers=headers("viewer")).json()
    assert [a["alert_id"] for a in second["items"]] == ids[2:4] and second["total"] == 3
    last = client.get(
        f"/alerts?limit=2&before_id={second['next_before_id']}", headers=headers("viewer")
    ).json()
    assert [a["alert_id"] for a in last["items"]] == ids[4:] and last["next_before_id"] is None
    pinned = client.get(f"/alerts?limit=2&until_id={ids[0]}", headers=headers("viewer")).json()
    assert [a["alert_id"] for a in pinned["items"]] == ids[:2] and pinned["total"] == 5
    arrived = client.get(f"/alerts?limit=1&after_id={ids[0]}", headers=headers("viewer")).json()
    assert arrived["total"] == 2 and arrived["next_before_id"] is not None
    plain = client.get("/alerts?limit=2&offset=2", headers=headers("viewer")).json()  # offset still works
    assert [a["alert_id"] for a in plain["items"]] == ids[:2]


def test_bad_cursors_are_a_422_with_the_reason(client: TestClient, runtime: FakeRuntime) -> None:
    runtime.advance()
    for name in ("before_id", "until_id", "after_id"):
        unknown = client.get(f"/alerts?{name}=no-such-alert", headers=headers("viewer"))
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == f"{name}: no alert 'no-such-alert' in the history " + (
            "(unknown, or pushed out by newer alerts)"
        )
        for bad in ("", "a" * 65, "a;drop"):
            response = client.get("/alerts", params={name: bad}, headers=headers("viewer"))
            assert response.status_code == 422, (name, bad)
            assert response.json()["detail"][0]["loc"] == ["query", name]
