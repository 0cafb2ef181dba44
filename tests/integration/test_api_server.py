"""The API over real HTTP: uvicorn on a free loopback port, httpx as the client, the FakeRuntime behind it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from unit.app.api_helpers import KEYS, api_settings, headers
from unit.app.fake_runtime import FakeRuntime, fake_model_bytes
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore

pytestmark = pytest.mark.integration
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, FakeRuntime]]:
    runtime = FakeRuntime(fps=20)
    runtime.start()
    app = create_app(
        runtime, api_settings(tmp_path, max_request_bytes=4096, stream_fps=20), KeyStore.from_keys(KEYS)
    )
    try:
        with serve(app) as base_url:
            yield base_url, runtime
    finally:
        runtime.stop()


def test_control_and_views_over_http(server: tuple[str, FakeRuntime]) -> None:
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/status").status_code == 401
        response = client.post("/inspection/threshold", json={"threshold": 0.8}, headers=headers("operator"))
        assert response.status_code == 200
        assert client.get("/status", headers=headers("viewer")).json()["threshold"] == 0.8
        audit = client.get("/audit", headers={"Authorization": f"Bearer {KEYS['admin']}"}).json()
        assert audit["items"][0]["new_value"] == 0.8
        frame = client.get("/frames/latest.jpg", headers=headers("viewer"))
        assert frame.status_code == 200 and frame.content.startswith(JPEG_MAGIC)


def test_health_tells_a_known_caller_what_runs_and_a_stranger_only_the_state(
    server: tuple[str, FakeRuntime],
) -> None:
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        anonymous = client.get("/health").json()
        assert anonymous["status"] == "ok" and anonymous["environment"] is None
        assert client.get("/health", headers={"X-API-Key": "wrong"}).json()["environment"] is None
        known = client.get("/health", headers=headers("viewer")).json()["environment"]
    assert known["packages"]["onnxruntime"] == metadata.version("onnxruntime")
    assert "CPUExecutionProvider" in known["onnxruntime_providers"]
    assert known["cpu_count"] >= 1 and known["python"].count(".") == 2


def test_mjpeg_stream_delivers_new_frames(server: tuple[str, FakeRuntime]) -> None:
    base_url, _ = server
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/frames/stream.mjpeg", headers=headers("viewer")) as response,
    ):
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            if buffer.count(b"--frame\r\n") >= 3:
                break
    parts = [p for p in buffer.split(b"--frame\r\n") if p]
    frames = [p.partition(b"\r\n\r\n")[2] for p in parts[:2]]
    assert all(f.startswith(JPEG_MAGIC) for f in frames)
    assert frames[0] != frames[1]  # each part is a newer frame (the frame number is drawn in)


def test_streamed_upload_over_the_limit_is_refused_and_model_kept(server: tuple[str, FakeRuntime]) -> None:
    base_url, runtime = server
    data = fake_model_bytes("big", "1") + b"\0" * 20_000
    digest = hashlib.sha256(data).hexdigest()

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n' + digest.encode() + b"\r\n"
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n'
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]
        yield b"\r\n--b--\r\n"

    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post(
            "/models",
            content=body(),
            headers={**headers("admin"), "Content-Type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413
        assert "4096 bytes" in response.json()["detail"]
        assert len(client.get("/models", headers=headers("viewer")).json()) == 1
        assert client.get("/health").status_code == 200  # the server is fine afterwards
    assert len(runtime.models.entries) == 1
