"""Liveness for orchestrators (no key) and Prometheus metrics (viewer key, as a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import AUTH_RESPONSES, MaybeViewer, RuntimeDep, Viewer
from device.environment import environment_record
from device.station.status import HealthReport

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "The line cannot inspect."}},
)
def health(runtime: RuntimeDep, response: Response, caller: MaybeViewer) -> HealthReport:
    """200 while the line inspects (`ok` or `degraded`), 503 when it is `down`; needs no key. A caller
    with a key also gets `environment` (versions, providers, CPU flags: what a field report needs, and
    more than an anonymous prober should learn)."""
    report: HealthReport = runtime.health()
    if caller is not None:
        report = report.model_copy(update={"environment": environment_record()})
    if report.status == "down":
        response.status_code = 503
    return report


@router.get(
    "/metrics",
    response_class=Response,
    responses={**AUTH_RESPONSES, 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(runtime: RuntimeDep, request: Request, _: Viewer) -> Response:
    """The runtime's metrics plus the API's own request counters, in Prometheus text format."""
    body = runtime.metrics_text() + request.app.state.api_metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
