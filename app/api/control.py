"""The one path from an HTTP request to a change on the line: run it through the runtime, audit it.

Every control router calls `execute_command` or `apply_config_patch`, so no change can skip the audit log
and every refusal reaches the caller with the runtime's own reason; routers with their own work (reviews,
teaching, uploads, exports) write their entries through `record_action`.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from app.api.runtime_port import RuntimePort
from app.api.schemas import ConfigChange, ConfigPatchResult
from app.api.security import Principal
from app.audit import AuditLog
from device.station.commands import Command, CommandResult

REFUSED_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": CommandResult, "description": "The runtime refused the command (reason in `message`)."}
}
# What a command endpoint returns: the result (200), or the refusal as a 409 response.
CommandResponse = CommandResult | JSONResponse


def record_action(
    audit: AuditLog,
    principal: Principal,
    action: str,
    target: str,
    *,
    ok: bool,
    old_value: Any = None,
    new_value: Any = None,
    message: str = "",
) -> None:
    """One audit entry for what `principal` asked: who, in which role, what, on what, and how it went."""
    audit.record(
        actor=principal.name,
        role=principal.role.name,
        action=action,
        target=target,
        ok=ok,
        old_value=old_value,
        new_value=new_value,
        message=message,
    )


def execute_command(
    runtime: RuntimePort, audit: AuditLog, principal: Principal, command: Command, target: str
) -> CommandResponse:
    """Run `command`; 200 with the result when it worked, 409 with the result when the runtime refused."""
    action, requested = command.command, command.model_dump(exclude={"command", "request_id"}) or None
    try:
        result = runtime.execute(command, principal.actor)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        record_action(audit, principal, action, target, ok=False, new_value=requested, message=failure)
        raise
    record_action(
        audit,
        principal,
        action,
        target,
        ok=result.ok,
        old_value=result.old_value,
        new_value=result.new_value if result.new_value is not None else requested,
        message=result.message,
    )
    if not result.ok:
        return JSONResponse(status_code=409, content=result.model_dump(mode="json"))
    return result


def apply_config_patch(
    runtime: RuntimePort, audit: AuditLog, principal: Principal, patch: dict[str, Any], target: str
) -> ConfigPatchResult:
    """Apply a live settings patch; a refusal (ValueError naming the field) becomes a 422."""

    def record(**entry: Any) -> None:
        entry.setdefault("target", target)
        record_action(audit, principal, "patch_config", **entry)

    try:
        changes = runtime.patch_config(patch, principal.actor)
    except ValueError as exc:
        record(ok=False, new_value=patch, message=str(exc))
        raise HTTPException(422, detail=str(exc)) from exc
    except Exception as exc:
        record(ok=False, new_value=patch, message=f"{type(exc).__name__}: {exc}")
        raise
    if not changes:
        record(ok=True, new_value=patch, message="no change")
    for change in changes:
        record(
            target=f"{target} {change.get('field')}",
            ok=True,
            old_value=change.get("old"),
            new_value=change.get("new"),
        )
    return ConfigPatchResult(changes=[ConfigChange(**change) for change in changes])
