"""The app factory: one FastAPI app around one runtime, its keys, its audit log and its limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.errors import complete_allow_header
from app.api.limits import BodySizeLimitMiddleware
from app.api.middleware import ApiMetrics, RequestMetricsMiddleware, SecurityHeadersMiddleware
from app.api.ratelimit import RateLimiter
from app.api.routers import (
    alerts,
    archive,
    audit,
    camera,
    config,
    fleet,
    frames,
    health,
    inspection,
    line,
    models,
    panel,
    product_capture,
    recipes,
    reviews,
    shadow,
    status,
    teach,
    trends,
)
from app.api.runtime_port import RuntimePort
from app.api.security import KeyStore
from app.audit import AuditLog
from app.settings import Settings

logger = logging.getLogger(__name__)

_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}
# Any request may be malformed or too large, whatever the endpoint.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "Malformed request (e.g. a body that is not valid JSON)."},
    413: {**_ERROR, "description": "Body larger than api.max_request_bytes."},
}
ROUTERS = (
    health,
    status,
    line,
    camera,
    inspection,
    models,
    recipes,
    product_capture,
    shadow,
    fleet,
    teach,
    alerts,
    reviews,
    archive,
    frames,
    config,
    audit,
    trends,
    panel,
)


def _package_version() -> str:
    try:
        return version("edgeinspect")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(
    runtime: RuntimePort,
    settings: Settings,
    keys: KeyStore | None = None,
    *,
    audit_log: AuditLog | None = None,
) -> FastAPI:
    """Build the API for `runtime`. Keys default to `KeyStore.from_settings`, the audit log to
    `auth.audit_path`; the app closes an audit log it opened itself when it shuts down."""
    keys = keys if keys is not None else KeyStore.from_settings(settings.auth, settings.data_dir)
    owns_audit = audit_log is None
    audit_log = audit_log if audit_log is not None else AuditLog(settings.auth.audit_path)
    logger.info("API keys: %s; audit log: %s", keys.describe(), audit_log.path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_audit:
            audit_log.close()

    app = FastAPI(
        title="EdgeInspect control API",
        version=_package_version(),
        description="Control and monitoring of one inspection station. Roles: see `app.api.security`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
    )
    # Starlette types every handler as taking any Exception; this one is registered for HTTPException only.
    app.add_exception_handler(StarletteHTTPException, complete_allow_header)  # type: ignore[arg-type]
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.keys = keys
    app.state.audit = audit_log
    app.state.rate_limiter = RateLimiter(settings.api.control_rate_per_minute)
    app.state.api_metrics = ApiMetrics()

    for module in ROUTERS:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=panel.STATIC_DIR), name="static")

    # Added innermost first: the body limit sits closest to the routes, CORS outermost.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_request_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.api_metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    return app
