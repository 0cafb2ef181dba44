"""Alert history (viewer): paged, newest first, with a thumbnail per alert.

Two ways to page: `offset` (simple, but a page shifts down as new alerts arrive) and cursors by alert id
(`before_id` the last alert of the page before, `until_id` a page's newest alert to pin it, `after_id` to
count what arrived since), which hold still: the panel's review queue pages that way."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from app.api.filters import PageLimit, PageOffset, TimeQuery, utc_range
from app.api.schemas import AlertPage
from device.station.alerts import AlertCursorError, ReviewFilter

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=AUTH_RESPONSES)

ALERT_ID_PATTERN = r"^[A-Za-z0-9_\-]+$"


def _cursor(description: str) -> Any:
    return Query(min_length=1, max_length=64, pattern=ALERT_ID_PATTERN, description=description)


BeforeId = Annotated[
    str | None, _cursor("Only alerts older than this one: the next page after a page ending in it.")
]
UntilId = Annotated[str | None, _cursor("Only this alert and older ones: pins a page at its newest alert.")]
AfterId = Annotated[str | None, _cursor("Only alerts newer than this one: what arrived since.")]


# OpenAPI link: where a thumbnail's alert id comes from (clients and stateful fuzzers follow it).
THUMBNAIL_LINK: dict[str, dict[str, object]] = {
    "AlertThumbnail": {
        "operationRef": "#/paths/~1alerts~1{alert_id}~1thumbnail.jpg/get",
        "parameters": {"alert_id": "$response.body#/items/0/alert_id"},
        "description": "Thumbnail of the newest alert on the page.",
    }
}


@router.get(
    "",
    response_model=AlertPage,
    responses={
        200: {"links": THUMBNAIL_LINK},
        422: {"description": "A bad filter, or a cursor naming no alert in the history."},
    },
)
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
    before_id: BeforeId = None,
    until_id: UntilId = None,
    after_id: AfterId = None,
) -> AlertPage:
    """Newest first; `total` counts every match (cursors included), `next_before_id` continues."""
    since, until = utc_range(since, until)
    try:
        total, items = runtime.alert_store.query(
            limit=limit,
            offset=offset,
            since=since,
            until=until,
            defect_type=defect_type,
            defects_only=defects_only,
            review_state=review_state,
            before_id=before_id,
            until_id=until_id,
            after_id=after_id,
        )
    except AlertCursorError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    more = bool(items) and offset + len(items) < total
    return AlertPage(
        total=total,
        limit=limit,
        offset=offset,
        items=items,
        next_before_id=str(items[-1]["alert_id"]) if more else None,
    )


@router.get(
    "/{alert_id}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No such alert or no thumbnail."}},
)
def thumbnail(
    alert_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ALERT_ID_PATTERN)],
    runtime: RuntimeDep,
    _: Viewer,
) -> Response:
    data = runtime.alert_store.thumbnail(alert_id)
    if data is None:
        raise HTTPException(404, detail=f"no thumbnail for alert {alert_id!r}")
    # Alerts never change, so the browser may keep the thumbnail.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
