"""Camera control (operator): a software trigger; exposure, gain or trigger mode on a GenICam camera.

Both go through the runtime's one command door and the audit log, like every other change.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command
from app.api.deps import CONTROL_RESPONSES, AuditDep, Operator, RuntimeDep
from device.station.commands import CommandResult, SetCameraSettings, TriggerCamera

router = APIRouter(prefix="/camera", tags=["camera"], responses={**CONTROL_RESPONSES, **REFUSED_RESPONSE})


@router.post("/trigger", response_model=CommandResult)
def trigger(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    """One software trigger; refused (409) unless the camera is GenICam in software-trigger mode."""
    return execute_command(runtime, audit, principal, TriggerCamera(), "POST /camera/trigger")


@router.post("/settings", response_model=CommandResult)
def settings(
    body: SetCameraSettings, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Exposure (us), gain (dB) and/or trigger mode on the running GenICam camera; kept across reconnects."""
    return execute_command(runtime, audit, principal, body, "POST /camera/settings")
