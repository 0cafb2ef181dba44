"""Operator reviews in the real AlertStore (SQLite): replace, filter, count, export, prune, metrics, and the
cursors the review queue pages by."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from device.station.alerts import MAX_REVIEW_COMMENT, AlertCursorError, AlertStore


def _alert(index: int) -> dict[str, Any]:
    return {
        "alert_id": str(uuid.uuid4()),
        "ts": f"2026-01-01T00:00:{index:02d}.000Z",
        "defect_class": "spot",
        "is_defect": True,
        "frame_id": index,
        "score": 3.0,
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
    }


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "alerts.sqlite3")


def _fill(store: AlertStore, count: int) -> list[str]:
    alerts = [_alert(i) for i in range(count)]
    for alert in alerts:
        store.add(alert, None)
    return [a["alert_id"] for a in alerts]


def test_a_review_is_stored_replaced_and_shown_on_the_alert(store: AlertStore) -> None:
    first, second = _fill(store, 2)
    old, new = store.review(first, "false_alarm", "  sticker on the plate ", "op1")
    assert old is None and new["state"] == "false_alarm" and new["comment"] == "sticker on the plate"
    assert new["reviewer"] == "op1" and new["ts"].endswith("Z") and new["taught_model"] is None
    old, new = store.review(first, "confirmed", "", "op2")
    assert old is not None and old["state"] == "false_alarm" and new["state"] == "confirmed"
    _, page = store.query()
    by_id = {a["alert_id"]: a for a in page}
    assert by_id[first]["review"]["reviewer"] == "op2"
    assert by_id[second]["review"] is None
    assert store.get(first)["review"]["state"] == "confirmed"  # type: ignore[index]
    assert store.get("nope") is None


def test_bad_reviews_are_refused_with_the_reason(store: AlertStore) -> None:
    (alert_id,) = _fill(store, 1)
    with pytest.raises(KeyError, match="no alert"):
        store.review("unknown", "confirmed", "", "op")
    with pytest.raises(ValueError, match="state must be one of"):
        store.review(alert_id, "maybe", "", "op")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"at most {MAX_REVIEW_COMMENT}"):
        store.review(alert_id, "confirmed", "x" * (MAX_REVIEW_COMMENT + 1), "op")
    with pytest.raises(ValueError, match="control characters"):
        store.review(alert_id, "confirmed", "bell\x07", "op")
    assert store.get(alert_id)["review"] is None  # type: ignore[index]


def test_filter_counts_and_teaching_bookkeeping(store: AlertStore) -> None:
    ids = _fill(store, 5)
    store.review(ids[0], "confirmed", "", "op")
    store.review(ids[1], "false_alarm", "", "op")
    store.review(ids[2], "false_alarm", "", "op")
    total, page = store.query(review_state="unreviewed")
    assert total == 2 and {a["alert_id"] for a in page} == {ids[3], ids[4]}
    total, page = store.query(review_state="false_alarm", limit=1)
    assert total == 2 and page[0]["alert_id"] == ids[2]  # newest first
    assert store.review_counts() == {"unreviewed": 2, "confirmed": 1, "false_alarm": 2, "taught": 0}
    assert store.reviewed_ids("false_alarm", untaught_only=True) == [ids[2], ids[1]]
    store.mark_taught([ids[1], ids[0]], "model-a")  # a confirmed alert is never marked taught
    assert store.reviewed_ids("false_alarm", untaught_only=True) == [ids[2]]
    assert store.review_counts()["taught"] == 1
    store.review(ids[1], "false_alarm", "again", "op")  # same state: still taught
    assert store.get(ids[1])["review"]["taught_model"] == "model-a"  # type: ignore[index]
    store.review(ids[1], "confirmed", "", "op")  # no longer a false alarm: nothing taught about it
    assert store.get(ids[1])["review"]["taught_model"] is None  # type: ignore[index]


def test_export_is_oldest_first_across_batches(store: AlertStore) -> None:
    ids = _fill(store, 7)
    store.review(ids[3], "confirmed", "real", "op")
    rows = list(store.export_rows(batch=2))
    assert [r["alert_id"] for r in rows] == ids
    assert rows[3]["review"]["comment"] == "real"
    assert [r["alert_id"] for r in store.export_rows(review_state="confirmed")] == [ids[3]]


def test_review_states_name_the_reviewed_alerts_only(store: AlertStore) -> None:
    ids = _fill(store, 600)  # more than one `IN (...)` batch
    store.review(ids[0], "confirmed", "", "op")
    store.review(ids[599], "false_alarm", "", "op")
    store.review(ids[1], "false_alarm", "", "op")
    store.review(ids[1], "confirmed", "", "op")  # a re-review replaces the state
    states = store.review_states([*reversed(ids), ids[0], "not-an-alert"])
    assert states == {ids[0]: "confirmed", ids[1]: "confirmed", ids[599]: "false_alarm"}
    assert store.review_states([]) == {}


def test_pruned_alerts_take_their_reviews_along(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3", keep_alerts=10)
    ids = _fill(store, 5)
    store.review(ids[0], "false_alarm", "", "op")
    _fill(store, 95)  # the 100th insert prunes down to the newest 10
    assert store.get(ids[0]) is None
    assert store.review_counts() == {"unreviewed": 10, "confirmed": 0, "false_alarm": 0, "taught": 0}


def test_counts_are_exported_as_prometheus_gauges(store: AlertStore) -> None:
    ids = _fill(store, 3)
    store.review(ids[0], "false_alarm", "", "op")
    registry = CollectorRegistry()
    store.register_metrics(registry)
    text = generate_latest(registry).decode()
    assert 'edgeinspect_alert_reviews{state="false_alarm"} 1.0' in text
    assert 'edgeinspect_alert_reviews{state="unreviewed"} 2.0' in text
    store.review(ids[1], "confirmed", "", "op")  # read at scrape time
    assert 'edgeinspect_alert_reviews{state="confirmed"} 1.0' in generate_latest(registry).decode()


def test_cursors_keep_a_page_still_while_alerts_arrive(store: AlertStore) -> None:
    ids = _fill(store, 7)  # newest first: ids[6] .. ids[0]
    _, first = store.query(limit=3)
    assert [a["alert_id"] for a in first] == [ids[6], ids[5], ids[4]]
    total, second = store.query(limit=3, before_id=first[-1]["alert_id"])
    assert total == 4 and [a["alert_id"] for a in second] == [ids[3], ids[2], ids[1]]
    newer = _fill(store, 2)  # new alerts arrive: the cursor pages do not move, offset pages would
    assert [a["alert_id"] for a in store.query(limit=3, before_id=ids[4])[1]] == [ids[3], ids[2], ids[1]]
    assert [a["alert_id"] for a in store.query(limit=3, until_id=ids[6])[1]] == [ids[6], ids[5], ids[4]]
    assert [a["alert_id"] for a in store.query(limit=3, offset=3)[1]] == [ids[5], ids[4], ids[3]]
    total, arrived = store.query(limit=1, after_id=ids[6])
    assert total == 2 and arrived[0]["alert_id"] == newer[1]
    # A cursor bounds whatever the filters keep; a reviewed cursor alert still anchors an unreviewed page.
    store.review(ids[3], "confirmed", "", "op")
    store.review(ids[4], "false_alarm", "", "op")
    total, page = store.query(review_state="unreviewed", before_id=ids[4])
    assert total == 3 and [a["alert_id"] for a in page] == [ids[2], ids[1], ids[0]]
    total, page = store.query(review_state="unreviewed", until_id=ids[4], after_id=ids[0], limit=10)
    assert total == 2 and [a["alert_id"] for a in page] == [ids[2], ids[1]]


def test_a_cursor_naming_no_alert_is_refused_with_its_name(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3", keep_alerts=10)
    ids = _fill(store, 100)  # the 100th insert prunes down to the newest 10
    for name in ("before_id", "until_id", "after_id"):
        with pytest.raises(AlertCursorError, match=f"{name}: no alert 'nope'"):
            store.query(**{name: "nope"})
        with pytest.raises(ValueError, match=f"{name}: no alert '{ids[0]}' in the history"):
            store.query(**{name: ids[0]})  # pushed out by newer alerts


def test_counts_since_a_time_leave_older_alerts_out(store: AlertStore) -> None:
    ids = _fill(store, 6)  # captured at 00:00:00 .. 00:00:05
    store.review(ids[1], "confirmed", "", "op")
    store.review(ids[4], "false_alarm", "", "op")
    store.mark_taught([ids[4]], "model-a")
    since = datetime(2026, 1, 1, 0, 0, 3, tzinfo=timezone.utc)
    assert store.review_counts(since=since) == {
        "unreviewed": 2,
        "confirmed": 0,
        "false_alarm": 1,
        "taught": 1,
    }
    assert store.review_counts() == {"unreviewed": 4, "confirmed": 1, "false_alarm": 1, "taught": 1}
    later = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert store.review_counts(since=later) == {
        "unreviewed": 0,
        "confirmed": 0,
        "false_alarm": 0,
        "taught": 0,
    }
