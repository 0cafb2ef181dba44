"""The station side of a fleet rollout: verify a signed release, fetch it, stage it, activate it, check
it, report, and roll back when the check fails. Anything unsigned, mis-signed, changed or replayed is
refused with a reason, and the running model is never touched for it.

Its own MQTT connection (`create_client`, the same settings as the station's link) listens on the fleet
topics; one worker thread handles one message at a time, so a download never blocks the network thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.config import MqttSettings, RolloutSettings
from device.mqtt_client import create_client
from device.station.commands import ActivateModel, Command, CommandResult, RollbackModel
from device.station.model_registry import ModelEntry, ModelRegistry
from device.station.rollout.download import DownloadError, DownloadLimits, IntegrityError, fetch_verified
from device.station.rollout.health import check_model
from device.station.rollout.state import HandledRelease, RolloutState
from device.wire.fleet import FleetTopics, Outcome, StationReport
from device.wire.release import (
    ManifestError,
    PromoteNotice,
    ReleaseManifest,
    load_public_key,
    parse_document,
    utc_now,
    verify,
)
from vision.inspector import ModelFileError

log = logging.getLogger(__name__)
HEALTH_FRAME_TIMEOUT_S = 10.0


class RolloutHost(Protocol):
    """What the station needs from the runtime (`EdgeRuntime` provides it)."""

    @property
    def models(self) -> ModelRegistry: ...

    def execute(self, command: Command, actor: str = "system") -> CommandResult: ...

    def recent_frames(self, count: int, timeout_s: float) -> list[np.ndarray]: ...


class Refused(Exception):
    """A release this station will not install; `outcome` says how it ended."""

    def __init__(self, reason: str, outcome: Outcome = "refused") -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome


class RolloutStation:
    def __init__(
        self,
        settings: RolloutSettings,
        mqtt_settings: MqttSettings,
        station_id: str,
        host: RolloutHost,
        state_dir: Path,
    ) -> None:
        self.settings = settings
        self.station_id = station_id
        self.host = host
        self.topics = FleetTopics(mqtt_settings.topic_prefix)
        self.trusted: list[Ed25519PublicKey] = [load_public_key(p) for p in settings.trusted_public_keys]
        self.limits = DownloadLimits(
            timeout_s=settings.download_timeout_s,
            retries=settings.download_retries,
            max_bytes=settings.max_bytes,
            ca_file=settings.download_ca_file,
        )
        self.events: deque[StationReport] = deque(maxlen=100)
        self._state_path = state_dir / "state.json"
        self._state = RolloutState.load(self._state_path)
        self._pending: ReleaseManifest | None = None  # a non-canary release waiting for promotion
        self._promoted: set[str] = set()
        self._listeners: list[Callable[[StationReport], None]] = []
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=64)
        self._stopping = threading.Event()
        self._handlers: dict[str, Callable[[bytes], None]] = {
            self.topics.release: self._on_release,
            self.topics.promote: self._on_promote,
        }
        self._client, self._connect_kwargs = create_client(
            mqtt_settings, f"{mqtt_settings.client_id}-rollout", persistent=False
        )
        self._client.on_connect = self._handle_connect
        self._client.on_message = self._handle_message
        self._worker = threading.Thread(target=self._work, name="rollout", daemon=True)

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()
        self._client.connect_async(**self._connect_kwargs)
        self._client.loop_start()
        log.info("fleet rollout: station %s listening on %s", self.station_id, self.topics.release)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        if self._worker.is_alive():
            self._worker.join(timeout_s)

    def add_listener(self, listener: Callable[[StationReport], None]) -> None:
        """Call `listener` with every report from now on, after replaying those already made."""
        with self._lock:
            self._listeners.append(listener)
            past = list(self.events)
        for report in past:
            _notify(listener, report)

    def history(self) -> tuple[list[StationReport], list[StationReport], str | None]:
        """(reports of this run oldest first, final reports remembered across restarts, newest release
        time acted on): what `device.station.rollout.view` shows."""
        with self._lock:
            remembered = [handled.report for handled in self._state.handled.values()]
            return list(self.events), remembered, self._state.newest_created_at

    # ---- MQTT (network thread: queue and return) -----------------------------------------------
    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(self.topics.release, 1), (self.topics.promote, 1)])

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            log.warning("fleet rollout: too many messages waiting; dropped one on %s", message.topic)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                topic, payload = self._inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            handler = self._handlers.get(topic)
            if handler is None or not payload:  # an empty retained message clears the topic
                continue
            try:
                handler(payload)
            except Exception:  # the station must outlive any release
                log.exception("fleet rollout: handling a message on %s failed", topic)

    # ---- documents -----------------------------------------------------------------------------
    def _on_release(self, payload: bytes) -> None:
        try:
            manifest = parse_document(payload, ReleaseManifest)
            verify(manifest, self.trusted)
        except ManifestError as exc:
            self._report(_claimed_release_id(payload), None, "refused", f"release refused: {exc}")
            return
        if not manifest.policy.targets(self.station_id):
            log.info("fleet rollout: release %s is not for %s", manifest.release_id, self.station_id)
            return
        if self._already_handled(manifest):
            return
        policy = manifest.policy
        if not policy.canary or policy.is_canary(self.station_id) or manifest.release_id in self._promoted:
            self._install(manifest)
            return
        self._pending = manifest
        self._report(manifest.release_id, manifest.model_version, "waiting", "waiting for the canaries")

    def _on_promote(self, payload: bytes) -> None:
        try:
            notice = parse_document(payload, PromoteNotice)
            verify(notice, self.trusted)
        except ManifestError as exc:
            log.warning("fleet rollout: promote message refused: %s", exc)
            self._report(_claimed_release_id(payload), None, "refused", f"promote refused: {exc}")
            return
        self._promoted.add(notice.release_id)
        if self._pending is not None and self._pending.release_id == notice.release_id:
            manifest, self._pending = self._pending, None
            self._install(manifest)

    def _already_handled(self, manifest: ReleaseManifest) -> bool:
        """A redelivered release (retained, reconnect) repeats its report; a changed one with a used id, or
        one older than a release already acted on, is refused as a replay/downgrade."""
        previous = self._state.handled.get(manifest.release_id)
        if previous is not None and previous.signature == manifest.signature:
            self._publish(previous.report)
            return True
        if previous is not None:
            reason = f"replay: release {manifest.release_id} was already handled with different content"
        elif self._state.is_older_than_newest(manifest.created_at):
            reason = (
                f"downgrade: release created {manifest.created_at} is older than the newest release "
                f"this station acted on ({self._state.newest_created_at})"
            )
        else:
            return False
        self._report(manifest.release_id, manifest.model_version, "refused", reason)
        return True

    # ---- installing ----------------------------------------------------------------------------
    def _install(self, manifest: ReleaseManifest) -> None:
        self._report(manifest.release_id, manifest.model_version, "installing", f"fetching {manifest.url}")
        try:
            outcome, reason = self._apply(manifest)
        except Refused as exc:
            outcome, reason = exc.outcome, str(exc)
        report = self._report(manifest.release_id, manifest.model_version, outcome, reason)
        assert manifest.signature is not None  # verified
        with self._lock:  # `history` reads the state from API threads
            handled = HandledRelease(signature=manifest.signature, report=report)
            self._state.handled[manifest.release_id] = handled
            self._state.newest_created_at = manifest.created_at
            self._state.save(self._state_path)

    def _apply(self, manifest: ReleaseManifest) -> tuple[Outcome, str]:
        entry = self._stage(manifest)
        if not self.settings.auto_activate:
            return "staged", f"staged as {entry.id}; activate it from the panel or API"
        actor = f"rollout:{manifest.release_id}"
        if self.host.models.active_id == entry.id:
            return "activated", f"{entry.id} was already active"
        result = self.host.execute(ActivateModel(model_id=entry.id), actor=actor)
        if not result.ok:
            raise Refused(f"activation failed: {result.message}", "failed")
        frames = self.host.recent_frames(self.settings.health_frames, HEALTH_FRAME_TIMEOUT_S)
        problem = check_model(
            self.host.models.path_of(entry.id), entry.sha256, frames, self.settings.health_max_defect_share
        )
        if problem is None:
            return "activated", f"{entry.id} active; health check passed on {len(frames)} frame(s)"
        rolled = self.host.execute(RollbackModel(), actor=actor)
        detail = "rolled back" if rolled.ok else f"ROLLBACK FAILED: {rolled.message}"
        return "rolled_back", f"health check failed: {problem}; {detail}"

    def _stage(self, manifest: ReleaseManifest) -> ModelEntry:
        try:
            data = fetch_verified(manifest.url, manifest.size, manifest.sha256, self.limits)
        except IntegrityError as exc:
            raise Refused(f"download refused: {exc}") from exc
        except DownloadError as exc:
            raise Refused(str(exc), "failed") from exc
        try:
            entry = self.host.models.register(data, f"{manifest.release_id}.onnx", manifest.sha256)
        except (ValueError, ModelFileError) as exc:
            raise Refused(f"the file is not a usable model: {exc}") from exc
        if (entry.name, entry.version) != (manifest.model_name, manifest.model_version):
            raise Refused(
                f"the file is model {entry.name} version {entry.version}; the manifest names "
                f"{manifest.model_name} version {manifest.model_version}"
            )
        return entry

    # ---- reporting -----------------------------------------------------------------------------
    def _report(
        self, release_id: str | None, version: str | None, outcome: Outcome, reason: str
    ) -> StationReport:
        active_id = self.host.models.active_id
        active_version = self.host.models.get(active_id).version if active_id else None
        report = StationReport(
            station_id=self.station_id,
            release_id=release_id,
            model_version=version,
            outcome=outcome,
            reason=reason[:2000],
            active_model_id=active_id,
            active_model_version=active_version,
            ts=utc_now(),
        )
        level = logging.WARNING if outcome in ("refused", "failed", "rolled_back") else logging.INFO
        log.log(level, "fleet rollout %s: %s (%s)", release_id, outcome, reason)
        with self._lock:
            self.events.append(report)
            listeners = list(self._listeners)
        for listener in listeners:
            _notify(listener, report)
        self._publish(report)
        return report

    def _publish(self, report: StationReport) -> None:
        topic = self.topics.report(self.station_id)
        self._client.publish(topic, report.model_dump_json(), qos=1, retain=True)


def _notify(listener: Callable[[StationReport], None], report: StationReport) -> None:
    try:
        listener(report)
    except Exception:  # an audit log that is closing must not stop the rollout
        log.exception("fleet rollout: a report listener failed")


def _claimed_release_id(payload: bytes) -> str | None:
    """The release id a refused document claims, for the report only (never trusted)."""
    try:
        value = json.loads(payload).get("release_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value[:128] if isinstance(value, str) else None
