"""Audit log: every change to the line, who made it, what it was before and after, and whether it worked.

Kept in SQLite (WAL) apart from the alert history so that a flood of alerts never pushes out the record
of who changed the threshold. Rows are only ever appended; nothing in the app deletes them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SCHEMA = """CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    ok INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT ''
)"""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class AuditLog:
    """Append-only record of changes; safe to share between the API's worker threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def record(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        ok: bool,
        old_value: Any = None,
        new_value: Any = None,
        message: str = "",
    ) -> int:
        """Append one entry. `action` is what was asked (a command or endpoint), `target` what it touched."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO audit(ts, actor, role, action, target, old_value, new_value, ok, message) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    _now_iso(),
                    actor,
                    role,
                    action,
                    target,
                    _to_json(old_value),
                    _to_json(new_value),
                    int(ok),
                    message,
                ),
            )
            return int(cursor.lastrowid or 0)

    def query(self, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Newest first; returns (total entries, page)."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
            rows = self._db.execute(
                "SELECT id, ts, actor, role, action, target, old_value, new_value, ok, message "
                "FROM audit ORDER BY id DESC LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
        entries = [
            {
                "id": row[0],
                "ts": row[1],
                "actor": row[2],
                "role": row[3],
                "action": row[4],
                "target": row[5],
                "old_value": _from_json(row[6]),
                "new_value": _from_json(row[7]),
                "ok": bool(row[8]),
                "message": row[9],
            }
            for row in rows
        ]
        return total, entries

    def close(self) -> None:
        with self._lock:
            self._db.close()
