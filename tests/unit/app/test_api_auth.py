"""Who may call what: the role table of `app.api.security`, enforced on every endpoint."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from unit.app.api_helpers import KEYS, api_settings, headers
from unit.app.fake_runtime import FakeRuntime, fake_model_bytes

from app.api.main import create_app
from app.api.security import KeyFileError, KeyStore, Role, read_keys_file
from app.settings import AuthSettings

MODEL = fake_model_bytes("matrix", "9")

# (method, path, request kwargs, minimum role). Every endpoint of the API is here.
ENDPOINTS: list[tuple[str, str, dict, str]] = [
    ("GET", "/auth/whoami", {}, "viewer"),
    ("GET", "/status", {}, "viewer"),
    ("GET", "/metrics", {}, "viewer"),
    ("GET", "/config", {}, "viewer"),
    ("GET", "/alerts", {}, "viewer"),
    ("GET", "/alerts/nope/thumbnail.jpg", {}, "viewer"),
    ("GET", "/frames/latest.jpg", {}, "viewer"),
    ("GET", "/frames/stream.mjpeg?max_frames=1", {}, "viewer"),
    ("GET", "/models", {}, "viewer"),
    ("POST", "/line/start", {}, "operator"),
    ("POST", "/line/stop", {}, "operator"),
    ("POST", "/line/pause", {}, "operator"),
    ("POST", "/line/resume", {}, "operator"),
    ("POST", "/line/speed", {"json": {"parts_per_minute": 60}}, "operator"),
    ("POST", "/inspection/threshold", {"json": {"threshold": 0.6}}, "operator"),
    ("POST", "/inspection/threshold/reset", {}, "operator"),
    ("POST", "/inspection/roi", {"json": {"x": 0, "y": 0, "width": 10, "height": 10}}, "operator"),
    ("DELETE", "/inspection/roi", {}, "operator"),
    ("POST", "/inspection/roi/preview", {"json": {"x": 0, "y": 0, "width": 10, "height": 10}}, "operator"),
    ("POST", "/inspection/sensitivity", {"json": {"min_defect_area_px": 20}}, "operator"),
    (
        "POST",
        "/models",
        {"files": {"file": ("m.onnx", MODEL)}, "data": {"sha256": hashlib.sha256(MODEL).hexdigest()}},
        "admin",
    ),
    ("POST", "/models/unknown-model/activate", {}, "admin"),
    ("POST", "/models/rollback", {}, "admin"),
    ("PATCH", "/config", {"json": {"reject": {"gate_delay_ms": 5}}}, "admin"),
    ("GET", "/audit", {}, "admin"),
]


@pytest.fixture
def matrix_client(make_client: Callable[..., TestClient], runtime: FakeRuntime) -> TestClient:
    runtime.advance()  # one frame, so the frame endpoints have something to serve
    return make_client(control_rate_per_minute=10_000)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "needed"), ENDPOINTS, ids=[f"{e[0]} {e[1]}" for e in ENDPOINTS]
)
def test_role_matrix(matrix_client: TestClient, method: str, path: str, kwargs: dict, needed: str) -> None:
    assert matrix_client.request(method, path, **kwargs).status_code == 401
    assert (
        matrix_client.request(
            method, path, headers={"X-API-Key": "not-a-key-0123456789"}, **kwargs
        ).status_code
        == 401
    )
    for role in Role:
        response = matrix_client.request(method, path, headers=headers(role.name), **kwargs)
        if role >= Role[needed]:
            assert response.status_code not in (401, 403, 422), (role.name, response.text)
        else:
            assert response.status_code == 403, (role.name, response.text)
            assert needed in response.json()["detail"]


def test_unauthenticated_pages(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert "EdgeInspect" in client.get("/").text
    assert client.get("/openapi.json").json()["info"]["title"] == "EdgeInspect control API"


def test_bearer_token_is_accepted_and_whoami_names_the_role(client: TestClient) -> None:
    response = client.get("/auth/whoami", headers={"Authorization": f"Bearer {KEYS['operator']}"})
    assert response.json() == {"name": "operator", "role": "operator", "auth_enabled": True}
    assert client.get("/auth/whoami", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_refused_requests_never_reach_the_runtime(client: TestClient, runtime: FakeRuntime) -> None:
    client.post("/line/stop")
    client.post("/line/stop", headers=headers("viewer"))
    assert runtime.commands == []
    assert runtime.state == "running"


def test_auth_disabled_allows_everything_and_says_so(
    tmp_path: Path, runtime: FakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings(tmp_path).model_copy(update={"auth": AuthSettings(enabled=False)})
    settings.auth.audit_path = str(tmp_path / "audit.sqlite3")
    keys = KeyStore.from_settings(settings.auth, tmp_path)
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    with TestClient(create_app(runtime, settings, keys)) as client:
        assert client.get("/auth/whoami").json()["auth_enabled"] is False
        assert client.post("/line/pause").status_code == 200
    assert runtime.state == "paused"


def test_keys_are_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    store = KeyStore.from_settings(AuthSettings(), tmp_path)
    path = tmp_path / "api_keys.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records = read_keys_file(path)
    assert {r.role for r in records} == set(Role)
    admin = next(r for r in records if r.role == Role.admin)
    assert store.authenticate(admin.key).role == Role.admin
    # A restart reuses the file: the keys an operator wrote down keep working.
    again = KeyStore.from_settings(AuthSettings(), tmp_path)
    assert again.authenticate(admin.key).role == Role.admin
    assert read_keys_file(path) == records


def test_keys_from_settings_and_keys_file_and_only_digests_are_kept(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("- {name: line-lead, key: lead-key-0123456789abc, role: operator}\n")
    auth = AuthSettings(viewer_key="view-key-0123456789abc", keys_file=str(keys_file))
    store = KeyStore.from_settings(auth, tmp_path)
    assert store.authenticate("view-key-0123456789abc").role == Role.viewer
    lead = store.authenticate("lead-key-0123456789abc")
    assert (lead.name, lead.role) == ("line-lead", Role.operator)
    assert not (tmp_path / "api_keys.yaml").exists()
    assert "lead-key-0123456789abc" not in repr(vars(store))

    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"map-key-0123456789abc": "admin"}')
    assert (
        KeyStore.from_settings(AuthSettings(keys_file=str(mapping)), tmp_path)
        .authenticate("map-key-0123456789abc")
        .role
        == Role.admin
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- {key: short, role: admin}\n", "at least 16 characters"),
        ("- {key: long-enough-key-0123456789, role: root}\n", "role must be one of"),
        ("just a string\n", "must hold a mapping"),
        ("[unclosed\n", "not valid YAML"),
    ],
)
def test_bad_keys_file_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        KeyStore.from_settings(AuthSettings(keys_file=str(path)), tmp_path)
