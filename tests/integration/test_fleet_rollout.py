"""Fleet model rollout through real parts: Mosquitto, an HTTP file server, two real EdgeRuntime stations
(st1 the canary, st2 the rest) running the small test model, and the plant side driving the policy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from conftest import free_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fixtures_mqtt import MessageCollector, wait_until

from app.cli import main
from app.settings import load_settings
from device.plant.file_server import FileServer
from device.plant.release_publisher import RolloutCoordinator, build_release
from device.station.runtime import EdgeRuntime
from device.wire.fleet import FleetTopics, StationReport
from device.wire.release import (
    ReleaseManifest,
    RolloutPolicy,
    generate_keypair,
    load_private_key,
    sign,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOPICS = FleetTopics("edgeinspect")


def _variant(model: Path, out: Path, version: str, threshold: str | None = None) -> Path:
    """The test model under another version (and optionally a threshold): a valid, different file."""
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "edgeinspect.model_version":
            prop.value = version
        if prop.key == "edgeinspect.threshold" and threshold is not None:
            prop.value = threshold
    onnx.save(proto, str(out))
    return out


class Fleet:
    def __init__(self, root: Path, model: Path, mqtt_url: str) -> None:
        self.root, self.mqtt_url = root, mqtt_url
        self.private_path, self.public_path = generate_keypair(root / "keys")
        self.key = load_private_key(self.private_path)
        self.releases = root / "releases"
        self.releases.mkdir()
        self.http = FileServer(self.releases)
        self.stations = {sid: self._station(sid, model) for sid in ("st1", "st2")}
        for station in self.stations.values():
            station.start()
        wait_until(lambda: all(s.metrics.frames >= 3 for s in self.stations.values()), 60, "frames judged")
        self.original = {sid: s.models.active_id for sid, s in self.stations.items()}
        self.original_versions = self.versions()

    def _station(self, station_id: str, model: Path) -> EdgeRuntime:
        settings = load_settings(
            None,
            {
                "data_dir": str(self.root / station_id),
                "line": {"station_id": station_id},
                "camera": {"category": "bracket", "fps": 8, "defect_rate": 0.2},
                "model": {"path": str(model), "auto_build": False},
                "mqtt": {"url": self.mqtt_url, "client_id": f"edge-{station_id}"},
                "rollout": {"enabled": True, "trusted_public_keys": [str(self.public_path)]},
            },
        )
        return EdgeRuntime(settings)

    def release(self, model: Path, **policy: object) -> ReleaseManifest:
        policy_obj = RolloutPolicy.model_validate({"canary": ["st1"], "stations": ["st2"], **policy})
        return build_release(model, self.http.base_url, policy_obj, self.key, serve_dir=self.releases)

    def outcomes(self, station_id: str, release_id: str | None) -> list[str]:
        rollout = self.stations[station_id].rollout
        assert rollout is not None
        return [e.outcome for e in rollout.events if e.release_id == release_id]

    def versions(self) -> dict[str, str]:
        return {sid: s.status().model.version for sid, s in self.stations.items()}

    def close(self) -> None:
        for station in self.stations.values():
            station.stop()
        self.http.close()


@pytest.fixture
def fleet(tmp_path: Path, trained_model: Path, mosquitto) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, trained_model, mosquitto.url)
    yield fleet
    fleet.close()


def _reports(collector: MessageCollector, station_id: str) -> list[StationReport]:
    return [
        StationReport.model_validate_json(m.payload)
        for m in collector.snapshot(TOPICS.report(station_id))
        if m.payload
    ]


def test_a_signed_release_reaches_the_canary_first_then_the_rest(
    fleet: Fleet, trained_model: Path, capsys
) -> None:
    model = _variant(trained_model, fleet.root / "v2.onnx", "2")
    port = free_port()
    code = main(
        [
            "release", "publish", "--model", str(model), "--key", str(fleet.private_path),
            "--base-url", f"http://127.0.0.1:{port}", "--serve", f"127.0.0.1:{port}",
            "--serve-dir", str(fleet.root / "served"), "--canary", "st1", "--stations", "st2",
            "--mqtt-url", fleet.mqtt_url, "--release-id", "bracket-2-a", "--timeout", "120",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, printed + captured.err
    assert "canaries ok: promoted" in printed and "OK: 2 station(s)" in printed
    assert fleet.versions() == {"st1": "2", "st2": "2"}
    assert fleet.outcomes("st1", "bracket-2-a") == ["installing", "activated"]
    assert fleet.outcomes("st2", "bracket-2-a") == ["waiting", "installing", "activated"]
    st1 = fleet.stations["st1"].rollout
    st2 = fleet.stations["st2"].rollout
    assert st1 is not None and st2 is not None
    canary_done = next(e.ts for e in st1.events if e.outcome == "activated")
    rest_started = next(e.ts for e in st2.events if e.outcome == "installing")
    assert rest_started > canary_done  # ISO UTC strings of one format sort as times
    frames = fleet.stations["st2"].metrics.frames
    wait_until(lambda: fleet.stations["st2"].metrics.frames >= frames + 3, 30, "the new model judges")

    # The retained release arrives again (e.g. a reconnect): nothing is installed twice.
    with MessageCollector(fleet.mqtt_url, [TOPICS.release]) as plant:
        plant.wait_for(lambda ms: bool(ms) and ms[0].retain, topic=TOPICS.release)
        manifest = ReleaseManifest.model_validate_json(plant.snapshot(TOPICS.release)[0].payload)
        plant.publish(TOPICS.release, manifest.to_json())
        # Same release id, different content (validly signed): a replay, refused.
        replay = sign(manifest.model_copy(update={"url": f"{fleet.http.base_url}/other.onnx"}), fleet.key)
        plant.publish(TOPICS.release, replay.to_json())
        wait_until(lambda: "refused" in fleet.outcomes("st1", "bracket-2-a"), 20, "replay refused")
    refused = [e for e in st1.events if e.outcome == "refused"][-1]
    assert "replay" in refused.reason
    assert fleet.outcomes("st1", "bracket-2-a") == ["installing", "activated", "refused"]
    assert fleet.versions() == {"st1": "2", "st2": "2"}


def test_a_tampered_file_is_refused_everywhere_and_the_old_model_keeps_running(
    fleet: Fleet, trained_model: Path
) -> None:
    manifest = fleet.release(_variant(trained_model, fleet.root / "v3.onnx", "3"))
    served = fleet.releases / f"{manifest.release_id}.onnx"
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped on the server after signing
    served.write_bytes(bytes(data))
    progress: list[str] = []
    with MessageCollector(fleet.mqtt_url, [TOPICS.all_reports]) as reports:
        result = RolloutCoordinator(load_settings(None, {"mqtt": {"url": fleet.mqtt_url}}).mqtt, manifest,
                                    fleet.key, progress.append).run(timeout_s=120)  # fmt: skip
        assert not result.ok and result.halted and "sha256 mismatch" in result.halted, progress
        refusal = [r for r in _reports(reports, "st1") if r.outcome == "refused"]
        assert refusal and refusal[0].active_model_id == fleet.original["st1"]
    assert not result.promoted and fleet.outcomes("st2", manifest.release_id) == ["waiting"]
    assert {sid: s.models.active_id for sid, s in fleet.stations.items()} == fleet.original
    assert fleet.versions() == fleet.original_versions
    with MessageCollector(fleet.mqtt_url, [TOPICS.release]) as late:  # withdrawn: no late canary takes it
        time.sleep(1.0)  # a retained release would arrive right after subscribing
        assert not [m for m in late.snapshot() if m.payload]


def test_unsigned_and_wrongly_signed_releases_are_refused(fleet: Fleet, trained_model: Path) -> None:
    model = _variant(trained_model, fleet.root / "v4.onnx", "4")
    good = fleet.release(model, canary=[], stations=None)
    unsigned = good.model_copy(update={"release_id": "unsigned-1", "signature": None})
    wrong_key = sign(good.model_copy(update={"release_id": "wrongkey-1"}), Ed25519PrivateKey.generate())
    with MessageCollector(fleet.mqtt_url, [TOPICS.all_reports]) as plant:
        for document, why in ((unsigned, "unsigned"), (wrong_key, "bad signature")):
            plant.publish(TOPICS.release, document.to_json(), retain=True)
            for sid in ("st1", "st2"):
                wait_until(lambda s=sid, d=document: "refused" in fleet.outcomes(s, d.release_id), 20, why)
                wait_until(
                    lambda s=sid, d=document: any(r.release_id == d.release_id for r in _reports(plant, s)),
                    10,
                    "the refusal is reported over MQTT",
                )
                reported = [r for r in _reports(plant, sid) if r.release_id == document.release_id]
                assert reported[-1].outcome == "refused" and why in reported[-1].reason
        plant.publish(TOPICS.release, json.dumps({"release_id": "junk"}), retain=True)
        wait_until(lambda: "refused" in fleet.outcomes("st1", "junk"), 20, "malformed refused")
    assert {sid: s.models.active_id for sid, s in fleet.stations.items()} == fleet.original
    frames = fleet.stations["st1"].metrics.frames
    wait_until(lambda: fleet.stations["st1"].metrics.frames >= frames + 3, 30, "still judging")


def test_a_model_failing_its_health_check_is_rolled_back(fleet: Fleet, trained_model: Path) -> None:
    # A valid model file whose threshold calls every part defective: it loads, but would stop the line.
    broken = _variant(trained_model, fleet.root / "v5.onnx", "5", threshold="1e-09")
    manifest = fleet.release(broken)
    progress: list[str] = []
    mqtt = load_settings(None, {"mqtt": {"url": fleet.mqtt_url}}).mqtt
    result = RolloutCoordinator(mqtt, manifest, fleet.key, progress.append).run(timeout_s=120)
    assert result.halted and "rolled_back" in result.halted, progress
    report = result.reports["st1"]
    assert report.outcome == "rolled_back" and "defective" in report.reason
    assert report.active_model_id == fleet.original["st1"]
    assert fleet.stations["st1"].models.active_id == fleet.original["st1"]
    assert fleet.versions() == fleet.original_versions
    assert fleet.outcomes("st2", manifest.release_id) == ["waiting"]

    # A validly signed release older than the one just acted on: a downgrade, refused.
    older = fleet.release(_variant(trained_model, fleet.root / "v6.onnx", "6"), canary=[], stations=None)
    stale = sign(older.model_copy(update={"created_at": "2020-01-01T00:00:00.000Z"}), fleet.key)
    with MessageCollector(fleet.mqtt_url, []) as plant:
        plant.publish(TOPICS.release, stale.to_json(), retain=True)
    wait_until(lambda: "refused" in fleet.outcomes("st1", stale.release_id), 20, "downgrade refused")
    rollout = fleet.stations["st1"].rollout
    assert rollout is not None and "downgrade" in rollout.events[-1].reason
    assert fleet.stations["st1"].models.active_id == fleet.original["st1"]


def test_the_main_job_refuses_an_unsigned_release_and_audits_it(
    tmp_path: Path, trained_model: Path, mosquitto
) -> None:
    """`edgeinspect run` as shipped: rollout settings from the environment, the refusal in GET /audit."""
    import httpx
    from conftest import launch_edge_stack

    _, public = generate_keypair(tmp_path / "keys")
    env = {
        "EDGEINSPECT_ROLLOUT__ENABLED": "true",
        "EDGEINSPECT_ROLLOUT__TRUSTED_PUBLIC_KEYS": json.dumps([str(public)]),
    }
    unsigned = ReleaseManifest(
        release_id="unsigned-main",
        model_name="x",
        model_version="9",
        sha256="0" * 64,
        size=10,
        url="http://127.0.0.1:9/x.onnx",
    )
    with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, env) as stack:
        model_before = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer")).json()["model"]
        with MessageCollector(mosquitto.url, [TOPICS.report("st1")]) as plant:
            plant.publish(TOPICS.release, unsigned.to_json(), retain=True)
            reports = plant.wait_for(
                lambda ms: any(b"unsigned-main" in m.payload for m in ms), 30, TOPICS.report("st1")
            )
        assert b"unsigned" in reports[-1].payload and b"refused" in reports[-1].payload

        def audited() -> list[dict]:
            page = httpx.get(f"{stack.base_url}/audit", headers=stack.headers("admin")).json()
            return [e for e in page["items"] if e["action"] == "fleet rollout refused"]

        wait_until(lambda: bool(audited()), 10, "the refusal in the audit log")
        entry = audited()[0]
        assert entry["actor"] == "release:unsigned-main" and not entry["ok"]
        assert "unsigned" in entry["message"]
        status = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer")).json()
        assert status["model"]["id"] == model_before["id"]
