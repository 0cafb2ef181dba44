"""Trends (viewer): defect rate, score distribution, latency and per-shift totals for the panel's charts."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from device.station.trends import TrendReport

router = APIRouter(prefix="/trends", tags=["trends"], responses=AUTH_RESPONSES)

WINDOW_PATTERN = r"^([1-9][0-9]{0,3})(m|h|d)$"
UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """`90m`, `8h`, `7d` -> seconds (the pattern has already been checked by the query validation)."""
    match = re.fullmatch(WINDOW_PATTERN, window)
    assert match is not None
    return int(match.group(1)) * UNIT_S[match.group(2)]


@router.get(
    "",
    response_model=TrendReport,
    responses={422: {"description": "Bad window, or one longer than `trends.retention_days`."}},
)
def trends(
    runtime: RuntimeDep,
    _: Viewer,
    window: Annotated[
        str,
        Query(pattern=WINDOW_PATTERN, description="How far back: minutes, hours or days, e.g. `8h`, `7d`."),
    ] = "8h",
) -> TrendReport:
    try:
        return runtime.trend_report(window_seconds(window))
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
