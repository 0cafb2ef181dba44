"""Request size limit (413), per-key rate limit (429 + Retry-After) and CORS closed by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime

from app.api.ratelimit import RateLimiter


def test_body_over_the_limit_is_413_by_content_length(
    make_client: Callable[..., TestClient], runtime: FakeRuntime
) -> None:
    client = make_client(max_request_bytes=2048)
    response = client.post("/line/speed", content=b"{" + b" " * 4000 + b"}", headers=headers("operator"))
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    assert runtime.commands == []


def test_body_over_the_limit_is_413_when_streamed_without_length(
    make_client: Callable[..., TestClient], runtime: FakeRuntime
) -> None:
    client = make_client(max_request_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"parts_per_minute": 5'
        for _ in range(10):
            yield b" " * 1000
        yield b"}"

    response = client.post(
        "/line/speed", content=chunks(), headers={**headers("operator"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "max_request_bytes" in response.json()["detail"]
    assert runtime.commands == []

    def upload_chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
        for _ in range(10):
            yield b"x" * 1000

    upload = client.post(
        "/models",
        content=upload_chunks(),
        headers={**headers("admin"), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert upload.status_code == 413


def test_small_body_passes(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_request_bytes=2048)
    assert (
        client.post("/line/speed", json={"parts_per_minute": 5}, headers=headers("operator")).status_code
        == 200
    )


def test_control_rate_limit_per_key_with_retry_after(
    make_client: Callable[..., TestClient], runtime: FakeRuntime
) -> None:
    client = make_client(control_rate_per_minute=3)
    statuses = [client.post("/line/pause", headers=headers("operator")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/line/pause", headers=headers("operator"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert len(runtime.commands) == 3
    # Another key has its own budget, and reads are never limited.
    assert client.post("/line/resume", headers=headers("admin")).status_code == 200
    assert all(client.get("/status", headers=headers("operator")).status_code == 200 for _ in range(5))


def test_rate_limiter_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    assert limiter.acquire("k") == 0.0 and limiter.acquire("k") == 0.0
    wait = limiter.acquire("k")
    assert 29.0 < wait <= 30.0
    assert RateLimiter.retry_after_header(wait) == "30"
    now[0] += 30.0
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("other") == 0.0


def test_cors_closed_by_default_and_open_only_to_configured_origins(
    make_client: Callable[..., TestClient],
) -> None:
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    closed = make_client()
    response = closed.options("/line/stop", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin"
        not in closed.get("/health", headers={"Origin": "http://evil.example"}).headers
    )

    open_client = make_client(cors_origins=["http://scada.local"])
    allowed = open_client.options(
        "/line/stop", headers={"Origin": "http://scada.local", "Access-Control-Request-Method": "POST"}
    )
    assert allowed.headers["access-control-allow-origin"] == "http://scada.local"
    refused = open_client.options("/line/stop", headers=preflight)
    assert "access-control-allow-origin" not in refused.headers
