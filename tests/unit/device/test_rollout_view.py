"""The rollout view of a real `RolloutStation` (never started: no broker needed): what it remembers from
`state.json` across a restart, merged with the reports of this run, and its keys as fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from device.config import MqttSettings, RolloutSettings
from device.station.rollout.state import HandledRelease, RolloutState
from device.station.rollout.station import RolloutStation
from device.station.rollout.view import build_rollout_view, releases_from
from device.wire.fleet import Outcome, StationReport
from device.wire.release import generate_keypair, load_public_key


def _report(release_id: str | None, outcome: Outcome, ts: str) -> StationReport:
    return StationReport(station_id="st1", release_id=release_id, outcome=outcome, reason=outcome, ts=ts)


@pytest.fixture
def station(tmp_path: Path) -> RolloutStation:
    _, public_path = generate_keypair(tmp_path / "keys")
    state = RolloutState(
        handled={
            "old": HandledRelease(signature="sig", report=_report("old", "activated", "2025-01-01T00:00:00Z"))
        },
        newest_created_at="2024-12-31T23:59:00Z",
    )
    state.save(tmp_path / "rollout" / "state.json")
    settings = RolloutSettings(enabled=True, trusted_public_keys=[str(public_path)])
    return RolloutStation(settings, MqttSettings(), "st1", host=None, state_dir=tmp_path / "rollout")  # type: ignore[arg-type]


def test_the_view_keeps_releases_from_before_a_restart(station: RolloutStation, tmp_path: Path) -> None:
    station.events.append(_report("new", "installing", "2025-01-02T00:00:00Z"))
    view = build_rollout_view(station, "ignored", "m-1", "1")
    assert view.enabled and view.station_id == "st1" and view.newest_release_at == "2024-12-31T23:59:00Z"
    assert [(r.release_id, r.outcome, r.final) for r in view.releases] == [
        ("new", "installing", False),
        ("old", "activated", True),
    ]
    raw = load_public_key(tmp_path / "keys" / "release-signing.pub").public_bytes_raw()
    assert view.trusted_key_fingerprints == [hashlib.sha256(raw).hexdigest()]


def test_the_latest_report_wins_and_the_first_gives_first_seen() -> None:
    final = _report("a", "activated", "2025-01-01T00:00:09Z")
    rows = releases_from(
        [
            _report("a", "installing", "2025-01-01T00:00:01Z"),
            final,
            _report("b", "refused", "2025-01-01T00:00:05Z"),
        ],
        [final],  # the final report is both in this run's events and in state.json
    )
    assert [(r.release_id, r.outcome, r.first_seen, r.updated) for r in rows] == [
        ("a", "activated", "2025-01-01T00:00:01Z", "2025-01-01T00:00:09Z"),
        ("b", "refused", "2025-01-01T00:00:05Z", "2025-01-01T00:00:05Z"),
    ]


def test_only_the_newest_twenty_are_shown() -> None:
    reports = [_report(f"r{i:02d}", "refused", f"2025-01-01T00:00:{i:02d}Z") for i in range(30)]
    rows = releases_from(reports, [])
    assert len(rows) == 20 and rows[0].release_id == "r29" and rows[-1].release_id == "r10"
