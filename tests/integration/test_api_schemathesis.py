"""Property-based API test: schemathesis generates requests from the OpenAPI schema; no 5xx allowed.

Runs in-process (ASGI) against the real app and the FakeRuntime, with an admin key so every operation is
reached past authentication. The MJPEG stream is left out: without `max_frames` it never ends, which is
its job, and a generated request would wait forever.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime

from app.api.main import create_app
from app.api.security import KeyStore
from app.audit import AuditLog
from app.settings import Settings

pytestmark = pytest.mark.integration


def build_app() -> FastAPI:
    """In-memory audit log and explicit keys: nothing is written to disk at import time."""
    runtime = FakeRuntime()
    for _ in range(8):
        runtime.advance()
    settings_ = Settings(api={"control_rate_per_minute": 100_000})
    return create_app(runtime, settings_, KeyStore.from_keys(KEYS), audit_log=AuditLog(":memory:"))


schema = schemathesis.openapi.from_asgi("/openapi.json", build_app()).exclude(path="/frames/stream.mjpeg")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # A schema cannot say "sha256 must be the digest of the file" or "the file must be an ONNX model", so a
    # schema-valid upload is rightly refused (400/422); every other check still applies to it.
    upload = (case.method.upper(), case.path) == ("POST", "/models")
    excluded = [positive_data_acceptance] if upload else []
    case.call_and_validate(headers={"X-API-Key": KEYS["admin"]}, excluded_checks=excluded)
