"""Shadow mode (admin starts, anyone reads): a candidate model judges live parts beside the active one.

The candidate decides nothing; the panel shows where it and the line disagree, with the candidate's view of
those parts. Promoting it is `POST /models/{id}/activate`, the ordinary (audited) activation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, RuntimeDep, Viewer
from app.api.schemas import ErrorBody
from device.station.commands import CommandResult, StartShadow, StopShadow
from device.station.shadow import ShadowStatus

router = APIRouter(prefix="/shadow", tags=["shadow"], responses=AUTH_RESPONSES)
CONTROL = {**CONTROL_RESPONSES, **REFUSED_RESPONSE}
FrameId = Annotated[int, Path(ge=0)]


@router.get("", response_model=ShadowStatus | None)
def shadow_status(runtime: RuntimeDep, _: Viewer) -> ShadowStatus | None:
    """Parts compared, agreement, and the most recent disagreements (null before the first shadow run)."""
    return runtime.shadow_status()


@router.post("", response_model=CommandResult, responses=CONTROL)
def start_shadow(
    body: StartShadow, runtime: RuntimeDep, audit: AuditDep, principal: Admin
) -> CommandResponse:
    """Refused (409) for the active model, an unknown one, or while another runs in the shadow."""
    return execute_command(runtime, audit, principal, body, "POST /shadow")


@router.post("/stop", response_model=CommandResult, responses=CONTROL)
def stop_shadow(runtime: RuntimeDep, audit: AuditDep, principal: Admin) -> CommandResponse:
    return execute_command(runtime, audit, principal, StopShadow(), "POST /shadow/stop")


@router.get(
    "/disagreements/{frame_id}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}},
)
def disagreement_image(frame_id: FrameId, runtime: RuntimeDep, _: Viewer) -> Response:
    """The candidate's view (heatmap and boxes) of a part it judged differently from the line."""
    try:
        data = runtime.shadow_thumbnail(frame_id)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no disagreement kept for frame {frame_id}") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
