"""Read-only views of the runtime that the API, the panel and MQTT status publish."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from device.environment import EnvironmentRecord

RuntimeState = Literal["starting", "running", "paused", "stopped"]
HealthState = Literal["ok", "degraded", "down"]


class ModelStatus(BaseModel):
    id: str | None = None
    name: str
    version: str
    sha256: str
    calibrated_threshold: float
    input_size: int


class LatencyStatus(BaseModel):
    """Capture-to-decision latency over the recent window, milliseconds."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    inference_p50_ms: float | None = None


class EscalationStatus(BaseModel):
    """Escalations to plant verifiers since start (`escalation.enabled`; docs/ESCALATION.md)."""

    connected: bool = Field(..., description="The station's verify connection to the broker is up.")
    breaker_open: bool = Field(..., description="Verifiers timed out repeatedly; the edge decides alone.")
    band_half_width: float = Field(..., description="Share of the threshold on each side that escalates.")
    band: list[float] = Field(..., description="[low, high] edge scores that escalate at the threshold.")
    calibrated: bool
    target_rate: float
    judged: int
    escalated: int
    escalation_rate: float | None
    verified: int = Field(..., description="Escalations the verifier decided.")
    fallbacks: dict[str, int] = Field(..., description="Escalations the edge decided after all, by reason.")
    late_answers: int
    held_max_ms: float = Field(..., description="Longest an escalated decision was held (<= deadline).")
    agreement: float | None = Field(..., description="Share of verifier verdicts that matched the edge.")
    verifier_p50_ms: float | None
    verifier_p99_ms: float | None
    deadline_ms: int


class RuntimeStatus(BaseModel):
    state: RuntimeState
    fps: float = Field(..., description="Frames judged per second over the last few seconds.")
    frames: int = Field(..., description="Frames judged since start.")
    defects: int
    dropped_frames: int
    corrupt_frames: int
    queue_depth: int
    threshold: float
    model: ModelStatus | None
    broker_connected: bool
    camera_connected: bool
    spool_depth: int
    latency: LatencyStatus
    roi: dict[str, int] | None = None
    recipe: str | None = Field(None, description="The active recipe (product); None without recipes.")
    source_size: list[int] | None = Field(
        None, description="[width, height] of the camera's raw frames: the pixel space of `roi`."
    )
    line_speed_request_ppm: float | None = None
    uptime_s: float
    escalation: EscalationStatus | None = Field(
        None, description="Present when escalation to plant verifiers is enabled."
    )


class FrameVerdict(BaseModel):
    """The frame the live view shows now and the verdict on it (sent with `GET /frames/latest.jpg`)."""

    seq: int = Field(..., description="Live-view sequence number of this frame (what its ETag names).")
    frame_id: int
    captured_at: float = Field(..., description="time.time() at capture.")
    verdict: Literal["OK", "NG"] | None = Field(
        None, description="None: shown but not judged (inspection paused or no model)."
    )
    score: float | None = None
    threshold: float | None = None


class ComponentHealth(BaseModel):
    ok: bool
    detail: str = ""


class HealthReport(BaseModel):
    """`ok` when everything works; `degraded` while the line still inspects but e.g. alerts are spooling."""

    status: HealthState
    components: dict[str, ComponentHealth]
    environment: EnvironmentRecord | None = Field(
        None, description="What the station runs on; only for a caller that presents an API key."
    )
