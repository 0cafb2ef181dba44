"""Live view (viewer): the latest judged frame with the defect overlay, as a JPEG or an MJPEG stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import AUTH_RESPONSES, RuntimeDep, SettingsDep, Viewer
from device.station.alerts import iso_utc
from device.station.status import FrameVerdict

router = APIRouter(prefix="/frames", tags=["frames"], responses=AUTH_RESPONSES)

MJPEG_BOUNDARY = "frame"


def _mjpeg_part(jpeg: bytes) -> bytes:
    header = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return header.encode() + jpeg + b"\r\n"


FRAME_HEADERS_DOC = (
    "`ETag` and `X-Frame-Seq` name the frame; `X-Frame-Id` and `X-Frame-Captured-At` (ISO 8601, UTC) are "
    "the camera's; `X-Frame-Verdict` is `OK`, `NG`, or `unjudged` (inspection paused), with `X-Frame-Score` "
    "and `X-Frame-Threshold` when judged. All of them describe this very image."
)


def _etag(seq: int, overlay: bool) -> str:
    return f'"{seq}-{int(overlay)}"'


def _verdict_headers(verdict: FrameVerdict) -> dict[str, str]:
    headers = {
        "X-Frame-Id": str(verdict.frame_id),
        "X-Frame-Captured-At": iso_utc(verdict.captured_at),
        "X-Frame-Verdict": verdict.verdict or "unjudged",
    }
    if verdict.score is not None:
        headers["X-Frame-Score"] = f"{verdict.score:.6g}"
    if verdict.threshold is not None:
        headers["X-Frame-Threshold"] = f"{verdict.threshold:.6g}"
    return headers


@router.get(
    "/latest.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": FRAME_HEADERS_DOC},
        304: {"description": "Same frame as the `If-None-Match` ETag."},
        503: {"description": "No frame has been judged yet."},
    },
)
def latest_frame(runtime: RuntimeDep, request: Request, _: Viewer, overlay: bool = True) -> Response:
    """Polled by the panel; the ETag lets it skip frames it already shows (304, no JPEG encode). The
    verdict headers belong to the image sent: a frame that arrives while it is encoded is read again."""
    verdict = runtime.latest_verdict()
    seq = verdict.seq if verdict is not None else int(runtime.frame_seq)
    if request.headers.get("if-none-match") == _etag(seq, overlay):
        return Response(status_code=304, headers={"ETag": _etag(seq, overlay)})
    for _attempt in range(3):
        data = runtime.latest_frame_jpeg(overlay=overlay)
        after = runtime.latest_verdict()
        same = after is None or (verdict is not None and after.seq == verdict.seq)
        verdict = after
        if same:
            break
    if data is None:
        raise HTTPException(
            503, detail="no frame yet: the camera has not delivered one", headers={"Retry-After": "1"}
        )
    headers = {"Cache-Control": "no-store"}
    if verdict is not None:
        seq = verdict.seq
        headers.update(_verdict_headers(verdict))
    headers.update({"ETag": _etag(seq, overlay), "X-Frame-Seq": str(seq)})
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/stream.mjpeg",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}": {}}}},
)
async def stream(
    runtime: RuntimeDep,
    settings: SettingsDep,
    request: Request,
    _: Viewer,
    overlay: bool = True,
    max_frames: Annotated[int | None, Query(ge=1, le=1_000_000, description="Stop after this many.")] = None,
) -> StreamingResponse:
    """MJPEG at up to `api.stream_fps`, one part per new frame (for VLC, a browser tab, a SCADA screen)."""
    interval_s = 1.0 / settings.api.stream_fps

    async def parts() -> AsyncIterator[bytes]:
        sent, last_seq = 0, None
        while max_frames is None or sent < max_frames:
            if await request.is_disconnected():
                return
            seq = runtime.frame_seq
            if seq != last_seq:
                data = await run_in_threadpool(runtime.latest_frame_jpeg, overlay)
                if data is not None:
                    last_seq, sent = seq, sent + 1
                    yield _mjpeg_part(data)
            await asyncio.sleep(interval_s)

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )
