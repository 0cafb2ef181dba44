"""The plant side of a fleet rollout: build and sign a release, publish it, watch the stations' reports,
promote from the canaries to the rest when enough canaries succeed, halt when they cannot.

Everything goes over the same MQTT settings as a station (`create_client`); the release file itself is
fetched by the stations over HTTP(S) from `base_url`.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from device.config import MqttSettings
from device.mqtt_client import create_client
from device.wire.fleet import FleetTopics, StationReport
from device.wire.release import PromoteNotice, ReleaseManifest, RolloutPolicy, sign
from vision.export import sha256_file
from vision.inspector import Inspector

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def build_release(
    model: Path,
    base_url: str,
    policy: RolloutPolicy,
    key: Ed25519PrivateKey,
    release_id: str | None = None,
    serve_dir: Path | None = None,
) -> ReleaseManifest:
    """A signed manifest for `model` (which must pass the station's model checks: refused here first);
    with `serve_dir` the file is copied there under the name the URL uses."""
    info = Inspector(model, threads=1).info
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    release_id = release_id or f"{info.name}-{info.version}-{stamp}"
    filename = f"{release_id}.onnx"
    if serve_dir is not None:
        serve_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, serve_dir / filename)
    manifest = ReleaseManifest(
        release_id=release_id,
        model_name=info.name,
        model_version=info.version,
        sha256=sha256_file(model),
        size=model.stat().st_size,
        url=f"{base_url.rstrip('/')}/{filename}",
        policy=policy,
    )
    return sign(manifest, key)


@dataclass
class RolloutResult:
    release_id: str
    reports: dict[str, StationReport] = field(default_factory=dict)
    promoted: bool = False
    halted: str | None = None  # why the rollout stopped at the canaries
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        finals = [r for r in self.reports.values() if r.final]
        return self.halted is None and not self.timed_out and all(r.ok for r in finals)


class RolloutCoordinator:
    """Publishes one release and drives it through its policy; `run` returns when it is decided."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        manifest: ReleaseManifest,
        key: Ed25519PrivateKey,
        progress: Progress = print,
    ) -> None:
        self.manifest = manifest
        self.key = key
        self.progress = progress
        self.topics = FleetTopics(mqtt_settings.topic_prefix)
        self.result = RolloutResult(manifest.release_id)
        self._reports: queue.Queue[StationReport] = queue.Queue()
        self._subscribed = threading.Event()
        self._client, self._kwargs = create_client(
            mqtt_settings, f"edgeinspect-plant-{uuid.uuid4().hex[:8]}", persistent=False
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topics.all_reports, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            report = StationReport.model_validate_json(message.payload)
        except ValidationError:
            log.warning("ignoring a malformed report on %s", message.topic)
            return
        if report.release_id == self.manifest.release_id:
            self._reports.put(report)

    # ---- the rollout ---------------------------------------------------------------------------
    def run(self, timeout_s: float = 600.0, settle_s: float = 30.0) -> RolloutResult:
        """Publish, then wait for reports until every named station finished (or, with no station list,
        `settle_s` after the last report once promoted), a canary failure halts it, or `timeout_s`."""
        self._client.connect_async(**self._kwargs)
        self._client.loop_start()
        try:
            if not self._subscribed.wait(min(timeout_s, 30.0)):
                raise TimeoutError("cannot subscribe to the station reports: is the broker reachable?")
            self._publish(self.topics.release, self.manifest.to_json())
            policy = self.manifest.policy
            self.progress(
                f"published release {self.manifest.release_id} ({self.manifest.model_name} "
                f"v{self.manifest.model_version}); canaries: {', '.join(policy.canary) or 'none'}"
            )
            if not policy.canary:
                self._promote()
            self._follow(time.monotonic() + timeout_s, settle_s)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        return self.result

    def _follow(self, deadline: float, settle_s: float) -> None:
        last_news = time.monotonic()
        while not self._decided(last_news, settle_s):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.result.timed_out = True
                self.progress(
                    f"timed out; waiting on: {', '.join(self._outstanding()) or 'unknown stations'}"
                )
                return
            try:
                report = self._reports.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            last_news = time.monotonic()
            self._record(report)

    def _record(self, report: StationReport) -> None:
        self.result.reports[report.station_id] = report
        self.progress(f"  {report.station_id}: {report.outcome} {report.reason}".rstrip())
        if self.result.promoted or self.result.halted:
            return
        policy = self.manifest.policy
        canaries = [self.result.reports.get(s) for s in policy.canary]
        ok = sum(1 for r in canaries if r is not None and r.ok)
        failed = [r for r in canaries if r is not None and r.final and not r.ok]
        if ok >= policy.canaries_needed():
            self._promote()
        elif len(policy.canary) - len(failed) < policy.canaries_needed():
            self._halt(failed)

    def _promote(self) -> None:
        notice = sign(PromoteNotice(release_id=self.manifest.release_id), self.key)
        self._publish(self.topics.promote, notice.to_json())
        self.result.promoted = True
        if self.manifest.policy.canary:
            self.progress("canaries ok: promoted to the remaining stations")

    def _halt(self, failed: list[StationReport]) -> None:
        why = "; ".join(f"{r.station_id}: {r.outcome}: {r.reason}" for r in failed)
        self.result.halted = f"canary failed ({why})"
        self._publish(self.topics.release, b"")  # clear the retained release: no late canary installs it
        self.progress(f"HALTED: {self.result.halted}; the release was withdrawn")

    def _decided(self, last_news: float, settle_s: float) -> bool:
        if self.result.halted:
            return True
        if not self.result.promoted:
            return False
        if self.manifest.policy.stations is None:
            return time.monotonic() - last_news >= settle_s
        return not self._outstanding()

    def _outstanding(self) -> list[str]:
        policy = self.manifest.policy
        named = list(dict.fromkeys([*policy.canary, *(policy.stations or [])]))
        return [s for s in named if s not in self.result.reports or not self.result.reports[s].final]

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
