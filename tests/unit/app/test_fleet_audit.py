"""Fleet rollout outcomes land in the real audit log; progress reports do not."""

from __future__ import annotations

from pathlib import Path

from app.audit import AuditLog
from app.fleet_audit import rollout_auditor
from device.rollout.wire import StationReport


def _report(outcome: str, reason: str = "") -> StationReport:
    return StationReport.model_validate(
        {
            "station_id": "st1",
            "release_id": "pcb-2-a",
            "outcome": outcome,
            "reason": reason,
            "active_model_id": "pcb-abc",
            "ts": "2025-01-01T00:00:00.000Z",
        }
    )


def test_decided_reports_are_audited_with_their_reason(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.sqlite3")
    record = rollout_auditor(audit)
    for outcome in ("waiting", "installing", "refused", "activated"):
        record(_report(outcome, f"because {outcome}"))
    total, rows = audit.query()
    assert total == 2
    refused, activated = rows[1], rows[0]  # newest first
    assert refused["action"] == "fleet rollout refused" and not refused["ok"]
    assert refused["message"] == "because refused" and refused["actor"] == "release:pcb-2-a"
    assert activated["ok"] and activated["target"] == "st1" and activated["new_value"] == "pcb-abc"
    audit.close()
