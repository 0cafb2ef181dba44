"""Store-and-forward spool: every outbound alert is on disk before anyone tries to publish it.

Durability: SQLite in WAL mode with `synchronous=FULL`. In WAL mode `NORMAL` survives a process crash but
may lose the last commits on power loss (the WAL is not fsynced per commit); an edge box on a factory line
loses power, and `put()` promises the alert is durable when it returns, so every commit is fsynced. Alerts
are rare (defects), so the fsync per alert is cheap; acks and attempt counters are batched.

Bound: at most `max_messages` undelivered rows. When full, the OLDEST rows are dropped (the newest defects
matter most to the line) and counted in `dropped`, which survives restarts and is reported in health.

Damage: a database file that SQLite cannot read is renamed aside (`<name>.corrupt-<UTC time>`) with an
error in the log and a fresh spool is started, so a bad disk block never stops the line.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT UNIQUE NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_COLUMNS = "id, message_id, topic, payload, qos, created_at, attempts"
_MAX_MESSAGE_ID = 256


class OutboxError(RuntimeError):
    """The spool could not make a message durable (disk full, read-only, ...); the caller decides."""


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    message_id: str
    topic: str
    payload: bytes
    qos: int
    created_at: float
    attempts: int


class Outbox:
    """Thread-safe: one connection guarded by one lock (SQLite serialises writers anyway).

    Depth and drop counts are read from the file itself (an indexed COUNT, microseconds), so they are
    right whoever else touched the spool; one process owns a data directory at a time anyway
    (`device.station.data_dir_lock`).
    """

    def __init__(self, path: str | Path, max_messages: int = 100_000) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.recovered_from: Path | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    # ---- life cycle ----------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._connect_and_check()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            self._move_aside(exc)
            self._connect_and_check()

    def _connect_and_check(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems[:3]))
        conn.executescript(_SCHEMA)

    def _close_quietly(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _move_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
            counter += 1
        if self.path.exists():
            self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        self.recovered_from = aside
        log.error(
            "outbox database %s is unreadable (%s); moved it to %s and started an empty spool. "
            "Alerts still waiting in the old file were NOT delivered; inspect it with sqlite3.",
            self.path,
            exc,
            aside,
        )

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes --------------------------------------------------------------------------------
    def _run(
        self,
        operation: Callable[[sqlite3.Connection], _T],
        what: str,
        write: bool = True,
    ) -> _T:
        """Run one operation under the lock; on a damaged file move it aside and retry on a fresh spool."""
        with self._lock:
            if self._conn is None:
                raise OutboxError(f"outbox {self.path} is closed")
            try:
                result = self._execute(operation, write)
            except (sqlite3.IntegrityError, sqlite3.OperationalError, sqlite3.ProgrammingError) as exc:
                raise OutboxError(f"outbox {what} failed on {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                self._close_quietly()
                self._move_aside(exc)
                try:
                    self._connect_and_check()
                    result = self._execute(operation, write)
                except sqlite3.Error as again:
                    raise OutboxError(
                        f"outbox {what} failed on a fresh spool {self.path}: {again}"
                    ) from again
            return result

    def _execute(self, operation: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        conn = self._conn
        assert conn is not None
        if not write:
            return operation(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = operation(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def put(self, message_id: str, topic: str, payload: bytes, qos: int = 1) -> int:
        """Store one message; durable when this returns. The same `message_id` twice is stored once."""
        if not isinstance(message_id, str) or not message_id or len(message_id) > _MAX_MESSAGE_ID:
            raise ValueError(f"message_id must be a non-empty string of at most {_MAX_MESSAGE_ID} characters")
        if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
            raise ValueError(f"topic must be a non-empty MQTT topic without wildcards, got {topic!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__} (encode JSON first)")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        data = bytes(payload)

        def insert(conn: sqlite3.Connection) -> tuple[int, bool, int]:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO outbox (message_id, topic, payload, qos, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (message_id, topic, data, qos, time.time()),
            )
            if cursor.rowcount == 0:
                existing = conn.execute(
                    "SELECT id FROM outbox WHERE message_id = ?", (message_id,)
                ).fetchone()
                return int(existing[0]), False, 0
            row_id = int(cursor.lastrowid or 0)
            overflow = _count(conn) - self.max_messages
            dropped = 0
            if overflow > 0:
                dropped = conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (overflow,)
                ).rowcount
                conn.execute(
                    "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (dropped,),
                )
            return row_id, True, dropped

        row_id, _, dropped = self._run(insert, "put")
        if dropped:
            log.warning(
                "outbox full (%d messages): dropped the %d oldest undelivered", self.max_messages, dropped
            )
        return row_id

    def ack(self, row_id: int) -> bool:
        """The broker has it: forget the row. False when it was already gone (a duplicate PUBACK)."""
        return self.ack_many([row_id]) == 1

    def ack_many(self, row_ids: Iterable[int]) -> int:
        """Acknowledge several rows in one transaction (one fsync for a burst of PUBACKs)."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            return sum(conn.execute("DELETE FROM outbox WHERE id = ?", (i,)).rowcount for i in ids)

        return self._run(delete, "ack")

    def mark_attempt(self, row_ids: Iterable[int]) -> None:
        """Count a publish attempt (diagnostics: how often a message had to be sent)."""
        ids = [int(i) for i in row_ids]
        if ids:
            self._run(
                lambda conn: conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
                ),
                "mark_attempt",
            )

    # ---- reads ---------------------------------------------------------------------------------
    def peek(self, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
        """The oldest undelivered messages (id > after_id), in the order they were put."""
        if limit <= 0:
            return []
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall(),
            "peek",
            write=False,
        )
        return [OutboxMessage(*row) for row in rows]

    peek_batch = peek

    def depth(self) -> int:
        """Undelivered messages, counted in the file."""
        return self._run(_count, "depth", write=False)

    @property
    def dropped(self) -> int:
        """Messages dropped because the spool was full, since the file was created."""
        row = self._run(
            lambda conn: conn.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone(),
            "read",
            write=False,
        )
        return int(row[0]) if row else 0

    def oldest_age_s(self) -> float | None:
        """Age of the oldest undelivered message; None when the spool is empty."""
        row = self._run(
            lambda conn: conn.execute("SELECT MIN(created_at) FROM outbox").fetchone(), "read", write=False
        )
        if row is None or row[0] is None:
            return None
        return max(0.0, time.time() - float(row[0]))


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
