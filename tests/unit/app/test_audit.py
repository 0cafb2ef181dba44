"""The audit log keeps every change, newest first, across restarts."""

from __future__ import annotations

from pathlib import Path

from app.audit import AuditLog


def test_records_page_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "audit.sqlite3"
    log = AuditLog(path)
    for value in range(5):
        log.record(
            actor="op",
            role="operator",
            action="set_threshold",
            target="POST /inspection/threshold",
            ok=True,
            old_value=value,
            new_value=value + 1,
        )
    log.record(
        actor="admin",
        role="admin",
        action="upload_model",
        target="POST /models m.onnx",
        ok=False,
        new_value={"sha256": "ab"},
        message="sha256 mismatch",
    )
    log.close()

    reopened = AuditLog(path)
    total, page = reopened.query(limit=2)
    assert total == 6
    assert page[0]["action"] == "upload_model" and page[0]["ok"] is False
    assert page[0]["new_value"] == {"sha256": "ab"} and page[0]["message"] == "sha256 mismatch"
    assert page[1]["old_value"] == 4 and page[1]["new_value"] == 5
    _, last = reopened.query(limit=10, offset=5)
    assert last[0]["old_value"] == 0 and last[0]["ts"].endswith("Z")
    reopened.close()
