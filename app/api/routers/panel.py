"""The operator panel and an offline API reference; both are static files, no CDN, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def panel() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def docs() -> FileResponse:
    """Reads /openapi.json in the browser; FastAPI's default page would fetch Swagger UI from a CDN."""
    return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})
