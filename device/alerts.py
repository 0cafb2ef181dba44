"""The alert: the public MQTT payload (versioned) and the local history the panel pages through.

Payload contract (schema_version 1), published on `<prefix>/<line>/<station>/alert` at QoS 1:
`alert_id` (unique; consumers drop duplicates by it), `frame_id`, `ts` (capture time, ISO 8601 UTC),
`score`, `threshold`, `is_defect`, `defect_class`, `boxes`, `model` {name, version, sha256}, `line_id`,
`station_id`, `image_size` [w, h], `latency_ms` (capture to decision), `schema_version`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vision.types import Box, InspectionResult, ModelInfo

ALERT_SCHEMA_VERSION = 1


def iso_utc(epoch_s: float) -> str:
    return (
        datetime.fromtimestamp(epoch_s, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def classify_defect(boxes: list[Box], frame_width: int, frame_height: int) -> str:
    """A coarse class for operators and filters: the model is trained on good parts only, so it knows
    *where* a part is wrong, not *why*. Shape of the largest region: `linear` (scratch, crack),
    `area` (stain, large damage), `spot` (hole, particle)."""
    if not boxes:
        return "anomaly"
    largest = max(boxes, key=lambda b: b.width * b.height)
    long_side, short_side = max(largest.width, largest.height), max(1, min(largest.width, largest.height))
    if long_side / short_side >= 3.0:
        return "linear"
    if largest.width * largest.height >= 0.04 * frame_width * frame_height:
        return "area"
    return "spot"


def build_alert(
    *,
    frame_id: int,
    captured_at: float,
    result: InspectionResult,
    model: ModelInfo,
    line_id: str,
    station_id: str,
    frame_size: tuple[int, int],
    latency_ms: float,
) -> dict[str, Any]:
    width, height = frame_size
    return {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": str(uuid.uuid4()),
        "line_id": line_id,
        "station_id": station_id,
        "frame_id": frame_id,
        "ts": iso_utc(captured_at),
        "score": round(float(result.score), 6),
        "threshold": round(float(result.threshold), 6),
        "is_defect": bool(result.is_defect),
        "defect_class": classify_defect(result.boxes, width, height),
        "boxes": [box.as_dict() for box in result.boxes],
        "image_size": [width, height],
        "model": model.as_dict(),
        "latency_ms": round(latency_ms, 3),
    }


class AlertStore:
    """Alert history with thumbnails for the API and panel (SQLite, bounded, newest first).

    Separate from the outbox: the outbox forgets an alert once the broker has it; the history keeps it
    for operators until `keep_alerts` newer ones push it out.
    """

    def __init__(self, path: str | Path, keep_alerts: int = 50_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_alerts = keep_alerts
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS alerts (
                   seq INTEGER PRIMARY KEY AUTOINCREMENT,
                   alert_id TEXT UNIQUE NOT NULL,
                   ts TEXT NOT NULL,
                   defect_class TEXT NOT NULL,
                   is_defect INTEGER NOT NULL DEFAULT 1,
                   payload TEXT NOT NULL,
                   thumbnail BLOB)"""
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS alerts_ts ON alerts(ts)")
        self._added = 0

    def add(self, alert: dict[str, Any], thumbnail_jpeg: bytes | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO alerts(alert_id, ts, defect_class, is_defect, payload, thumbnail)"
                " VALUES (?,?,?,?,?,?)",
                (
                    alert["alert_id"],
                    alert["ts"],
                    alert["defect_class"],
                    int(bool(alert["is_defect"])),
                    json.dumps(alert),
                    thumbnail_jpeg,
                ),
            )
            self._added += 1
            if self._added % 100 == 0:
                self._db.execute(
                    "DELETE FROM alerts WHERE seq <= (SELECT MAX(seq) FROM alerts) - ?", (self.keep_alerts,)
                )

    def query(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        defect_type: str | None = None,
        defects_only: bool = True,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Newest first. `defect_type` filters on `defect_class`. Returns (total matching, page)."""
        clauses, params = [], []
        if since is not None:
            clauses.append("ts >= ?")
            params.append(iso_utc(since.timestamp()))
        if until is not None:
            clauses.append("ts <= ?")
            params.append(iso_utc(until.timestamp()))
        if defect_type:
            clauses.append("defect_class = ?")
            params.append(defect_type)
        if defects_only:
            clauses.append("is_defect = 1")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM alerts {where}", params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT payload FROM alerts {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*params, int(limit), int(offset)],
            ).fetchall()
        return total, [json.loads(row[0]) for row in rows]

    def thumbnail(self, alert_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT thumbnail FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else row[0]

    def count(self) -> int:
        with self._lock:
            count: int = self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()
