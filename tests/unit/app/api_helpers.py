"""Keys and settings shared by the API unit, integration and browser tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.settings import Settings

KEYS = {
    "viewer": "viewer-test-key-0123456789",
    "operator": "operator-test-key-0123456789",
    "admin": "admin-test-key-0123456789",
}


def api_settings(tmp_path: Path, **api: Any) -> Settings:
    """Settings whose state (audit log, generated keys) lives under `tmp_path`."""
    return Settings(data_dir=str(tmp_path), api=api, auth={"audit_path": str(tmp_path / "audit.sqlite3")})


def headers(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}
