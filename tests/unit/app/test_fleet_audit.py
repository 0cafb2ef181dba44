"""Doors besides the API land in the real audit log: fleet rollout outcomes (not progress), MQTT commands and
OPC UA writes; the API's own calls are left to the API, which knows the caller's key."""

from __future__ import annotations

from pathlib import Path

from app.audit import AuditLog
from app.fleet_audit import command_auditor, rollout_auditor
from device.station.commands import CommandResult, SetThreshold
from device.wire.fleet import StationReport


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


def test_mqtt_and_opcua_commands_are_audited_and_api_calls_left_to_the_api(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.sqlite3")
    record = command_auditor(audit)
    applied = CommandResult(ok=True, command="set_threshold", old_value=2.0, new_value=2.5)
    refused = CommandResult(ok=False, command="set_threshold", message="out of range")
    record(SetThreshold(threshold=2.5), "opcua:op", applied)
    record(SetThreshold(threshold=3.0), "mqtt", refused)
    record(SetThreshold(threshold=2.5), "alice (operator)", applied)  # the API audits this one itself
    record(SetThreshold(threshold=2.5), "rollout:pcb-2-a", applied)  # its report is audited instead
    total, rows = audit.query()
    assert total == 2
    mqtt, opcua = rows  # newest first
    assert (opcua["actor"], opcua["role"], opcua["ok"]) == ("opcua:op", "opcua", True)
    assert (opcua["old_value"], opcua["new_value"]) == (2.0, 2.5)
    assert (mqtt["role"], mqtt["ok"], mqtt["new_value"], mqtt["message"]) == (
        "mqtt",
        False,
        {"threshold": 3.0},
        "out of range",
    )
    audit.close()
