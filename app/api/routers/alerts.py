"""Alert history (viewer): paged, newest first, with a thumbnail per alert."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BeforeValidator

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from app.api.schemas import AlertPage
from device.alerts import ReviewFilter

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=AUTH_RESPONSES)


def _not_a_bare_number(value: object) -> object:
    """Pydantic would read `0.5` as a Unix time; the schema promises ISO 8601, so hold to that."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00Z, not a number")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
IsoDateTime = Annotated[datetime, BeforeValidator(_not_a_bare_number)]


def _as_utc(value: datetime | None, name: str) -> datetime | None:
    """Naive times are taken as UTC (the alerts' own zone); times no clock can hold are a 422."""
    if value is None:
        return None
    try:
        converted = (
            value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        )
        converted.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise HTTPException(422, detail=f"{name}: time out of range ({exc})") from exc
    return converted


# OpenAPI link: where a thumbnail's alert id comes from (clients and stateful fuzzers follow it).
THUMBNAIL_LINK: dict[str, dict[str, object]] = {
    "AlertThumbnail": {
        "operationRef": "#/paths/~1alerts~1{alert_id}~1thumbnail.jpg/get",
        "parameters": {"alert_id": "$response.body#/items/0/alert_id"},
        "description": "Thumbnail of the newest alert on the page.",
    }
}


@router.get("", response_model=AlertPage, responses={200: {"links": THUMBNAIL_LINK}})
def list_alerts(
    runtime: RuntimeDep,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    since: Annotated[IsoDateTime | None, Query(description="ISO 8601; naive means UTC.")] = None,
    until: Annotated[IsoDateTime | None, Query(description="ISO 8601; naive means UTC.")] = None,
    defect_type: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
    defects_only: bool = True,
    review_state: Annotated[
        ReviewFilter | None, Query(description="Only alerts with this operator review (or none).")
    ] = None,
) -> AlertPage:
    total, items = runtime.alert_store.query(
        limit=limit,
        offset=offset,
        since=_as_utc(since, "since"),
        until=_as_utc(until, "until"),
        defect_type=defect_type,
        defects_only=defects_only,
        review_state=review_state,
    )
    return AlertPage(total=total, limit=limit, offset=offset, items=items)


@router.get(
    "/{alert_id}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No such alert or no thumbnail."}},
)
def thumbnail(
    alert_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")],
    runtime: RuntimeDep,
    _: Viewer,
) -> Response:
    data = runtime.alert_store.thumbnail(alert_id)
    if data is None:
        raise HTTPException(404, detail=f"no thumbnail for alert {alert_id!r}")
    # Alerts never change, so the browser may keep the thumbnail.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
