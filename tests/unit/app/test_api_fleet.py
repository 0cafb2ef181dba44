"""`GET /fleet/rollout` through the real app around the FakeRuntime: off, on with reports, who may read it,
and that a trusted key shows only as its fingerprint."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRolloutStation, FakeRuntime

from device.wire.fleet import Outcome, StationReport
from device.wire.release import generate_keypair, load_public_key


def _report(release_id: str | None, outcome: Outcome, ts: str, reason: str = "") -> StationReport:
    return StationReport(
        station_id="station1",
        release_id=release_id,
        model_version="2" if release_id else None,
        outcome=outcome,
        reason=reason,
        ts=ts,
    )


def test_rollout_off_shows_the_station_and_its_model_and_nothing_else(client: TestClient) -> None:
    body = client.get("/fleet/rollout", headers=headers("viewer")).json()
    assert body["enabled"] is False
    assert (body["station_id"], body["model_version"]) == ("station1", "1")
    assert body["model_id"].startswith("fake-")
    assert body["releases"] == [] and body["trusted_key_fingerprints"] == []


def test_rollout_needs_a_key(client: TestClient) -> None:
    assert client.get("/fleet/rollout").status_code == 401
    assert client.get("/fleet/rollout", headers={"X-API-Key": "wrong"}).status_code == 401


def test_releases_newest_first_with_outcome_reason_and_times(
    client: TestClient, runtime: FakeRuntime, tmp_path: Path
) -> None:
    private_path, public_path = generate_keypair(tmp_path / "keys")
    station = FakeRolloutStation("st7", [load_public_key(public_path)])
    station.remembered = [_report("r1", "activated", "2025-01-01T10:00:05.000Z", "r1 active")]
    station.events = [
        _report("r2", "installing", "2025-01-02T09:00:00.000Z", "fetching http://plant/r2.onnx"),
        _report(None, "refused", "2025-01-02T09:00:01.000Z", "release refused: unsigned"),
        _report("r2", "rolled_back", "2025-01-02T09:00:09.000Z", "health check failed: scores"),
    ]
    station.newest_created_at = "2025-01-02T08:59:00.000Z"
    runtime.rollout = station

    response = client.get("/fleet/rollout", headers=headers("viewer"))
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True and body["station_id"] == "st7"
    assert body["newest_release_at"] == "2025-01-02T08:59:00.000Z"
    rows = [(r["release_id"], r["outcome"], r["final"]) for r in body["releases"]]
    assert rows == [("r2", "rolled_back", True), (None, "refused", True), ("r1", "activated", True)]
    r2 = body["releases"][0]
    assert r2["first_seen"] == "2025-01-02T09:00:00.000Z" and r2["updated"] == "2025-01-02T09:00:09.000Z"
    assert r2["reason"] == "health check failed: scores" and r2["model_version"] == "2"

    # The fingerprint is sha256 over the key's 32 raw bytes: the tail of its DER SubjectPublicKeyInfo.
    der = serialization.load_pem_public_key(public_path.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert body["trusted_key_fingerprints"] == [hashlib.sha256(der[-32:]).hexdigest()]
    private_b64 = b"".join(private_path.read_bytes().splitlines()[1:-1])
    raw_public_b64 = base64.b64encode(der[-32:])
    for secretish in (private_b64, base64.b64decode(private_b64)[-32:].hex().encode(), raw_public_b64):
        assert secretish not in response.content
    assert str(tmp_path).encode() not in response.content  # key file paths stay out, like the config view


def test_a_waiting_release_is_not_final(client: TestClient, runtime: FakeRuntime) -> None:
    runtime.rollout = FakeRolloutStation("station1", [])
    runtime.rollout.events = [
        _report("r3", "waiting", "2025-01-03T00:00:00.000Z", "waiting for the canaries")
    ]
    release = client.get("/fleet/rollout", headers=headers("viewer")).json()["releases"][0]
    assert (release["outcome"], release["final"]) == ("waiting", False)


def test_the_schema_documents_the_rollout_view(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/fleet/rollout"]["get"]
    assert set(operation["responses"]) >= {"200", "401", "403"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RolloutView"
    )
