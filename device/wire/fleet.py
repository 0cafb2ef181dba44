"""The rollout's MQTT contract: topic names and the report each station publishes about a release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["waiting", "installing", "staged", "activated", "refused", "failed", "rolled_back"]
SUCCESS: frozenset[str] = frozenset({"staged", "activated"})
FAILURE: frozenset[str] = frozenset({"refused", "failed", "rolled_back"})


@dataclass(frozen=True)
class FleetTopics:
    """`<prefix>/fleet/release` and `/promote` (plant -> stations, retained), `/report/<station>` (back)."""

    prefix: str

    @property
    def release(self) -> str:
        return f"{self.prefix}/fleet/release"

    @property
    def promote(self) -> str:
        return f"{self.prefix}/fleet/promote"

    def report(self, station_id: str) -> str:
        return f"{self.prefix}/fleet/report/{station_id}"

    @property
    def all_reports(self) -> str:
        return f"{self.prefix}/fleet/report/+"


class StationReport(BaseModel):
    """Where one station stands with one release (retained on its report topic, QoS 1)."""

    model_config = ConfigDict(extra="ignore")
    station_id: str
    release_id: str | None = None
    model_version: str | None = None
    outcome: Outcome
    reason: str = Field("", max_length=2000)
    active_model_id: str | None = None
    active_model_version: str | None = None
    ts: str

    @property
    def final(self) -> bool:
        return self.outcome in SUCCESS or self.outcome in FAILURE

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS
