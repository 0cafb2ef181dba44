"""Line control (operator): start/stop capture, pause/resume judging, ask the PLC for a line speed."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command
from app.api.deps import CONTROL_RESPONSES, AuditDep, Operator, RuntimeDep
from app.api.schemas import LineSpeedRequest
from device.station.commands import (
    CommandResult,
    PauseInspection,
    RequestLineSpeed,
    ResumeInspection,
    StartLine,
    StopLine,
)

router = APIRouter(prefix="/line", tags=["line"], responses={**CONTROL_RESPONSES, **REFUSED_RESPONSE})


@router.post("/start", response_model=CommandResult)
def start(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    return execute_command(runtime, audit, principal, StartLine(), "POST /line/start")


@router.post("/stop", response_model=CommandResult)
def stop(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    return execute_command(runtime, audit, principal, StopLine(), "POST /line/stop")


@router.post("/pause", response_model=CommandResult)
def pause(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    """Capture continues; frames are not judged and no alerts are raised."""
    return execute_command(runtime, audit, principal, PauseInspection(), "POST /line/pause")


@router.post("/resume", response_model=CommandResult)
def resume(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    return execute_command(runtime, audit, principal, ResumeInspection(), "POST /line/resume")


@router.post("/speed", response_model=CommandResult)
def speed(
    body: LineSpeedRequest, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Forwarded to the PLC on the line-speed topic; the PLC decides."""
    command = RequestLineSpeed(parts_per_minute=body.parts_per_minute)
    return execute_command(runtime, audit, principal, command, "POST /line/speed")
