"""What reaches the line through a door other than the API goes into the same audit log: MQTT commands,
OPC UA writes and method calls, and fleet rollout outcomes (a station installing, refusing or rolling back a
release). The API records its own calls with the caller's key and role (`app.api.control`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from app.audit import AuditLog
from device.station.commands import Command, CommandResult
from device.wire.fleet import StationReport

if TYPE_CHECKING:  # the runtime pulls in OpenCV and ONNX Runtime; the CLI imports this module at start
    from device.station.runtime import EdgeRuntime

# Actor prefix -> the door it came through, as the audit log's role column shows it.
DOORS = {"mqtt": "mqtt", "opcua:": "opcua"}


def door_of(actor: str) -> str | None:
    """The door a command came through, for actors the API does not audit itself; None otherwise."""
    return next((door for prefix, door in DOORS.items() if actor.startswith(prefix)), None)


def command_auditor(audit: AuditLog) -> Callable[[Command, str, CommandResult], None]:
    """A runtime command listener that appends each MQTT or OPC UA command, applied or refused, to `audit`."""

    def record(command: Command, actor: str, result: CommandResult) -> None:
        door = door_of(actor)
        if door is None:
            return
        requested = command.model_dump(exclude={"command", "request_id"}) or None
        audit.record(
            actor=actor,
            role=door,
            action=command.command,
            target=door,
            ok=result.ok,
            old_value=result.old_value,
            new_value=result.new_value if result.new_value is not None else requested,
            message=result.message,
        )

    return record


def rollout_auditor(audit: AuditLog) -> Callable[[StationReport], None]:
    """A report listener that appends each decided report (not progress) to `audit`."""

    def record(report: StationReport) -> None:
        if not report.final:
            return
        audit.record(
            actor=f"release:{report.release_id or 'unknown'}",
            role="fleet",
            action=f"fleet rollout {report.outcome}",
            target=report.station_id,
            ok=report.ok,
            new_value=report.active_model_id,
            message=report.reason,
        )

    return record


def audit_every_door(runtime: EdgeRuntime, audit: AuditLog) -> None:
    """Hang the audit log on every door of `runtime` besides the API (which audits its own calls)."""
    runtime.add_command_listener(command_auditor(audit))
    if runtime.rollout is not None:
        runtime.rollout.add_listener(rollout_auditor(audit))
