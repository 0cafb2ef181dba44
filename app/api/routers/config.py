"""Settings (viewer reads, admin patches): only the fields that are safe to change on a running line."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.control import apply_config_patch
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, RuntimeDep, Viewer
from app.api.schemas import ConfigPatch, ConfigPatchResult

router = APIRouter(prefix="/config", tags=["config"], responses=AUTH_RESPONSES)


@router.get("", response_model=dict[str, Any])
def get_config(runtime: RuntimeDep, _: Viewer) -> dict[str, Any]:
    """Current settings with secrets redacted."""
    return runtime.config_view()


@router.patch(
    "",
    response_model=ConfigPatchResult,
    responses={
        **CONTROL_RESPONSES,
        422: {"description": "Unknown or not live-changeable field, or a bad value."},
    },
)
def patch_config(
    body: ConfigPatch, runtime: RuntimeDep, audit: AuditDep, principal: Admin
) -> ConfigPatchResult:
    """Body is nested like the settings file: `{"inspection": {"threshold": 0.42}}`."""
    patch = body.as_patch()
    if not patch:
        return ConfigPatchResult(changes=[])
    return apply_config_patch(runtime, audit, principal, patch, "PATCH /config")
