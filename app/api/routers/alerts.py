"""Alert history (viewer): paged, newest first, with a thumbnail per alert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from app.api.filters import PageLimit, PageOffset, TimeQuery, utc_range
from app.api.schemas import AlertPage
from device.alerts import ReviewFilter

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=AUTH_RESPONSES)


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
    limit: PageLimit = 50,
    offset: PageOffset = 0,
    since: TimeQuery = None,
    until: TimeQuery = None,
    defect_type: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
    defects_only: bool = True,
    review_state: Annotated[
        ReviewFilter | None, Query(description="Only alerts with this operator review (or none).")
    ] = None,
) -> AlertPage:
    since, until = utc_range(since, until)
    total, items = runtime.alert_store.query(
        limit=limit,
        offset=offset,
        since=since,
        until=until,
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
