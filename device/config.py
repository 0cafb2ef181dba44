"""Typed settings for the edge runtime: the line, the camera, decisions, the outbox and MQTT.

The root `app.settings.Settings` extends `RuntimeSettings`, so every knob has one name in one place and
the runtime never reads the API's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from vision.config import ModelSettings

# The one definition of what a decision threshold may be: settings, commands and API bodies all use it.
ThresholdValue = Annotated[
    float,
    Field(gt=0, lt=1e6, allow_inf_nan=False, description="Anomaly score above which a part is rejected."),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineSettings(_Section):
    """Identity of this station; it names the MQTT topics."""

    line_id: str = Field("line1", pattern=r"^[A-Za-z0-9_\-]+$")
    station_id: str = Field("station1", pattern=r"^[A-Za-z0-9_\-]+$")


class RegionOfInterest(_Section):
    """Crop applied at capture, in source pixels."""

    x: int = Field(0, ge=0)
    y: int = Field(0, ge=0)
    width: int = Field(..., gt=0)
    height: int = Field(..., gt=0)


class CameraSettings(_Section):
    """Where frames come from. `source` is `simulator`, a V4L2 index (`0`), a URL (rtsp://, http://),
    a GStreamer pipeline (`gst:...`), a video file, or an image folder."""

    source: str = "simulator"
    fps: float = Field(
        10.0,
        gt=0,
        le=240,
        description="Simulator / image folder rate (and video files without one); cameras run at their own.",
    )
    defect_rate: float = Field(0.1, ge=0.0, le=1.0, description="Simulator: share of defective parts.")
    category: str = Field("pcb", description="Simulator: which product the line makes.")
    seed: int = 0
    width: int = Field(256, gt=0, description="Frames are resized to width x height after the ROI crop.")
    height: int = Field(256, gt=0)
    roi: RegionOfInterest | None = None
    queue_size: int = Field(4, ge=1, le=1000, description="Capture->inference queue; oldest frame dropped.")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    loop: bool = Field(True, description="Video file / image folder: start again at the end.")
    timeout_s: float = Field(
        5.0, gt=0, le=300, description="Network sources: connect/read timeout; silence = disconnect."
    )
    genicam_pixel_format: str = Field("Mono8", description="GenICam: Mono8, Mono12, RGB8 or Bayer??8.")
    genicam_exposure_us: float | None = Field(None, gt=0, description="GenICam: fixed exposure (us).")
    genicam_gain_db: float | None = Field(None, ge=0, description="GenICam: fixed gain (dB).")
    genicam_trigger: Literal["free_run", "software", "hardware"] = "free_run"
    genicam_trigger_line: str = Field("Line1", description="GenICam hardware trigger input line.")
    genicam_buffers: int = Field(8, ge=2, le=256, description="GenICam: bounded buffer pool size.")
    genicam_watchdog_s: float | None = Field(
        None, gt=0, le=86_400, description="GenICam trigger modes: health degrades after this long, no part."
    )
    genicam_trigger_activation: Literal["RisingEdge", "FallingEdge"] = Field(
        "RisingEdge", description="GenICam hardware trigger: which edge on the trigger line starts a frame."
    )
    genicam_packet_size: int | None = Field(
        None,
        ge=576,
        le=65_535,
        description="GigE Vision: stream packet size in bytes (GevSCPSPacketSize); null = negotiate. "
        "8192 with jumbo frames (MTU 9000 on the camera's NIC) halves a 1280x1024 frame's transfer "
        "(benchmarks/camera).",
    )
    genicam_packet_delay: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="GigE Vision: inter-packet delay in timestamp ticks (GevSCPD); null = camera default.",
    )
    genicam_sensor_roi: RegionOfInterest | None = Field(
        None,
        description="GenICam: region read out on the sensor (x, y, width, height); null = full sensor. "
        "`roi` then crops within this region.",
    )


class InspectionSettings(_Section):
    """Decision knobs an operator may change while the line runs."""

    threshold: ThresholdValue | None = Field(None, description="Overrides the model's calibrated threshold.")
    min_defect_area_px: int = Field(16, ge=0, description="Smaller anomaly blobs are not reported as boxes.")
    max_boxes: int = Field(10, ge=1, le=100)
    enabled: bool = Field(True, description="Start with inspection running.")


class RejectSettings(_Section):
    """The reject gate: a command to the PLC some time after a defective part was seen."""

    enabled: bool = True
    gate_delay_ms: int = Field(0, ge=0, le=60_000)
    encoder_counts_per_frame: int | None = Field(None, ge=1, description="Adds an encoder position if set.")


class MqttSettings(_Section):
    """Broker connection. Credentials may come from the environment (EDGEINSPECT_MQTT__PASSWORD)."""

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://host:port")
    client_id: str = "edgeinspect-station1"
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_insecure: bool = False
    keepalive_s: int = Field(30, ge=5, le=3600)
    topic_prefix: str = Field("edgeinspect", pattern=r"^[A-Za-z0-9_\-/]+$")
    sparkplug: bool = Field(False, description="Also publish Sparkplug B (spBv1.0) births, data and deaths.")
    sparkplug_group_id: str = "edgeinspect"
    publish_results: bool = Field(
        False, description="Also publish a result for every part (OK and NG) on `<base>/result`."
    )
    start_local_broker: bool = Field(True, description="`run` starts Mosquitto if nothing listens locally.")
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not (value.startswith("mqtt://") or value.startswith("mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value


class OutboxSettings(_Section):
    """Store-and-forward spool for alerts (SQLite, WAL)."""

    path: str = Field("outbox.sqlite3", description="Relative paths are under data_dir.")
    max_alerts: int = Field(
        100_000, ge=10, description="When full, the oldest undelivered alerts are dropped."
    )


class AlertStoreSettings(_Section):
    """Local alert history for the panel and API (independent of delivery)."""

    path: str = Field("alerts.sqlite3", description="Relative paths are under data_dir.")
    keep_alerts: int = Field(50_000, ge=10)
    thumbnail_size: int = Field(96, ge=16, le=512)


class OpcUaUser(_Section):
    """One OPC UA login (username + password token). Without a password the login is off."""

    username: str = Field(..., pattern=r"^[A-Za-z0-9_.@\-]{1,64}$")
    password: SecretStr | None = Field(None, min_length=8)


class OpcUaCertificate(_Section):
    """The server's own certificate and key (e.g. issued by the plant's CA). Without them the server generates
    a self-signed one on first enable (`<data_dir>/opcua/`) and reuses it after."""

    certificate_file: str = Field(
        ..., description="DER or PEM; its URI must be urn:edgeinspect:<line>:<station>."
    )
    private_key_file: str = Field(..., description="RSA, PEM or DER, unencrypted.")


OpcUaSecurityMode = Literal["SignAndEncrypt", "Sign"]


class OpcUaSettings(_Section):
    """Optional OPC UA server for PLCs/SCADA that speak OPC UA, not MQTT (`device.station.opcua`).

    Secure by default: the endpoints are Basic256Sha256 (`security_modes`) with the server's certificate
    (`certificate`, or one generated on first enable). SecurityPolicy None, where a session travels unsigned
    and unencrypted, is offered only with `allow_unencrypted`, and logins on it only with
    `allow_unencrypted_login`.
    """

    enabled: bool = False
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/edgeinspect", description="opc.tcp://host:port/path; the host is bound."
    )
    namespace_uri: str = Field("urn:edgeinspect:station", min_length=1, max_length=256)
    operator: OpcUaUser = Field(
        OpcUaUser(username="operator"), description="May write the threshold (through `execute`)."
    )
    viewer: OpcUaUser = Field(OpcUaUser(username="viewer"), description="Reads only.")
    allow_anonymous_read: bool = Field(
        True, description="Anonymous sessions may browse and read, never write."
    )
    security_modes: list[OpcUaSecurityMode] = Field(
        ["SignAndEncrypt", "Sign"],
        min_length=1,
        description="Basic256Sha256 endpoints offered; Sign signs a session without encrypting it.",
    )
    allow_unencrypted: bool = Field(
        False, description="Also offer a SecurityPolicy None endpoint (anonymous sessions only, by default)."
    )
    allow_unencrypted_login: bool = Field(
        False,
        validate_default=True,  # checked against allow_unencrypted even when left out
        description="Accept user name logins on the None endpoint too (needs allow_unencrypted).",
    )
    certificate: OpcUaCertificate | None = None
    status_interval_s: float = Field(1.0, gt=0, le=60, description="How often state and counters refresh.")

    @model_validator(mode="before")
    @classmethod
    def _default_user_names(cls, data: Any) -> Any:
        """`EDGEINSPECT_OPCUA__OPERATOR__PASSWORD` alone (the README's example) sets a password for the
        default user name: a partial user from the environment or YAML is merged with the default."""
        if isinstance(data, dict):
            for role in ("operator", "viewer"):
                user = data.get(role)
                if isinstance(user, dict) and "username" not in user:
                    data = {**data, role: {"username": role, **user}}
        return data

    @field_validator("security_modes")
    @classmethod
    def _distinct_modes(cls, value: list[OpcUaSecurityMode]) -> list[OpcUaSecurityMode]:
        if len(set(value)) != len(value):
            raise ValueError(f"security modes must be distinct, got {value}")
        return value

    @field_validator("allow_unencrypted_login")
    @classmethod
    def _login_needs_a_none_endpoint(cls, value: bool, info: ValidationInfo) -> bool:
        """Refuse the combinations that make no sense: a None-endpoint login without a None endpoint, and
        a None endpoint that nobody may use (fields that failed their own check are absent: skipped)."""
        unencrypted, anonymous = info.data.get("allow_unencrypted"), info.data.get("allow_anonymous_read")
        if value and unencrypted is False:
            raise ValueError(
                "is true but opcua.allow_unencrypted is false: there is no SecurityPolicy None endpoint "
                "to log in on (set both, or leave both false)"
            )
        if not value and unencrypted is True and anonymous is False:
            raise ValueError(
                "is false, opcua.allow_anonymous_read is false and opcua.allow_unencrypted is true: "
                "nobody could use the SecurityPolicy None endpoint (set opcua.allow_unencrypted: false)"
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError("must look like opc.tcp://host:port/path")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        if not port:
            raise ValueError("needs an explicit port, e.g. opc.tcp://127.0.0.1:4840/edgeinspect")
        return value


_CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class TrendSettings(_Section):
    """Trend history for the panel's charts (`device.station.trends`): per-minute buckets in
    `<data_dir>/trends.sqlite3`, and the shifts they are summed into."""

    retention_days: int = Field(7, ge=1, le=90, description="Buckets older than this are dropped.")
    persist_interval_s: float = Field(60.0, ge=1, le=3600, description="How often buckets are written.")
    shift_starts: list[Annotated[str, Field(pattern=_CLOCK_TIME)]] = Field(
        ["06:00", "14:00", "22:00"],
        min_length=1,
        max_length=24,
        description="Local HH:MM; a shift ends where the next begins.",
    )
    timezone: str | None = Field(
        None, description="IANA zone of the shift clock, e.g. Europe/Berlin; default: the box's own."
    )

    @field_validator("shift_starts")
    @classmethod
    def _distinct_starts(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"shift starts must be distinct, got {value}")
        return sorted(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Berlin)") from exc
        return value


class ArchiveSettings(_Section):
    """Image archive (`device.station.archive`): every NG part and a sample of OK parts, raw and with the
    overlay, in `<path>/YYYY-MM-DD/`, indexed in `<path>/index.sqlite3`, pruned oldest first by age and
    size."""

    enabled: bool = True
    path: str = Field("archive", description="Relative paths are under data_dir.")
    ok_sample_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="Share of OK parts archived too (NG parts always are)."
    )
    max_bytes: int = Field(2_000_000_000, ge=1_000_000, description="Oldest images go above this size.")
    max_age_days: float = Field(30.0, gt=0, le=3650, description="Older images are pruned.")
    queue_size: int = Field(
        64, ge=1, le=10_000, description="Parts waiting for the writer; more are dropped and counted."
    )
    jpeg_quality: int = Field(95, ge=50, le=100, description="Raw images (overlays use 85).")


class TeachSettings(_Section):
    """Teaching the model reviewed alerts (`device.station.teaching`): false alarms as normal (`POST
    /models/teach-normal`), confirmed defects as defects (`POST /models/teach-defects`)."""

    max_examples: int = Field(200, ge=1, le=2000, description="False alarms taught per job, at most.")
    max_good_images: int = Field(
        200, ge=2, le=5000, description="Newest archived OK frames held back for calibration and figures."
    )
    min_good_images: int = Field(
        20, ge=2, le=5000, description="Fewer OK frames: the threshold is kept and good-part figures omitted."
    )
    max_defect_images: int = Field(100, ge=0, le=5000, description="Confirmed defects used for the figures.")
    max_defects_taught: int = Field(
        200,
        ge=1,
        le=5000,
        description="Confirmed defects per teach-defects job (the newest with a frame; a fifth checks it).",
    )
    max_new_entries: int = Field(2048, ge=1, le=100_000, description="Memory-bank entries added per job.")
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads of a job (the line has the rest).")


class EscalationSettings(_Section):
    """Hybrid edge–plant inspection (`device.station.escalation`, docs/ESCALATION.md): parts whose edge
    score is near the threshold are sent to plant-side verifiers (`edgeinspect verify`); the station holds the
    decision until the answer or `deadline_ms`, then decides alone."""

    enabled: bool = False
    group: str = Field(
        "verifiers", pattern=r"^[A-Za-z0-9_\-]+$", description="MQTT 5 shared-subscription group of verifiers"
    )
    target_rate: float = Field(0.05, gt=0.0, le=0.5, description="Share of parts to escalate (band size).")
    deadline_ms: int = Field(
        200, ge=10, le=10_000, description="Longest the line holds a decision for a verifier's answer."
    )
    margin_ms: int = Field(
        50, ge=0, le=10_000, description="Kept free before the reject gate (capture to edge decision)."
    )
    window: int = Field(2000, ge=50, le=100_000, description="Recent edge scores the band is calibrated on.")
    min_samples: int = Field(200, ge=10, description="Scores needed before the band is calibrated.")
    initial_width: float = Field(
        0.05, ge=0.0, le=10.0, description="Band half-width (share of the threshold) until calibrated."
    )
    min_width: float = Field(0.0, ge=0.0, le=10.0, description="Narrowest band (share of the threshold).")
    max_width: float = Field(0.5, ge=0.0, le=10.0, description="Widest band (share of the threshold).")
    jpeg_quality: int = Field(
        98, ge=50, le=100, description="Frames travel to the verifier as JPEG (lower shifts its scores up)."
    )
    max_request_bytes: int = Field(4_000_000, ge=10_000, le=64_000_000)
    breaker_failures: int = Field(
        3, ge=1, le=1000, description="Timeouts in a row after which the station stops asking for a while."
    )
    breaker_cooldown_s: float = Field(5.0, gt=0, le=3600, description="How long it stops asking.")

    @model_validator(mode="after")
    def _widths_ordered(self) -> EscalationSettings:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width {self.min_width} exceeds max_width {self.max_width}")
        return self


def escalation_problem(escalation: EscalationSettings, reject: RejectSettings, protocol: str) -> str | None:
    """Why escalation cannot run with these settings (naming the fields), or None."""
    if not escalation.enabled:
        return None
    if protocol != "5":
        return "escalation.enabled needs mqtt.protocol '5' (response topics and shared subscriptions)"
    budget = escalation.deadline_ms + escalation.margin_ms
    if reject.enabled and budget > reject.gate_delay_ms:
        return (
            f"escalation.deadline_ms ({escalation.deadline_ms}) + escalation.margin_ms "
            f"({escalation.margin_ms}) must fit inside reject.gate_delay_ms ({reject.gate_delay_ms})"
        )
    return None


class RolloutSettings(_Section):
    """Fleet model rollout (`device.station.rollout`, docs/FLEET_ROLLOUT.md): install signed model releases
    that the plant publishes on `<prefix>/fleet/release`. Off by default; a release is refused unless its
    Ed25519
    signature verifies with one of `trusted_public_keys`."""

    enabled: bool = False
    station_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="Name in rollout policies and report topics; default line.station_id.",
    )
    trusted_public_keys: list[str] = Field(
        default_factory=list, max_length=16, description="PEM files of the Ed25519 keys allowed to sign."
    )
    download_timeout_s: float = Field(30.0, gt=0, le=3600, description="Per attempt.")
    download_retries: int = Field(3, ge=0, le=20, description="Extra attempts after a network error.")
    max_bytes: int = Field(500_000_000, ge=1_000, description="Larger releases are refused unread.")
    download_ca_file: str | None = Field(None, description="CA bundle for https:// release URLs.")
    auto_activate: bool = Field(True, description="Activate after staging; false: stage and report only.")
    health_frames: int = Field(8, ge=0, le=200, description="Recent frames the new model must judge.")
    health_max_defect_share: float = Field(
        0.5, gt=0, le=1.0, description="More frames judged defective than this fails the check (rollback)."
    )

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> RolloutSettings:
        if self.enabled and not self.trusted_public_keys:
            raise ValueError("trusted_public_keys: at least one public key is needed when enabled")
        return self


class RuntimeSettings(_Section):
    """Everything the edge runtime needs; the API adds its own sections on top."""

    data_dir: str = Field("data", description="Models, spool, history and keys live here.")
    line: LineSettings = LineSettings()
    camera: CameraSettings = CameraSettings()
    model: ModelSettings = ModelSettings()
    inspection: InspectionSettings = InspectionSettings()
    reject: RejectSettings = RejectSettings()
    mqtt: MqttSettings = MqttSettings()
    outbox: OutboxSettings = OutboxSettings()
    alerts: AlertStoreSettings = AlertStoreSettings()
    opcua: OpcUaSettings = OpcUaSettings()
    trends: TrendSettings = TrendSettings()
    archive: ArchiveSettings = ArchiveSettings()
    teach: TeachSettings = TeachSettings()
    rollout: RolloutSettings = RolloutSettings()
    escalation: EscalationSettings = EscalationSettings()

    @model_validator(mode="after")
    def _escalation_fits(self) -> RuntimeSettings:
        problem = escalation_problem(self.escalation, self.reject, self.mqtt.protocol)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _paths_under_data_dir(self) -> RuntimeSettings:
        """Relative file settings live under `data_dir`, so one setting moves all state (absolute after
        this, which keeps re-validation idempotent)."""
        root = Path(self.data_dir).resolve()
        self.data_dir = str(root)
        self.model.path = _under(root, self.model.path)
        self.model.build_template = _under(root, self.model.build_template)
        self.outbox.path = _under(root, self.outbox.path)
        self.alerts.path = _under(root, self.alerts.path)
        self.archive.path = _under(root, self.archive.path)
        return self


def _under(root: Path, path: str) -> str:
    candidate = Path(path)
    return str(candidate if candidate.is_absolute() else root / candidate)


# ---- the read-only view (GET /config) ---------------------------------------------------------------
# Every field of every section is listed in exactly one of these (a unit test holds that), so a new field
# is private until someone decides otherwise. Secrets, credentials and file paths are private.
PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "line": ("line_id", "station_id"),
    "camera": (
        "source",
        "fps",
        "defect_rate",
        "category",
        "seed",
        "width",
        "height",
        "roi",
        "queue_size",
        "reconnect_initial_s",
        "reconnect_max_s",
        "loop",
        "timeout_s",
        "genicam_pixel_format",
        "genicam_exposure_us",
        "genicam_gain_db",
        "genicam_trigger",
        "genicam_trigger_line",
        "genicam_buffers",
        "genicam_watchdog_s",
        "genicam_trigger_activation",
        "genicam_packet_size",
        "genicam_packet_delay",
        "genicam_sensor_roi",
    ),
    "model": (
        "auto_build",
        "backbone",
        "image_size",
        "memory_bank_size",
        "target_false_reject_rate",
        "train_images",
        "compression_budget",
        "compression_methods",
        "heal_steps",
        "seed",
        "feature_blocks",
        "neighbourhood",
        "smoothing_sigma",
        "position_strength",
        "knn",
        "feature_norm",
        "color_stats",
        "color_window",
        "whiten_shrinkage",
        "coarse_entries",
        "refined_patches",
        "head",
        "gaussian_components",
        "gaussian_rank",
        "gaussian_shift",
        "int8",
    ),
    "inspection": ("threshold", "min_defect_area_px", "max_boxes", "enabled"),
    "reject": ("enabled", "gate_delay_ms", "encoder_counts_per_frame"),
    "mqtt": (
        "url",
        "client_id",
        "protocol",
        "username",
        "tls_insecure",
        "keepalive_s",
        "topic_prefix",
        "sparkplug",
        "sparkplug_group_id",
        "publish_results",
        "start_local_broker",
        "reconnect_max_s",
    ),
    "outbox": ("max_alerts",),
    "alerts": ("keep_alerts", "thumbnail_size"),
    "opcua": (
        "enabled",
        "endpoint",
        "namespace_uri",
        "allow_anonymous_read",
        "security_modes",
        "allow_unencrypted",
        "allow_unencrypted_login",
        "status_interval_s",
    ),
    "trends": ("retention_days", "persist_interval_s", "shift_starts", "timezone"),
    "archive": ("enabled", "ok_sample_rate", "max_bytes", "max_age_days", "queue_size", "jpeg_quality"),
    "escalation": (
        "enabled",
        "group",
        "target_rate",
        "deadline_ms",
        "margin_ms",
        "window",
        "min_samples",
        "initial_width",
        "min_width",
        "max_width",
        "jpeg_quality",
        "max_request_bytes",
        "breaker_failures",
        "breaker_cooldown_s",
    ),
    "teach": (
        "max_examples",
        "max_good_images",
        "min_good_images",
        "max_defect_images",
        "max_defects_taught",
        "max_new_entries",
        "threads",
    ),
    "rollout": (
        "enabled",
        "station_id",
        "download_timeout_s",
        "download_retries",
        "max_bytes",
        "auto_activate",
        "health_frames",
        "health_max_defect_share",
    ),
}
PRIVATE_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("path", "build_template"),
    "mqtt": ("password", "tls_ca_file", "tls_cert_file", "tls_key_file"),
    "outbox": ("path",),
    "alerts": ("path",),
    "archive": ("path",),
    "opcua": ("operator", "viewer", "certificate"),  # user names with their passwords, key files
    "rollout": ("trusted_public_keys", "download_ca_file"),  # file paths (the keys themselves are public)
}
URL_FIELDS = {("camera", "source"), ("mqtt", "url")}


def redact_url(value: str) -> str:
    """`rtsp://user:secret@cam/x` -> `rtsp://user:***@cam/x`; anything that is not such a URL unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.password is None:
        return value
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def public_view(settings: RuntimeSettings, threshold: float) -> dict[str, Any]:
    """The allow-listed settings as JSON-able data; `threshold` is the one in force (override or model's)."""
    view: dict[str, Any] = {}
    for section, fields in PUBLIC_FIELDS.items():
        values = getattr(settings, section).model_dump(mode="json", include=set(fields))
        for name in fields:
            if (section, name) in URL_FIELDS and isinstance(values.get(name), str):
                values[name] = redact_url(values[name])
        view[section] = values
    view["inspection"]["threshold"] = threshold
    return view
