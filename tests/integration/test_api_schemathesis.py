"""Property-based API tests: schemathesis generates requests from the OpenAPI schema; no 5xx allowed.

Stateless: in-process (ASGI) against the real app and the FakeRuntime, with an admin key so every
operation is reached past authentication. Stateful: schemathesis's state machine follows the schema's
OpenAPI links (models -> activate, alerts -> thumbnail) over real HTTP to a real uvicorn serving the real
`EdgeRuntime` (ONNX model, simulated camera, Mosquitto). The MJPEG stream is left out: without
`max_frames` it never ends, which is its job, and a generated request would wait forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import TEST_CATEGORY
from fastapi import FastAPI
from fixtures_mqtt import wait_until
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CheckFunction, positive_data_acceptance
from schemathesis.generation.stateful.state_machine import APIStateMachine
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore
from app.audit import AuditLog
from app.settings import Settings, load_settings
from device.station.broker import MosquittoBroker
from device.station.runtime import EdgeRuntime

pytestmark = pytest.mark.integration
# Operations a schema-valid request may rightly be refused by, and why; every other check still applies.
REFUSED_WHEN_VALID = {
    # A schema cannot say "sha256 must be the digest of the file" or "the file must be an ONNX model".
    ("POST", "/models"): "upload contents",
    # The longest window is a setting (trends.retention_days), which the schema's pattern cannot show.
    ("GET", "/trends"): "window beyond retention",
    # A paging cursor must name an alert in the history (`before_id`, `until_id`, `after_id`).
    ("GET", "/alerts"): "cursor naming no alert",
    # `since` and `current_shift` are each valid, but not together.
    ("GET", "/alerts/reviews/summary"): "since with current_shift",
}


def _excluded(case: schemathesis.Case[Any]) -> list[CheckFunction]:
    return [positive_data_acceptance] if (case.method.upper(), case.path) in REFUSED_WHEN_VALID else []


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
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers={"X-API-Key": KEYS["admin"]}, excluded_checks=_excluded(case))


@dataclass
class LiveApi:
    base_url: str
    runtime: EdgeRuntime


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the template, e.g. /models/{model_id}/activate
    path_parameters: dict[str, Any]
    status: int


@pytest.fixture
def live_api(tmp_path: Path, trained_model: Path, mosquitto: MosquittoBroker) -> Iterator[LiveApi]:
    """The real runtime (ONNX model, simulated camera, broker) behind the real app on a real uvicorn."""
    settings_ = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": TEST_CATEGORY, "fps": 10, "defect_rate": 0.5},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-schemathesis"},
            "api": {"control_rate_per_minute": 100_000},  # the fuzzer changes the line far faster than people
        },
    )
    runtime = EdgeRuntime(settings_)
    runtime.start()
    try:
        # Alerts with thumbnails exist before the first request, so the alerts -> thumbnail link has a target.
        wait_until(lambda: runtime.alert_store.count() >= 2, 60, "two alerts recorded")
        with serve(create_app(runtime, settings_, KeyStore.from_keys(KEYS))) as base_url:
            yield LiveApi(base_url, runtime)
    finally:
        runtime.stop()


def link_following_workflow(base_url: str, calls: list[Call]) -> type[APIStateMachine]:
    """The schema's state machine over real HTTP, with the admin key, recording every call it makes."""
    live_schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(
        path="/frames/stream.mjpeg"
    )

    class Workflow(live_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": {"X-API-Key": KEYS["admin"]}, "timeout": 15}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
            super().after_call(response, case)
            call = Call(
                case.method.upper(), case.path, dict(case.path_parameters or {}), response.status_code
            )
            calls.append(call)

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case[Any],
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=_excluded(case),
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    return Workflow


def resolve(expression: str, body: Any) -> Any:
    """An OpenAPI runtime expression of the form `$response.body#/json/pointer` against a response body."""
    prefix = "$response.body#"
    assert expression.startswith(prefix), f"unsupported link expression {expression}"
    value = body
    for token in expression[len(prefix) :].strip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


def followable_links(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(source GET path, link name, link) for every link a client can follow from a plain GET."""
    found = []
    for path, operations in document["paths"].items():
        get = operations.get("get", {})
        for response in get.get("responses", {}).values():
            for name, link in response.get("links", {}).items():
                if "{" not in path:
                    found.append((path, name, link))
    return found


@pytest.mark.slow
def test_every_openapi_link_leads_to_a_working_call(live_api: LiveApi) -> None:
    """Deterministic, not left to the random walk: each link from a GET resolves to a call that works."""
    headers = {"X-API-Key": KEYS["admin"]}
    with httpx.Client(base_url=live_api.base_url, headers=headers, timeout=15) as client:
        document = client.get("/openapi.json").json()
        links = followable_links(document)
        assert {name for _, name, _ in links} >= {"AlertThumbnail", "ActivateModel", "SetThreshold"}
        for source, name, link in links:
            body = client.get(source).raise_for_status().json()
            target_path, method = link["operationRef"].removeprefix("#/paths/").rsplit("/", 1)
            target = target_path.replace("~1", "/")
            for parameter, expression in link.get("parameters", {}).items():
                target = target.replace(f"{{{parameter}}}", str(resolve(expression, body)))
            payload = {k: resolve(v, body) for k, v in link.get("requestBody", {}).items()} or None
            response = client.request(method.upper(), target, json=payload)
            assert response.status_code < 400, (name, source, target, response.status_code, response.text)


@pytest.mark.slow
def test_stateful_api_over_http_with_the_real_runtime(
    live_api: LiveApi, caplog: pytest.LogCaptureFixture
) -> None:
    """The random walk along the links: no 5xx, every response as documented, no error logged. Which links
    it happens to take is its own business (each is followed for certain in the test above)."""
    calls: list[Call] = []
    link_following_workflow(live_api.base_url, calls).run(
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,  # the same walk on every run and machine, so a failure can be replayed
            database=None,  # nothing written into the shared working tree
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert calls and any(c.status < 400 for c in calls), calls
    assert live_api.runtime.health().status != "down"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
