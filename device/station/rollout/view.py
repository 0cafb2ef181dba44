"""Where this station stands with fleet rollouts, as a viewer may read it (`GET /fleet/rollout`, panel).

Built from the station's reports of this run (`RolloutStation.events`) and the releases it remembers
across restarts (`<data_dir>/rollout/state.json`). Trusted keys appear as sha256 fingerprints of their
raw public bytes; key file paths are left out like every other path in the public settings view.
No `cryptography` import at module level: the API imports these types on stations without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from device.wire.fleet import Outcome, StationReport

MAX_RELEASES = 20


class PublicKeyBytes(Protocol):
    """An Ed25519 public key (`cryptography`), as far as a fingerprint needs it."""

    def public_bytes_raw(self) -> bytes: ...


class RolloutRelease(BaseModel):
    """One release this station heard about, with its latest outcome."""

    release_id: str | None = Field(..., description="None for a document too broken to name one.")
    model_version: str | None
    outcome: Outcome
    reason: str
    final: bool = Field(..., description="The outcome is decided (not waiting or installing).")
    first_seen: str = Field(..., description="UTC time of the first report about it that is still kept.")
    updated: str = Field(..., description="UTC time of the latest report about it.")


class RolloutView(BaseModel):
    enabled: bool = Field(..., description="`rollout.enabled`: the station listens for signed releases.")
    station_id: str = Field(..., description="The name rollout policies and report topics use.")
    model_id: str | None = Field(..., description="The model in use now.")
    model_version: str | None
    newest_release_at: str | None = Field(..., description="Creation time of the newest release acted on.")
    trusted_key_fingerprints: list[str] = Field(
        ..., description="sha256 (hex) of each trusted Ed25519 public key's 32 raw bytes."
    )
    releases: list[RolloutRelease] = Field(..., description="Newest first, at most 20.")


class RolloutSource(Protocol):
    """What the view reads from a running `RolloutStation`."""

    station_id: str

    @property
    def trusted(self) -> Sequence[PublicKeyBytes]: ...

    def history(self) -> tuple[list[StationReport], list[StationReport], str | None]:
        """(reports of this run oldest first, remembered final reports, newest release time acted on)."""
        ...


def fingerprint(key: PublicKeyBytes) -> str:
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()


def releases_from(
    events: Iterable[StationReport], remembered: Iterable[StationReport]
) -> list[RolloutRelease]:
    """One row per release id: the latest report wins, the earliest kept one gives `first_seen`."""
    rows: dict[str | None, RolloutRelease] = {}
    for report in sorted([*remembered, *events], key=lambda r: r.ts):
        earlier = rows.pop(report.release_id, None)
        rows[report.release_id] = RolloutRelease(
            release_id=report.release_id,
            model_version=report.model_version,
            outcome=report.outcome,
            reason=report.reason,
            final=report.final,
            first_seen=earlier.first_seen if earlier else report.ts,
            updated=report.ts,
        )
    return sorted(rows.values(), key=lambda r: r.updated, reverse=True)[:MAX_RELEASES]


def build_rollout_view(
    source: RolloutSource | None, station_id: str, model_id: str | None, model_version: str | None
) -> RolloutView:
    """The view of a running station, or of one with rollout off (`source` None)."""
    if source is None:
        return RolloutView(
            enabled=False,
            station_id=station_id,
            model_id=model_id,
            model_version=model_version,
            newest_release_at=None,
            trusted_key_fingerprints=[],
            releases=[],
        )
    events, remembered, newest = source.history()
    return RolloutView(
        enabled=True,
        station_id=source.station_id,
        model_id=model_id,
        model_version=model_version,
        newest_release_at=newest,
        trusted_key_fingerprints=[fingerprint(key) for key in source.trusted],
        releases=releases_from(events, remembered),
    )
