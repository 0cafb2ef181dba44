"""What the line is doing now, and who the caller is (the panel shows the role after login)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from app.api.schemas import WhoAmI
from device.status import RuntimeStatus

router = APIRouter(tags=["status"], responses=AUTH_RESPONSES)


@router.get("/status", response_model=RuntimeStatus)
def status(runtime: RuntimeDep, _: Viewer) -> RuntimeStatus:
    return runtime.status()


@router.get("/auth/whoami", response_model=WhoAmI)
def whoami(request: Request, principal: Viewer) -> WhoAmI:
    return WhoAmI(name=principal.name, role=principal.role.name, auth_enabled=request.app.state.keys.enabled)
