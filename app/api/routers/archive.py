"""Image archive: archived parts with filters and their images (viewer), and an export for retraining
(operator, audited): a ZIP in the MVTec AD layout that `edgeinspect train` reads as it is."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

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
from app.api.filters import TIME_HELP, IsoDateTime, PageLimit, PageOffset, TimeQuery, utc_range
from app.api.runtime_port import ArchiveCatalog
from app.api.schemas import _JSON_INT
from app.api.security import Principal
from app.audit import AuditLog
from device.station.archive import (
    NAME_PATTERN,
    ArchivedImage,
    ArchiveItemNotFound,
    ArchiveStats,
    ExportPlan,
    UnreviewedPolicy,
)

router = APIRouter(prefix="/archive", tags=["archive"], responses=AUTH_RESPONSES)

TARGET = "POST /archive/export"
SUMMARY_HEADER = "X-Export-Summary"
MAX_EXPORT_ITEMS = 5000
MAX_ID = 10**12  # far beyond any archive; small enough that JSON Schema bounds stay exact
# Body ints take 212.0 as 212, as JSON Schema does (see app.api.schemas).
BodyId = Annotated[int, Field(ge=1, le=MAX_ID), _JSON_INT]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="Archive id (`id` of a listed item).")]
Name = Annotated[str, Field(max_length=64, pattern=NAME_PATTERN)]
Score = Annotated[float, Field(ge=-1e12, le=1e12, allow_inf_nan=False)]
# Dates arrive as JSON strings, which strict mode would refuse; everything else in a body stays strict.
BodyTime = Annotated[IsoDateTime, Field(strict=False, description=TIME_HELP)]
JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}},
    404: {"description": "No such item, or its file was pruned."},
}
IMAGE_LINK: dict[str, dict[str, object]] = {
    "ArchiveImage": {
        "operationRef": "#/paths/~1archive~1{item_id}~1image.jpg/get",
        "parameters": {"item_id": "$response.body#/items/0/id"},
        "description": "Image of the newest item on the page.",
    }
}


class ArchiveItemOut(BaseModel):
    id: int
    ts: str = Field(..., description="Capture time, ISO 8601 UTC (as in the alert).")
    frame_id: int
    alert_id: str | None
    verdict: Literal["OK", "NG"]
    score: float
    threshold: float
    defect_class: str | None
    bytes: int = Field(..., description="Disk used by this item's files.")
    has_mask: bool = Field(..., description="A true defect mask was archived (simulator cameras).")
    image_url: str
    overlay_url: str
    download_url: str

    @classmethod
    def of(cls, item: ArchivedImage) -> ArchiveItemOut:
        base = f"/archive/{item.id}"
        return cls(
            id=item.id,
            ts=item.ts,
            frame_id=item.frame_id,
            alert_id=item.alert_id,
            verdict=item.verdict,
            score=item.score,
            threshold=item.threshold,
            defect_class=item.defect_class,
            bytes=item.bytes,
            has_mask=item.mask_path is not None,
            image_url=f"{base}/image.jpg",
            overlay_url=f"{base}/image.jpg?overlay=1",
            download_url=f"{base}/download",
        )


class ArchivePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[ArchiveItemOut]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ArchiveFilter(_Request):
    """The same filters as `GET /archive`; `limit` may go up to 5000 here."""

    since: BodyTime | None = None
    until: BodyTime | None = None
    min_score: Score | None = None
    max_score: Score | None = None
    verdict: Literal["OK", "NG"] | None = None
    defect_class: Name | None = None
    alert_id: Name | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_EXPORT_ITEMS), _JSON_INT] = 1000
    offset: Annotated[int, Field(ge=0, le=10_000_000), _JSON_INT] = 0


class ExportLabel(_Request):
    id: BodyId
    label: Name = Field(..., description="`good` -> train/good/; anything else -> test/<label>/.")


class _Export(_Request):
    category: Name | None = Field(None, description="Folder name in the ZIP; default: `camera.category`.")
    labels: list[ExportLabel] = Field(
        default_factory=list,
        max_length=MAX_EXPORT_ITEMS,
        description="Override where an item goes (last one wins per id); items must be in the export. "
        "A label wins over the alert's review and over `unreviewed`.",
    )
    unreviewed: UnreviewedPolicy = Field(
        "defect",
        description="What an NG part becomes when no operator has reviewed its alert (or its alert has left "
        "the history): `defect` -> test/<class>/ with its mask (the behaviour before reviews counted), "
        "`good` -> test/good/ (no mask), `skip` -> left out of the ZIP. Reviewed NG parts need no choice: "
        "`confirmed` -> test/<class>/ with its mask, `false_alarm` -> test/good/ (no mask). "
        "OK parts always go to train/good/.",
    )


class ExportByIds(_Export):
    ids: list[BodyId] = Field(..., min_length=1, max_length=MAX_EXPORT_ITEMS)


class ExportByFilter(_Export):
    filters: ArchiveFilter = ArchiveFilter()


def _query(archive: ArchiveCatalog, f: ArchiveFilter) -> tuple[int, list[ArchivedImage]]:
    since, until = utc_range(f.since, f.until)
    return archive.query(
        since=since,
        until=until,
        min_score=f.min_score,
        max_score=f.max_score,
        verdict=f.verdict,
        defect_class=f.defect_class,
        alert_id=f.alert_id,
        limit=f.limit,
        offset=f.offset,
    )


@router.get("", response_model=ArchivePage, responses={200: {"links": IMAGE_LINK}})
def list_archive(
    runtime: RuntimeDep,
    _: Viewer,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
    since: TimeQuery = None,
    until: TimeQuery = None,
    min_score: Annotated[float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False)] = None,
    max_score: Annotated[float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False)] = None,
    verdict: Literal["OK", "NG"] | None = None,
    defect_class: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
    alert_id: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
) -> ArchivePage:
    """Archived parts, newest first (every NG part and `archive.ok_sample_rate` of OK parts)."""
    filters = ArchiveFilter.model_construct(
        since=since,
        until=until,
        min_score=min_score,
        max_score=max_score,
        verdict=verdict,
        defect_class=defect_class,
        alert_id=alert_id,
        limit=limit,
        offset=offset,
    )
    total, items = _query(runtime.archive, filters)
    return ArchivePage(total=total, limit=limit, offset=offset, items=[ArchiveItemOut.of(i) for i in items])


@router.get("/stats", response_model=ArchiveStats)
def archive_stats(runtime: RuntimeDep, _: Viewer) -> ArchiveStats:
    """Size, queue depth, drops (queue full) and pruning of the archive."""
    return runtime.archive.stats()


def _jpeg(archive: ArchiveCatalog, item_id: int, overlay: bool) -> bytes:
    try:
        return archive.read_image(item_id, overlay=overlay)
    except ArchiveItemNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc


@router.get("/{item_id}/image.jpg", response_class=Response, responses=JPEG)
def image(item_id: ItemId, runtime: RuntimeDep, _: Viewer, overlay: bool = False) -> Response:
    """The raw frame, or with `overlay=1` the heatmap and boxes the operator saw."""
    data = _jpeg(runtime.archive, item_id, overlay)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/{item_id}/download", response_class=Response, responses=JPEG)
def download(item_id: ItemId, runtime: RuntimeDep, _: Viewer, overlay: bool = False) -> Response:
    """The same image as an attachment, named after its capture time, frame and verdict."""
    item = runtime.archive.get(item_id)
    if item is None:
        raise HTTPException(404, detail=f"no archived image with id {item_id}")
    data = _jpeg(runtime.archive, item_id, overlay)
    path = item.overlay_path if overlay else item.image_path
    name = f"{path.parent.name}_{path.name}"
    return Response(
        data, media_type="image/jpeg", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.post(
    "/export",
    response_class=StreamingResponse,
    responses={
        **CONTROL_RESPONSES,
        200: {
            "content": {"application/zip": {}},
            "description": "MVTec AD layout + manifest.json.",
            "headers": {
                SUMMARY_HEADER: {
                    "description": "JSON: `items` (images in the ZIP plan, as audited), `destinations` "
                    "(images per folder, e.g. `test/good`), `skipped_unreviewed` (NG parts left out).",
                    "schema": {"type": "string"},
                }
            },
        },
        404: {
            "description": "Nothing to export (no match, or every match skipped as unreviewed), or an id "
            "(in `ids` or `labels`) that is not exported."
        },
    },
)
def export(
    runtime: RuntimeDep,
    settings: SettingsDep,
    audit: AuditDep,
    principal: Operator,
    request: Annotated[ExportByIds | ExportByFilter, Body()],
) -> StreamingResponse:
    """A ZIP for retraining (raw frames, no overlay): OK parts in `<category>/train/good/`; NG parts by their
    alert's review: `confirmed` in `<category>/test/<class>/`, `false_alarm` in `<category>/test/good/`,
    unreviewed as `unreviewed` says; true masks in `<category>/ground_truth/` only for defect images whose
    mask was archived. `manifest.json` gives each image's folder and review, and the counts per folder."""
    category = request.category or _safe_name(settings.camera.category)
    asked: dict[str, Any] = {
        "category": category,
        "labels": len(request.labels),
        "unreviewed": request.unreviewed,
    }
    if isinstance(request, ExportByIds):
        asked["ids"] = request.ids[:50]
    else:
        asked["filters"] = request.filters.model_dump(mode="json", exclude_defaults=True)
    labels = {entry.id: entry.label for entry in request.labels}
    try:
        if isinstance(request, ExportByIds):
            items = runtime.archive.get_many(request.ids)
        else:
            items = _query(runtime.archive, request.filters)[1]
        if not items:
            raise ArchiveItemNotFound("no archived images match these filters")
        reviews = runtime.alert_store.review_states(i.alert_id for i in items if i.alert_id is not None)
        planned = runtime.archive.export_mvtec(
            items, category, labels, reviews=reviews, unreviewed=request.unreviewed
        )
        if not planned.plan.entries:
            raise ArchiveItemNotFound(
                f"nothing to export: all {len(items)} matching images are unreviewed NG parts "
                "and `unreviewed` is `skip`"
            )
    except (ArchiveItemNotFound, ValueError) as exc:
        status = 404 if isinstance(exc, ArchiveItemNotFound) else 422
        _record(audit, principal, asked, ok=False, message=str(exc))
        raise HTTPException(status, detail=str(exc)) from exc
    summary = _summary(planned.plan)
    _record(audit, principal, {**asked, **summary}, ok=True, message=_summary_text(summary))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return StreamingResponse(
        _chunks(planned.chunks),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{category}-mvtec-{stamp}.zip"',
            SUMMARY_HEADER: json.dumps(summary, separators=(",", ":")),
        },
    )


def _summary(plan: ExportPlan) -> dict[str, Any]:
    """What the ZIP holds, as the audit log and the summary header give it: `items` is exactly the number
    of images in the plan (an image pruned while the ZIP streams is named in `manifest.json`)."""
    return {
        "items": len(plan.entries),
        "destinations": plan.counts(),
        "skipped_unreviewed": len(plan.skipped_ids),
    }


def _summary_text(summary: dict[str, Any]) -> str:
    folders = ", ".join(f"{folder} {count}" for folder, count in summary["destinations"].items())
    text = f"{summary['items']} images ({folders})"
    if summary["skipped_unreviewed"]:
        text += f"; {summary['skipped_unreviewed']} unreviewed NG skipped"
    return text


def _chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Skip empty chunks: an empty body chunk would look like the end of a chunked response."""
    return (chunk for chunk in chunks if chunk)


def _record(audit: AuditLog, principal: Principal, asked: dict[str, Any], *, ok: bool, message: str) -> None:
    record_action(audit, principal, "archive_export", TARGET, ok=ok, new_value=asked, message=message)


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", value)[:64] or "archive"
