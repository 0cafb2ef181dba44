"""Live view (viewer): the latest judged frame with the defect overlay, as a JPEG or an MJPEG stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import AUTH_RESPONSES, RuntimeDep, SettingsDep, Viewer

router = APIRouter(prefix="/frames", tags=["frames"], responses=AUTH_RESPONSES)

MJPEG_BOUNDARY = "frame"


def _mjpeg_part(jpeg: bytes) -> bytes:
    header = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return header.encode() + jpeg + b"\r\n"


@router.get(
    "/latest.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "`ETag` and `X-Frame-Seq` name the frame."},
        304: {"description": "Same frame as the `If-None-Match` ETag."},
        503: {"description": "No frame has been judged yet."},
    },
)
def latest_frame(runtime: RuntimeDep, request: Request, _: Viewer, overlay: bool = True) -> Response:
    """Polled by the panel; the ETag lets it skip frames it already shows (304, no JPEG encode)."""
    seq = int(runtime.frame_seq)
    etag = f'"{seq}-{int(overlay)}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    data = runtime.latest_frame_jpeg(overlay=overlay)
    if data is None:
        raise HTTPException(
            503, detail="no frame yet: the camera has not delivered one", headers={"Retry-After": "1"}
        )
    return Response(
        data,
        media_type="image/jpeg",
        headers={"ETag": etag, "X-Frame-Seq": str(seq), "Cache-Control": "no-store"},
    )


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
