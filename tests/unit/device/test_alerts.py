"""The alert payload contract and the local alert history."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from device.station.alerts import ALERT_SCHEMA_VERSION, AlertStore, build_alert, classify_defect
from vision.types import Box, InspectionResult, ModelInfo

MODEL = ModelInfo(name="m", version="3", sha256="ab" * 32, threshold=1.0, input_size=256)


def _alert(frame_id: int, boxes: list[Box], captured_at: float | None = None) -> dict:
    result = InspectionResult(
        score=2.0, threshold=1.0, is_defect=True, boxes=boxes, anomaly_map=np.zeros((8, 8)), inference_ms=5.0
    )
    return build_alert(
        frame_id=frame_id,
        captured_at=time.time() if captured_at is None else captured_at,
        result=result,
        model=MODEL,
        line_id="l1",
        station_id="s1",
        frame_size=(256, 256),
        latency_ms=12.3456,
    )


def test_payload_has_the_documented_fields() -> None:
    alert = _alert(7, [Box(1, 2, 3, 30, 2.0)], captured_at=0.0)
    for key in ("alert_id", "frame_id", "ts", "score", "threshold", "is_defect", "boxes", "model"):
        assert key in alert
    assert alert["schema_version"] == ALERT_SCHEMA_VERSION
    assert alert["ts"] == "1970-01-01T00:00:00.000Z"
    assert alert["model"] == {"name": "m", "version": "3", "sha256": "ab" * 32}
    assert alert["boxes"] == [{"x": 1, "y": 2, "width": 3, "height": 30, "score": 2.0}]
    assert _alert(7, [])["alert_id"] != alert["alert_id"]


def test_defect_class_from_region_shape() -> None:
    assert classify_defect([Box(0, 0, 4, 40, 1.0)], 256, 256) == "linear"
    assert classify_defect([Box(0, 0, 100, 90, 1.0)], 256, 256) == "area"
    assert classify_defect([Box(0, 0, 10, 12, 1.0)], 256, 256) == "spot"
    assert classify_defect([], 256, 256) == "anomaly"


def test_history_pages_newest_first_and_filters(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3", keep_alerts=1000)
    old = time.time() - 3600
    for i in range(25):
        boxes = [Box(0, 0, 4, 40, 1.0)] if i % 2 else [Box(0, 0, 10, 10, 1.0)]
        store.add(_alert(i, boxes, captured_at=old if i < 5 else None), thumbnail_jpeg=b"jpg%d" % i)
    total, page = store.query(limit=10, offset=0)
    assert total == 25 and [a["frame_id"] for a in page] == list(range(24, 14, -1))
    _, page3 = store.query(limit=10, offset=20)
    assert [a["frame_id"] for a in page3] == [4, 3, 2, 1, 0]
    total_linear, linear = store.query(limit=100, defect_type="linear")
    assert total_linear == 12 and all(a["defect_class"] == "linear" for a in linear)
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    total_recent, _ = store.query(limit=100, since=since)
    assert total_recent == 20
    assert store.thumbnail(page[0]["alert_id"]) == b"jpg24"
    assert store.thumbnail("nope") is None


def test_history_is_bounded(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3", keep_alerts=50)
    for i in range(300):
        store.add(_alert(i, []), thumbnail_jpeg=None)
    assert store.count() <= 150  # trimmed every 100 inserts to the newest keep_alerts
    _, newest = store.query(limit=1)
    assert newest[0]["frame_id"] == 299
