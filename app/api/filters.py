"""Query filters shared by the listing endpoints (alerts, review export, archive, audit): one parser for
times, one set of 422s, one page size.

`since`/`until` are ISO 8601 (naive means UTC, the alerts' own zone); a bare number is refused rather than
read as a Unix time, and a time no clock can hold is a 422 naming the parameter.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

from fastapi import HTTPException, Query
from pydantic import BeforeValidator

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
TIME_HELP = "ISO 8601; naive means UTC."


def _not_a_bare_number(value: object) -> object:
    """Pydantic would read `0.5` as a Unix time; the schema promises ISO 8601, so hold to that."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00Z, not a number")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_not_a_bare_number)]
# `since` / `until` as every listing declares them in its query.
TimeQuery = Annotated[IsoDateTime | None, Query(description=TIME_HELP)]
# Paging of every listing: `limit` items from `offset`, newest first.
PageLimit = Annotated[int, Query(ge=1, le=500)]
PageOffset = Annotated[int, Query(ge=0, le=10_000_000)]


def as_utc(value: datetime | None, name: str) -> datetime | None:
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


def utc_range(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """`since` and `until` in UTC, each checked on its own (the 422 names which one)."""
    return as_utc(since, "since"), as_utc(until, "until")
