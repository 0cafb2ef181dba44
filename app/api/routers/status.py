"""What the line is doing now, and who the caller is (the panel shows the role after login)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from app.api.schemas import WhoAmI
from device.station.status import RuntimeStatus

router = APIRouter(tags=["status"], responses=AUTH_RESPONSES)


# OpenAPI link: the threshold in force is a valid starting point for a change (clients and fuzzers follow it).
THRESHOLD_LINK: dict[str, dict[str, object]] = {
    "SetThreshold": {
        "operationRef": "#/paths/~1inspection~1threshold/post",
        "requestBody": {"threshold": "$response.body#/threshold"},
        "description": "Set the threshold, starting from the one in force.",
    }
}


@router.get("/status", response_model=RuntimeStatus, responses={200: {"links": THRESHOLD_LINK}})
def status(runtime: RuntimeDep, _: Viewer) -> RuntimeStatus:
    return runtime.status()


@router.get("/auth/whoami", response_model=WhoAmI)
def whoami(request: Request, principal: Viewer) -> WhoAmI:
    return WhoAmI(name=principal.name, role=principal.role.name, auth_enabled=request.app.state.keys.enabled)
