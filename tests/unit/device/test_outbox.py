"""The spool's promises: durable on return, in order, bounded (drop oldest, counted), survives restarts
and damaged files."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from device.station.outbox import Outbox, OutboxError

TOPIC = "edgeinspect/line1/st1/alert"


def quick_check_ok(path: Path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA quick_check")] == ["ok"]
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def fill(outbox: Outbox, ids: range, prefix: str = "a") -> list[int]:
    return [outbox.put(f"{prefix}{i}", TOPIC, f'{{"i": {i}}}'.encode()) for i in ids]


def test_messages_come_back_in_put_order_and_leave_on_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", 100) as outbox:
        rows = fill(outbox, range(5))
        assert rows == sorted(rows)
        peeked = outbox.peek(10)
        assert [m.message_id for m in peeked] == [f"a{i}" for i in range(5)]
        assert peeked[0].payload == b'{"i": 0}' and peeked[0].qos == 1 and peeked[0].topic == TOPIC
        assert [m.message_id for m in outbox.peek(2, after_id=rows[1])] == ["a2", "a3"]
        assert outbox.ack(rows[0]) is True
        assert outbox.ack(rows[0]) is False  # a duplicate PUBACK changes nothing
        assert outbox.ack_many(rows[1:3]) == 2
        assert outbox.depth() == 2
        assert [m.message_id for m in outbox.peek(10)] == ["a3", "a4"]


def test_spool_is_sqlite_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, 100) as outbox:
        fill(outbox, range(1))
        conn = outbox._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_same_message_id_is_stored_once(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", 100) as outbox:
        first = outbox.put("alert-1", TOPIC, b"x")
        again = outbox.put("alert-1", TOPIC, b"x")
        assert first == again
        assert outbox.depth() == 1


def test_restart_keeps_the_backlog_in_order_and_new_ids_follow(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, 100) as outbox:
        rows = fill(outbox, range(4))
        outbox.ack(rows[0])
    with Outbox(path, 100) as reopened:
        assert reopened.depth() == 3
        assert [m.message_id for m in reopened.peek(10)] == ["a1", "a2", "a3"]
        newer = fill(reopened, range(4, 6))
        assert min(newer) > max(rows)  # AUTOINCREMENT: never reuses an id, so order holds
        assert [m.message_id for m in reopened.peek(10)][-2:] == ["a4", "a5"]


def test_full_spool_drops_the_oldest_and_counts_them_across_restarts(tmp_path: Path, caplog) -> None:
    path = tmp_path / "outbox.sqlite3"
    with (
        caplog.at_level(logging.WARNING, logger="device.station.outbox"),
        Outbox(path, max_messages=10) as outbox,
    ):
        fill(outbox, range(15))
        assert outbox.depth() == 10
        assert outbox.dropped == 5
        assert outbox.peek(1)[0].message_id == "a5"
    assert "dropped the 1 oldest" in caplog.text
    with Outbox(path, max_messages=10) as reopened:
        assert reopened.dropped == 5
        assert reopened.depth() == 10


def test_oldest_age_is_none_when_empty(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", 100) as outbox:
        assert outbox.oldest_age_s() is None
        fill(outbox, range(1))
        age = outbox.oldest_age_s()
        assert age is not None and age >= 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"payload": '{"a": 1}'}, TypeError, "payload must be bytes"),
        ({"qos": 3}, ValueError, "qos must be 0, 1 or 2"),
        ({"message_id": ""}, ValueError, "message_id"),
        ({"message_id": "x" * 300}, ValueError, "message_id"),
        ({"topic": "a/+/b"}, ValueError, "without wildcards"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(tmp_path: Path, kwargs, error, match) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", 100) as outbox:
        fill(outbox, range(2))
        call = {"message_id": "bad", "topic": TOPIC, "payload": b"{}", "qos": 1, **kwargs}
        with pytest.raises(error, match=match):
            outbox.put(**call)
        assert outbox.depth() == 2
        assert [m.message_id for m in outbox.peek(10)] == ["a0", "a1"]


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path, caplog) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with caplog.at_level(logging.ERROR, logger="device.station.outbox"), Outbox(path, 100) as outbox:
        assert outbox.recovered_from is not None
        assert outbox.recovered_from.read_bytes().startswith(b"this is not sqlite")
        assert outbox.depth() == 0
        fill(outbox, range(2))
        assert outbox.depth() == 2
    assert "moved it to" in caplog.text and "NOT delivered" in caplog.text


def test_damaged_pages_are_detected_and_the_line_keeps_spooling(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path, 10_000).close()  # creates the schema
    conn = sqlite3.connect(path)
    with conn:  # one transaction: a few hundred rows spread over many pages
        conn.executemany(
            "INSERT INTO outbox (message_id, topic, payload, qos, created_at) VALUES (?, ?, ?, 1, 0)",
            [(f"old{i}", TOPIC, bytes(200)) for i in range(300)],
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page_size = 4096
    for offset in range(page_size, len(data), page_size):  # keep the header, scribble over every page
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    assert not quick_check_ok(path)
    with Outbox(path, 10_000) as outbox:
        assert outbox.recovered_from is not None and outbox.recovered_from.exists()
        fill(outbox, range(3))
        assert [m.message_id for m in outbox.peek(10)] == ["a0", "a1", "a2"]


def test_concurrent_writers_and_an_acker_keep_count_and_order(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", 100_000) as outbox:
        errors: list[BaseException] = []

        def writer(name: str) -> None:
            try:
                fill(outbox, range(25), prefix=f"{name}-")
            except BaseException as exc:
                errors.append(exc)

        def acker() -> None:
            try:
                for _ in range(10):
                    outbox.ack_many(m.id for m in outbox.peek(3))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
        threads.append(threading.Thread(target=acker))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        remaining = outbox.peek(1000)
        assert len(remaining) == outbox.depth()
        assert [m.id for m in remaining] == sorted(m.id for m in remaining)
        for name in ("w0", "w1", "w2"):  # each writer's messages keep their relative order
            mine = [int(m.message_id.split("-")[1]) for m in remaining if m.message_id.startswith(name)]
            assert mine == sorted(mine)


def test_closed_outbox_says_so(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", 100)
    outbox.close()
    with pytest.raises(OutboxError, match="closed"):
        outbox.put("a", TOPIC, b"x")
