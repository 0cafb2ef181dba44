"""Shared FastAPI dependencies: the runtime, settings and audit log of this app, and who is calling.

Routers declare their access level with one of the `Annotated` aliases below (`Viewer`, `Operator`,
`Admin`, `AdminRead`), so the role table in `app.api.security` is visible at every endpoint.
"""

# No `from __future__ import annotations`: FastAPI must see the closures' real `Depends` objects.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.ratelimit import RateLimiter
from app.api.runtime_port import RuntimePort
from app.api.security import KeyStore, Principal, Role
from app.audit import AuditLog
from app.settings import Settings

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key (viewer/operator/admin)."
)
bearer_token = HTTPBearer(auto_error=False, description="The same API key as `Authorization: Bearer <key>`.")


def get_runtime(request: Request) -> RuntimePort:
    runtime: RuntimePort = request.app.state.runtime
    return runtime


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


RuntimeDep = Annotated[RuntimePort, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]


def current_principal(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)] = None,
) -> Principal:
    keys: KeyStore = request.app.state.keys
    presented = api_key or (bearer.credentials if bearer else None)
    principal = keys.authenticate(presented)
    if principal is None:
        request.app.state.api_metrics.auth_failures.inc()
        reason = (
            "unknown API key" if presented else "missing API key (send X-API-Key or Authorization: Bearer)"
        )
        raise HTTPException(401, detail=reason, headers={"WWW-Authenticate": "Bearer"})
    return principal


def optional_principal(request: Request) -> Principal | None:
    """The caller's principal when it presents a valid key, else None: for doors open to all (`/health`)
    that tell a known caller more. Read from the headers directly, so the schema keeps the door keyless."""
    keys: KeyStore = request.app.state.keys
    bearer = request.headers.get("authorization", "")
    token = bearer[7:].strip() if bearer[:7].lower() == "bearer " else None
    return keys.authenticate(request.headers.get(API_KEY_HEADER) or token)


MaybeViewer = Annotated[Principal | None, Depends(optional_principal)]


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """Dependency factory: the caller's principal, if its role is at least `role` (else 403)."""

    def check_role(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role < role:
            raise HTTPException(
                403,
                detail=f"this needs the {role.name} role; key {principal.name!r} has {principal.role.name}",
            )
        return principal

    return check_role


def require_control(role: Role) -> Callable[[Request, Principal], Principal]:
    """Like `require_role`, plus the per-key rate limit that every change to the line goes through."""

    def check_rate(
        request: Request, principal: Annotated[Principal, Depends(require_role(role))]
    ) -> Principal:
        limiter: RateLimiter = request.app.state.rate_limiter
        wait_s = limiter.acquire(principal.name)
        if wait_s > 0:
            request.app.state.api_metrics.rate_limited.inc()
            raise HTTPException(
                429,
                detail=f"too many control requests for key {principal.name!r}; retry in {wait_s:.1f} s",
                headers={"Retry-After": RateLimiter.retry_after_header(wait_s)},
            )
        return principal

    return check_rate


_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "Missing or unknown API key."},
    403: {**_ERROR, "description": "The key's role is too low for this endpoint."},
}
CONTROL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    429: {**_ERROR, "description": "Too many control requests for this key; see Retry-After."},
}

Viewer = Annotated[Principal, Depends(require_role(Role.viewer))]
AdminRead = Annotated[Principal, Depends(require_role(Role.admin))]
Operator = Annotated[Principal, Depends(require_control(Role.operator))]
Admin = Annotated[Principal, Depends(require_control(Role.admin))]
