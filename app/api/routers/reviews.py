"""Alert review: an operator marks an alert confirmed or a false alarm (audited); counts and a CSV export.

Reviews are what teaching learns from (`POST /models/teach-normal` takes the false alarms) and what a
quality engineer reads back: the export joins every alert with its review.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from app.api.control import record_action
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, AuditDep, Operator, RuntimeDep, Viewer
from app.api.filters import TimeQuery, utc_range
from app.api.schemas import ErrorBody, _Request
from device.alerts import MAX_REVIEW_COMMENT, ReviewFilter, ReviewState, check_review_comment

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


class ReviewSummary(BaseModel):
    total: int
    unreviewed: int
    confirmed: int
    false_alarm: int
    taught: int = Field(..., description="False alarms taught into a model version.")


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


@router.get("/reviews/summary", response_model=ReviewSummary)
def review_summary(runtime: RuntimeDep, _: Viewer) -> ReviewSummary:
    """How many alerts in the history are unreviewed, confirmed, false alarms (and taught)."""
    counts = runtime.alert_store.review_counts()
    total = counts["unreviewed"] + counts["confirmed"] + counts["false_alarm"]
    return ReviewSummary(total=total, **counts)


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
