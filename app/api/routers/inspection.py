"""Decision knobs (operator): threshold, region of interest, minimum defect area."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.api.control import REFUSED_RESPONSE, CommandResponse, apply_config_patch, execute_command
from app.api.deps import CONTROL_RESPONSES, AuditDep, Operator, RuntimeDep
from app.api.schemas import (
    ConfigPatchResult,
    RoiPreviewRequest,
    RoiRequest,
    SensitivityRequest,
    ThresholdRequest,
)
from device.config import RegionOfInterest
from device.station.commands import (
    ClearRegionOfInterest,
    CommandResult,
    ResetThreshold,
    SetRegionOfInterest,
    SetThreshold,
)
from device.station.roi_preview import RoiPreview

router = APIRouter(
    prefix="/inspection", tags=["inspection"], responses={**CONTROL_RESPONSES, **REFUSED_RESPONSE}
)


@router.post("/threshold", response_model=CommandResult)
def set_threshold(
    body: ThresholdRequest, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    return execute_command(
        runtime, audit, principal, SetThreshold(threshold=body.threshold), "POST /inspection/threshold"
    )


@router.post("/threshold/reset", response_model=CommandResult)
def reset_threshold(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    """Back to the threshold calibrated with the active model."""
    return execute_command(runtime, audit, principal, ResetThreshold(), "POST /inspection/threshold/reset")


@router.post(
    "/roi/preview",
    response_model=RoiPreview,
    responses={409: {"description": "Nothing to preview with (no model loaded)."}},
)
def preview_roi(body: RoiPreviewRequest, runtime: RuntimeDep, principal: Operator) -> RoiPreview:
    """What this ROI would do to judging, before applying it: recent raw frames scored with the active
    model under the current ROI and under this one (reject shares, scores, `ok`/`warn`). Changes nothing,
    so it is not audited; it takes up to a few seconds (two inferences per frame scored)."""
    roi = RegionOfInterest(**body.model_dump())
    try:
        return runtime.preview_roi(roi)
    except ValueError as exc:
        raise HTTPException(409, detail=str(exc)) from exc


@router.post("/roi", response_model=CommandResult)
def set_roi(body: RoiRequest, runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    """Refused (409, the preview in `details`) when the ROI preview warns, unless `force` is true."""
    command = SetRegionOfInterest(**body.model_dump())
    return execute_command(runtime, audit, principal, command, "POST /inspection/roi")


@router.delete("/roi", response_model=CommandResult)
def clear_roi(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    return execute_command(runtime, audit, principal, ClearRegionOfInterest(), "DELETE /inspection/roi")


@router.post(
    "/sensitivity",
    response_model=ConfigPatchResult,
    responses={422: {"description": "Validation error or the runtime refused the value."}},
)
def set_sensitivity(
    body: SensitivityRequest, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> ConfigPatchResult:
    patch = {"inspection": {"min_defect_area_px": body.min_defect_area_px}}
    return apply_config_patch(runtime, audit, principal, patch, "POST /inspection/sensitivity")
