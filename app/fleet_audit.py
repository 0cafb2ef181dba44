"""Fleet rollout outcomes in the audit log: a station installing, refusing or rolling back a release is a
change to the line like any other, so it is recorded with who asked (the release) and why."""

from __future__ import annotations

from collections.abc import Callable

from app.audit import AuditLog
from device.rollout.wire import StationReport


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
