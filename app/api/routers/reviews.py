"""Alert review: an operator marks an alert confirmed or a false alarm (audited); counts and a CSV export.

Reviews are what teaching learns from (`POST /models/teach-normal` takes the false alarms) and what a
quality engineer reads back: the export joins every alert with its review.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from app.api.control import record_action
from app.api.deps import (
    AUTH_RESPONSES,
    CONTROL_RESPONSES,
    AuditDep,
    Operator,
    RuntimeDep,
    SettingsDep,
    Viewer,
)
from app.api.filters import TimeQuery, as_utc, utc_range
from app.api.schemas import ErrorBody, _Request
from device.config import TrendSettings
from device.station.alerts import MAX_REVIEW_COMMENT, ReviewFilter, ReviewState, check_review_comment, iso_utc
from device.station.trends import resolve_zone, shift_boundaries

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=AUTH_RESPONSES)

AlertId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
CSV_COLUMNS = (
    "alert_id",
    "ts",
    "frame_id",
    "line_id",
    "station_id",
    "score",
    "threshold",
    "defect_class",
    "model_name",
    "model_version",
    "review_state",
    "review_comment",
    "reviewer",
    "reviewed_at",
    "taught_model",
)
COMMENT_PATTERN = r"^[^\x00-\x08\x0B-\x1F]*$"
# A cell starting with one of these is a formula to a spreadsheet (CSV injection): it is quoted with '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReviewRequest(_Request):
    state: ReviewState = Field(..., description="`confirmed` (a real defect) or `false_alarm`.")
    comment: str = Field(
        "",
        max_length=MAX_REVIEW_COMMENT,
        pattern=COMMENT_PATTERN,
        description="Why; shown in exports and audit. Plain text: no control characters but tab and newline.",
    )

    @field_validator("comment")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        return check_review_comment(value)


class Review(BaseModel):
    state: ReviewState
    comment: str
    reviewer: str
    ts: str = Field(..., description="When it was reviewed, ISO 8601 UTC.")
    taught_model: str | None = Field(None, description="The model this false alarm was taught into, if any.")


class ReviewResult(BaseModel):
    alert_id: str
    review: Review
    previous: Review | None = Field(None, description="The review this one replaced.")


class ShiftWindow(BaseModel):
    label: str = Field(..., description="Local clock times, e.g. `14:00-22:00`.")
    start: str = Field(..., description="Shift start, ISO 8601 with the plant's UTC offset.")
    end: str = Field(
        ..., description="Shift end (the next shift's start), ISO 8601 with the plant's UTC offset."
    )


class ReviewSummary(BaseModel):
    total: int
    unreviewed: int
    confirmed: int
    false_alarm: int
    taught: int = Field(..., description="False alarms taught into a model version.")
    since: str | None = Field(
        None,
        description="Only alerts captured at or after this time (ISO 8601 UTC) were counted; absent: all.",
    )
    shift: ShiftWindow | None = Field(None, description="The shift counted (with `current_shift=true`).")


@router.post(
    "/{alert_id}/review",
    response_model=ReviewResult,
    responses={**CONTROL_RESPONSES, 404: {"model": ErrorBody, "description": "No such alert."}},
)
def review_alert(
    alert_id: AlertId, body: ReviewRequest, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> ReviewResult:
    """Mark an alert confirmed or a false alarm; a second review replaces the first (both are audited)."""
    target = f"POST /alerts/{alert_id}/review"
    requested = body.model_dump()
    try:
        old, new = runtime.alert_store.review(alert_id, body.state, body.comment, principal.name)
    except KeyError as exc:
        record_action(
            audit, principal, "review_alert", target, ok=False, new_value=requested, message="no such alert"
        )
        raise HTTPException(404, detail=f"no alert {alert_id!r}") from exc
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    record_action(
        audit,
        principal,
        "review_alert",
        target,
        ok=True,
        old_value=old,
        new_value=new,
        message="re-reviewed" if old is not None else "",
    )
    return ReviewResult(
        alert_id=alert_id,
        review=Review.model_validate(new),
        previous=Review.model_validate(old) if old is not None else None,
    )


@router.get(
    "/reviews/summary",
    response_model=ReviewSummary,
    response_model_exclude_none=True,
    responses={422: {"description": "A bad `since`, or `since` together with `current_shift`."}},
)
def review_summary(
    runtime: RuntimeDep,
    settings: SettingsDep,
    _: Viewer,
    since: TimeQuery = None,
    current_shift: Annotated[
        bool,
        Query(
            description="Count only the shift running now (`trends.shift_starts` in `trends.timezone`): "
            "what the panel's review badge shows."
        ),
    ] = False,
) -> ReviewSummary:
    """How many alerts in the history (or since a time, or in the current shift) are unreviewed,
    confirmed, false alarms (and taught)."""
    if since is not None and current_shift:
        raise HTTPException(422, detail="give either since or current_shift, not both")
    shift = current_shift_window(settings.trends, time.time()) if current_shift else None
    start = as_utc(since, "since") if shift is None else datetime.fromisoformat(shift.start)
    counts = runtime.alert_store.review_counts(since=start)
    total = counts["unreviewed"] + counts["confirmed"] + counts["false_alarm"]
    shown_since = iso_utc(start.timestamp()) if start is not None else None
    return ReviewSummary(total=total, **counts, since=shown_since, shift=shift)


def current_shift_window(trends: TrendSettings, now: float) -> ShiftWindow:
    """The shift running at `now` on the plant's shift clock (the trends screen's shifts)."""
    zone, _ = resolve_zone(trends.timezone)
    start, end = shift_boundaries(list(trends.shift_starts), zone, now, now)[:2]
    return ShiftWindow(label=f"{start:%H:%M}-{end:%H:%M}", start=start.isoformat(), end=end.isoformat())


@router.get(
    "/reviews/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per alert, oldest first."}},
)
def export_reviews(
    runtime: RuntimeDep,
    _: Viewer,
    since: TimeQuery = None,
    until: TimeQuery = None,
    review_state: ReviewFilter | None = None,
) -> StreamingResponse:
    """Every alert (in the history) with its review, as CSV, streamed."""
    since, until = utc_range(since, until)
    rows = runtime.alert_store.export_rows(since=since, until=until, review_state=review_state)
    return StreamingResponse(
        _csv_chunks(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="alert-reviews.csv"'},
    )


def _csv_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for count, alert in enumerate(rows, start=1):
        writer.writerow([_cell(value) for value in _csv_row(alert)])
        if count % 200 == 0:
            yield _take(buffer)
    yield _take(buffer)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_row(alert: dict[str, Any]) -> list[Any]:
    review = alert.get("review") or {}
    model = alert.get("model") or {}
    return [
        alert.get("alert_id"),
        alert.get("ts"),
        alert.get("frame_id"),
        alert.get("line_id"),
        alert.get("station_id"),
        alert.get("score"),
        alert.get("threshold"),
        alert.get("defect_class"),
        model.get("name"),
        model.get("version"),
        review.get("state", "unreviewed"),
        review.get("comment", ""),
        review.get("reviewer", ""),
        review.get("ts", ""),
        review.get("taught_model") or "",
    ]


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is prefixed with ' (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
