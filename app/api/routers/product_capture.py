"""Learn a new product from the live camera (operator): capture N good parts, look, strike bad ones.

The images land in the MVTec layout under `<data_dir>/datasets/<product>/train/good`; `POST /capture/build`
then builds the product's model on the station itself (no torch, low priority while the line judges) and
registers it. Starting, cancelling, striking and building go through the runtime's command door and the
audit log; the progress, the contact sheet and the build's held-back check are read-only views.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, AuditDep, Operator, RuntimeDep, Viewer
from app.api.schemas import ErrorBody
from device.station.commands import BuildProduct, CancelCapture, CaptureProduct, CommandResult, StrikeCapture
from device.station.product_build import BuildStatus
from device.station.product_capture import CaptureStatus

router = APIRouter(prefix="/capture", tags=["capture"], responses=AUTH_RESPONSES)
CONTROL = {**CONTROL_RESPONSES, **REFUSED_RESPONSE}
ImageName = Annotated[str, Path(pattern=r"^[0-9]{4,6}\.png$")]


@router.get("", response_model=CaptureStatus | None)
def capture_status(runtime: RuntimeDep, _: Viewer) -> CaptureStatus | None:
    """Progress (kept of target), the images on the contact sheet, and why a capture failed; null before
    the first capture."""
    return runtime.capture_status()


@router.post("", response_model=CommandResult, responses=CONTROL)
def start_capture(
    body: CaptureProduct, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Start keeping good parts for `product` (refused while another capture runs, or when the product's
    folder already holds images)."""
    return execute_command(runtime, audit, principal, body, "POST /capture")


@router.post("/cancel", response_model=CommandResult, responses=CONTROL)
def cancel_capture(runtime: RuntimeDep, audit: AuditDep, principal: Operator) -> CommandResponse:
    return execute_command(runtime, audit, principal, CancelCapture(), "POST /capture/cancel")


@router.get(
    "/images/{image}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorBody}},
)
def capture_image(image: ImageName, runtime: RuntimeDep, _: Viewer) -> Response:
    """One captured image, for the contact sheet."""
    try:
        path = runtime.capture_image(image)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no captured image {image}") from None
    return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.delete("/images/{image}", response_model=CommandResult, responses=CONTROL)
def strike_image(
    image: ImageName, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Strike a bad capture: the file is deleted; a running capture keeps one more part instead."""
    command = StrikeCapture(image=image)
    return execute_command(runtime, audit, principal, command, f"DELETE /capture/images/{image}")


@router.post("/build", response_model=CommandResult, responses=CONTROL)
def build_model(
    body: BuildProduct, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Build `product`'s model from its captured good parts (refused without a build template, with fewer
    than 8 images, while that product is still captured or another build runs)."""
    return execute_command(runtime, audit, principal, body, "POST /capture/build")


@router.get("/build", response_model=BuildStatus | None)
def build_status(runtime: RuntimeDep, _: Viewer) -> BuildStatus | None:
    """The build's progress; once done, the registered model id and its check on the held-back captures
    (false-reject rate, score histogram, worst images); null before the first build."""
    return runtime.build_status()
