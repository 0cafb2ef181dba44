"""GET /trends: what the panel's charts read; a viewer may read it, a bad window is a 422 with the reason."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime


def test_trends_carry_series_histogram_and_shifts(client: TestClient, runtime: FakeRuntime) -> None:
    for _ in range(8):  # every 4th part of the fake is a defect
        runtime.advance()
    body = client.get("/trends?window=1h", headers=headers("viewer")).json()
    assert body["window_s"] == 3600 and body["bucket_s"] == 60
    assert body["totals"]["frames"] == 8 and body["totals"]["defects"] == 2
    assert body["totals"]["defect_rate"] == 0.25
    assert sum(body["series"]["frames"]) == 8
    assert (
        len(body["series"]["t"])
        == len(body["series"]["defect_rate"])
        == len(body["series"]["latency_p99_ms"])
    )
    assert sum(body["score_histogram"]["counts"]) == 8
    assert body["threshold"] == 0.5
    assert sum(s["frames"] for s in body["shifts"]) == 8
    assert body["until"] <= time.time()


def test_trend_window_is_checked(client: TestClient) -> None:
    assert client.get("/trends", headers=headers("viewer")).json()["window_s"] == 8 * 3600
    assert client.get("/trends?window=7d", headers=headers("viewer")).status_code == 200
    too_long = client.get("/trends?window=30d", headers=headers("viewer"))
    assert too_long.status_code == 422 and "retention_days" in too_long.json()["detail"]
    bad = client.get("/trends?window=8 hours", headers=headers("viewer"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "window"]
    assert client.get("/trends?window=1h").status_code == 401
