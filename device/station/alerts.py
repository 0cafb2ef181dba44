"""The alert: the public MQTT payload (versioned) and the local history the panel pages through.

Payload contract (schema_version 1), published on `<prefix>/<line>/<station>/alert` at QoS 1:
`alert_id` (unique; consumers drop duplicates by it), `frame_id`, `ts` (capture time, ISO 8601 UTC),
`score`, `threshold`, `is_defect`, `defect_class`, `boxes`, `model` {name, version, sha256}, `line_id`,
`station_id`, `image_size` [w, h], `latency_ms` (capture to decision), `schema_version`, `decided_by`
(`edge`, `verifier` or `fallback`; with escalation also `edge_is_defect`, `fallback_reason` and `verifier`
{verifier_id, model_version, score, threshold, is_defect, verifier_ms, round_trip_ms, summary}: see
docs/ESCALATION.md), `recipe` (the product the frame was captured under; null without recipes).
`score`/`threshold` are always the edge model's.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Gauge

from vision.types import Box, InspectionResult, ModelInfo

ALERT_SCHEMA_VERSION = 1
ReviewState = Literal["confirmed", "false_alarm"]
ReviewFilter = Literal["unreviewed", "confirmed", "false_alarm"]
REVIEW_STATES: tuple[str, ...] = get_args(ReviewState)
MAX_REVIEW_COMMENT = 500
_REVIEW_COLUMNS = "r.state, r.comment, r.reviewer, r.ts, r.taught_model"
_CURSOR_OPS = {"before_id": "<", "until_id": "<=", "after_id": ">"}  # cursor -> the bound on `seq`
_IN_BATCH = 500  # ids per `IN (...)`: well under SQLite's bound on parameters


class AlertCursorError(ValueError):
    """A paging cursor (`before_id`, `until_id`, `after_id`) that names no alert in the history."""


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
    decision: dict[str, Any] | None = None,
    recipe: str | None = None,
) -> dict[str, Any]:
    """The alert payload; `decision` holds who decided (`Decision.alert_fields()`), `edge` when omitted;
    `recipe` the product the frame was captured under (None on a station without recipes)."""
    width, height = frame_size
    alert = {
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
        "recipe": recipe,
        "latency_ms": round(latency_ms, 3),
    }
    alert.update(decision or {"decided_by": "edge"})
    return alert


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
        # One review per alert (a re-review replaces it; the audit log keeps the history).
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS reviews (
                   alert_id TEXT PRIMARY KEY,
                   state TEXT NOT NULL CHECK (state IN ('confirmed', 'false_alarm')),
                   comment TEXT NOT NULL DEFAULT '',
                   reviewer TEXT NOT NULL,
                   ts TEXT NOT NULL,
                   taught_model TEXT)"""
        )
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
                self._db.execute("DELETE FROM reviews WHERE alert_id NOT IN (SELECT alert_id FROM alerts)")

    def query(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        defect_type: str | None = None,
        defects_only: bool = True,
        review_state: ReviewFilter | None = None,
        before_id: str | None = None,
        until_id: str | None = None,
        after_id: str | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Newest first. `defect_type` filters on `defect_class`. Returns (total matching, page); each
        alert carries its `review` (state, comment, reviewer, ts, taught_model) or None.

        Cursors, by an alert's id, so a page holds still while new alerts arrive: `before_id` only alerts
        older than that one (the next page after a page ending in it), `until_id` that one and older (a
        page pinned at its newest alert), `after_id` only newer ones (what arrived since). Each names an
        alert in the history, whatever the filters; an unknown one is an `AlertCursorError` naming it."""
        cursors = {"before_id": before_id, "until_id": until_id, "after_id": after_id}
        with self._lock:
            bounds = {name: self._seq_of(name, value) for name, value in cursors.items() if value is not None}
            where, params = _where(since, until, defect_type, defects_only, review_state, bounds)
            joined = f"FROM alerts a LEFT JOIN reviews r ON r.alert_id = a.alert_id {where}"
            total = self._db.execute(f"SELECT COUNT(*) {joined}", params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT a.payload, {_REVIEW_COLUMNS} {joined} ORDER BY a.seq DESC LIMIT ? OFFSET ?",
                [*params, int(limit), int(offset)],
            ).fetchall()
        return total, [_with_review(row) for row in rows]

    def _seq_of(self, name: str, alert_id: str) -> int:
        """The history's position of a cursor alert (the lock held); AlertCursorError when unknown."""
        row = self._db.execute("SELECT seq FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertCursorError(
                f"{name}: no alert {alert_id!r} in the history (unknown, or pushed out by newer alerts)"
            )
        return int(row[0])

    def get(self, alert_id: str) -> dict[str, Any] | None:
        """One alert with its review, or None when there is no such alert (any more)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT a.payload, {_REVIEW_COLUMNS} FROM alerts a "
                "LEFT JOIN reviews r ON r.alert_id = a.alert_id WHERE a.alert_id = ?",
                (alert_id,),
            ).fetchone()
        return None if row is None else _with_review(row)

    def review(
        self, alert_id: str, state: ReviewState, comment: str, reviewer: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Record (or replace) an operator's verdict on an alert; returns (previous review, new review).

        KeyError for an unknown alert, ValueError for a bad state or comment. A re-review to another state
        forgets which model the alert was taught into (it is no longer a false alarm to teach)."""
        if state not in REVIEW_STATES:
            raise ValueError(f"state must be one of {', '.join(REVIEW_STATES)}, got {state!r}")
        comment = check_review_comment(comment)
        now = iso_utc(datetime.now(timezone.utc).timestamp())
        with self._lock:
            known = self._db.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if known is None:
                raise KeyError(f"no alert {alert_id!r}")
            old_row = self._db.execute(
                "SELECT state, comment, reviewer, ts, taught_model FROM reviews WHERE alert_id = ?",
                (alert_id,),
            ).fetchone()
            taught = old_row[4] if old_row is not None and old_row[0] == state else None
            self._db.execute(
                "INSERT OR REPLACE INTO reviews(alert_id, state, comment, reviewer, ts, taught_model) "
                "VALUES (?,?,?,?,?,?)",
                (alert_id, state, comment, reviewer, now, taught),
            )
        return _review(old_row), _review((state, comment, reviewer, now, taught)) or {}

    def review_counts(self, since: datetime | None = None) -> dict[str, int]:
        """Alerts in the history per review state (`unreviewed` too), and how many were taught; with
        `since`, only alerts captured at or after it (e.g. the current shift's)."""
        where, params = _where(since, None, None, False, None)
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM alerts a {where}", params).fetchone()[0])
            rows = self._db.execute(
                "SELECT r.state, COUNT(*), COUNT(r.taught_model) FROM reviews r "
                f"JOIN alerts a ON a.alert_id = r.alert_id {where} GROUP BY r.state",
                params,
            ).fetchall()
        counts = {state: 0 for state in REVIEW_STATES}
        taught = 0
        for state, count, taught_count in rows:
            counts[state] = int(count)
            taught += int(taught_count)
        return {"unreviewed": total - sum(counts.values()), **counts, "taught": taught}

    def review_states(self, alert_ids: Iterable[str]) -> dict[str, ReviewState]:
        """The review state of each of these alerts that has one; an unreviewed alert, or one no longer
        in the history (pushed out by `keep_alerts`, its review with it), is left out."""
        wanted = list(dict.fromkeys(alert_ids))
        states: dict[str, ReviewState] = {}
        for start in range(0, len(wanted), _IN_BATCH):
            batch = wanted[start : start + _IN_BATCH]
            with self._lock:
                rows = self._db.execute(
                    "SELECT r.alert_id, r.state FROM reviews r JOIN alerts a ON a.alert_id = r.alert_id "
                    f"WHERE r.alert_id IN ({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
            for alert_id, state in rows:
                states[str(alert_id)] = "confirmed" if state == "confirmed" else "false_alarm"
        return states

    def reviewed_ids(self, state: ReviewState, untaught_only: bool = False, limit: int = 10_000) -> list[str]:
        """Alert ids with this review state, newest first (`untaught_only`: not yet taught to a model)."""
        extra = " AND r.taught_model IS NULL" if untaught_only else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.alert_id FROM reviews r JOIN alerts a ON a.alert_id = r.alert_id "
                f"WHERE r.state = ?{extra} ORDER BY a.seq DESC LIMIT ?",
                (state, int(limit)),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def mark_taught(self, alert_ids: list[str], model_id: str) -> None:
        """Record that these false alarms were taught into `model_id` (default teaching skips them)."""
        with self._lock:
            self._db.executemany(
                "UPDATE reviews SET taught_model = ? WHERE alert_id = ? AND state = 'false_alarm'",
                [(model_id, alert_id) for alert_id in alert_ids],
            )

    def export_rows(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        review_state: ReviewFilter | None = None,
        batch: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching alert with its review, oldest first, read in batches (for CSV export)."""
        where, params = _where(since, until, None, False, review_state)
        last = 0
        while True:
            clause = f"{where} AND a.seq > ?" if where else "WHERE a.seq > ?"
            with self._lock:
                rows = self._db.execute(
                    f"SELECT a.seq, a.payload, {_REVIEW_COLUMNS} FROM alerts a "
                    f"LEFT JOIN reviews r ON r.alert_id = a.alert_id {clause} ORDER BY a.seq LIMIT ?",
                    [*params, last, int(batch)],
                ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            for row in rows:
                yield _with_review(row[1:])

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """`edgeinspect_alert_reviews{state=...}`, read from the store at scrape time."""
        gauge = Gauge(
            "edgeinspect_alert_reviews",
            "Alerts in the history per operator review state (unreviewed, confirmed, false_alarm, taught)",
            ["state"],
            registry=registry,
        )
        for state in ("unreviewed", *REVIEW_STATES, "taught"):
            gauge.labels(state=state).set_function(functools.partial(self._count_of, state))

    def _count_of(self, state: str) -> float:
        return float(self.review_counts()[state])

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


def check_review_comment(comment: str) -> str:
    """The comment stripped; ValueError when too long or holding control characters (it goes into CSV
    exports and audit entries)."""
    comment = comment.strip()
    if len(comment) > MAX_REVIEW_COMMENT:
        raise ValueError(f"comment is {len(comment)} characters; at most {MAX_REVIEW_COMMENT} are kept")
    if any(ord(char) < 32 and char not in "\t\n" for char in comment):
        raise ValueError("comment must not contain control characters")
    return comment


def _where(
    since: datetime | None,
    until: datetime | None,
    defect_type: str | None,
    defects_only: bool,
    review_state: str | None,
    seq_bounds: dict[str, int] | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause over `alerts a LEFT JOIN reviews r`, and its parameters. `seq_bounds` holds
    resolved cursors: {"before_id" | "until_id" | "after_id": seq}."""
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("a.ts >= ?")
        params.append(iso_utc(since.timestamp()))
    if until is not None:
        clauses.append("a.ts <= ?")
        params.append(iso_utc(until.timestamp()))
    if defect_type:
        clauses.append("a.defect_class = ?")
        params.append(defect_type)
    if defects_only:
        clauses.append("a.is_defect = 1")
    if review_state == "unreviewed":
        clauses.append("r.state IS NULL")
    elif review_state is not None:
        if review_state not in REVIEW_STATES:
            raise ValueError(
                f"review_state must be unreviewed, {', '.join(REVIEW_STATES)}; got {review_state!r}"
            )
        clauses.append("r.state = ?")
        params.append(review_state)
    for name, seq in (seq_bounds or {}).items():
        clauses.append(f"a.seq {_CURSOR_OPS[name]} ?")
        params.append(seq)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _review(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if row is None or row[0] is None:
        return None
    state, comment, reviewer, ts, taught = row
    return {"state": state, "comment": comment, "reviewer": reviewer, "ts": ts, "taught_model": taught}


def _with_review(row: tuple[Any, ...]) -> dict[str, Any]:
    """An alert payload from a `payload, <review columns>` row, with its `review` attached."""
    alert: dict[str, Any] = json.loads(row[0])
    alert["review"] = _review(tuple(row[1:]))
    return alert
