"""The station side of escalation: ask a plant verifier about an uncertain part, never wait past a deadline.

`decide` runs on the inspection thread. A part outside the band is decided by the edge at once. A part
inside it is published as a verify request and the thread waits for the matching answer until the hold
limit: `deadline_ms` after the escalation, and never later than the reject gate's due time minus
`margin_ms`. No answer in time, a verifier error, a broker that is down, or a verifier group that timed out
`breaker_failures` times in a row (then nobody is asked for `breaker_cooldown_s`) all mean the edge's own
verdict stands (`decided_by: fallback` with the reason). Requests and answers are QoS 0: past the deadline a
retransmission is worthless, and an answer lost on the way is a timeout like any other.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import cv2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.config import EscalationSettings, MqttSettings
from device.mqtt_client import create_client
from device.station.camera.base import Frame
from device.station.escalation.band import EscalationBand
from device.station.escalation.decision import EDGE_DECISION, Decision
from device.station.metrics import EscalationMetrics
from device.station.status import EscalationStatus
from device.station.topics import Topics
from device.wire.escalation import (
    ProtocolError,
    VerifyRequest,
    VerifyResponse,
    decode_response,
    encode_request,
    request_topic,
    response_topic,
)
from vision.types import InspectionResult

log = logging.getLogger(__name__)

_MIN_HOLD_S = 0.001


class _Slot:
    """Where the network thread leaves the answer the inspection thread waits for."""

    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer: VerifyResponse | None = None


class EscalationClient:
    """The station's verify connection (its own MQTT session, so waiting never touches alert delivery)."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: EscalationSettings,
        topics: Topics,
        metrics: EscalationMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.band = EscalationBand(
            settings.target_rate,
            settings.window,
            settings.min_samples,
            settings.initial_width,
            settings.min_width,
            settings.max_width,
        )
        self._topics = topics
        self._request_topic = request_topic(topics.prefix)
        self._response_topic = response_topic(topics.base)
        self._pending: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._connected = False
        self._timeouts_in_a_row = 0
        self._open_until = 0.0
        client_id = f"{mqtt_settings.client_id}-verify"[:128]
        self._client, self._connect_kwargs = create_client(mqtt_settings, client_id, persistent=False)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(**self._connect_kwargs)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    # ---- the decision --------------------------------------------------------------------------
    def decide(
        self, frame: Frame, result: InspectionResult, model_version: str, gate_due_mono: float | None
    ) -> tuple[InspectionResult, Decision]:
        """The final result for one part and who decided it; returns by the hold limit at the latest."""
        escalate = self.band.observe(result.score, result.threshold)
        self.metrics.record_judged(escalate)
        if not escalate:
            return result, EDGE_DECISION
        hold_until = time.monotonic() + self.settings.deadline_ms / 1000.0
        if gate_due_mono is not None:
            hold_until = min(hold_until, gate_due_mono - self.settings.margin_ms / 1000.0)
        start = time.monotonic()
        reason, answer, round_trip_ms = self._ask(frame, result, model_version, hold_until)
        held_ms = (time.monotonic() - start) * 1000.0
        self.metrics.record_held(held_ms)
        if answer is None or answer.is_defect is None:
            self.metrics.record_fallback(reason)
            return result, Decision("fallback", reason, result.is_defect, held_ms=held_ms)
        self.metrics.record_verdict(round_trip_ms, answer.is_defect == result.is_defect)
        boxes = result.boxes
        if answer.is_defect and not boxes and answer.summary is not None:
            boxes = [box.to_box() for box in answer.summary.boxes]  # same frame pixels as the edge's
        final = replace(result, is_defect=answer.is_defect, boxes=boxes)
        return final, Decision("verifier", None, result.is_defect, answer, held_ms)

    def _ask(
        self, frame: Frame, result: InspectionResult, model_version: str, hold_until: float
    ) -> tuple[str, VerifyResponse | None, float]:
        """(fallback reason, answer or None, round trip ms)."""
        start = time.monotonic()
        if hold_until - start < _MIN_HOLD_S:
            return "late", None, 0.0
        if not self._connected:
            return "broker", None, 0.0
        if start < self._open_until:
            return "breaker_open", None, 0.0
        request_id = uuid.uuid4().hex
        payload = self._encode(request_id, frame, result, model_version, hold_until - start)
        if payload is None:
            return "encode", None, 0.0
        slot = _Slot()
        with self._lock:
            self._pending[request_id] = slot
        try:
            if not self._publish(request_id, payload, hold_until - start):
                return "broker", None, 0.0
            answered = slot.event.wait(max(0.0, hold_until - time.monotonic()))
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        round_trip_ms = (time.monotonic() - start) * 1000.0
        if answered and slot.answer is None:  # the connection dropped while we waited
            return "broker", None, round_trip_ms
        if slot.answer is None:
            self._record_timeout()
            return "timeout", None, round_trip_ms
        self._timeouts_in_a_row = 0
        if not slot.answer.ok:
            log.warning("verifier %s could not judge: %s", slot.answer.verifier_id, slot.answer.error)
            return "verifier_error", None, round_trip_ms
        return "", slot.answer, round_trip_ms

    def _encode(
        self, request_id: str, frame: Frame, result: InspectionResult, model_version: str, budget_s: float
    ) -> bytes | None:
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not ok:
            return None
        now_ms = int(time.time() * 1000.0)
        header = VerifyRequest(
            request_id=request_id,
            line_id=self._topics.line_id,
            station_id=self._topics.station_id,
            frame_id=frame.frame_id,
            edge_score=float(result.score),
            edge_threshold=float(result.threshold),
            edge_model_version=model_version[:128],
            deadline_epoch_ms=now_ms + int(budget_s * 1000.0),
            sent_epoch_ms=now_ms,
        )
        payload = encode_request(header, jpeg.tobytes())
        if len(payload) > self.settings.max_request_bytes:
            log.warning(
                "frame %d is %d bytes as a request; escalation.max_request_bytes is %d",
                frame.frame_id,
                len(payload),
                self.settings.max_request_bytes,
            )
            return None
        return payload

    def _publish(self, request_id: str, payload: bytes, budget_s: float) -> bool:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = self._response_topic
        properties.CorrelationData = request_id.encode()
        properties.MessageExpiryInterval = max(1, math.ceil(budget_s))  # the broker drops it once stale
        info = self._client.publish(self._request_topic, payload, qos=0, properties=properties)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _record_timeout(self) -> None:
        self._timeouts_in_a_row += 1
        if self._timeouts_in_a_row >= self.settings.breaker_failures:
            self._open_until = time.monotonic() + self.settings.breaker_cooldown_s
            log.warning(
                "no verifier answered %d escalations in a row; the edge decides alone for %.1f s",
                self._timeouts_in_a_row,
                self.settings.breaker_cooldown_s,
            )

    # ---- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the verify connection: %s", reason_code)
            return
        client.subscribe(self._response_topic, qos=0)
        self._connected = True

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._connected = False
        with self._lock:  # nobody waits for an answer that cannot come: fall back now
            waiting = list(self._pending.values())
        for slot in waiting:
            slot.event.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            answer = decode_response(bytes(message.payload))
        except ProtocolError as exc:
            log.warning("unreadable verifier answer on %s: %s", message.topic, exc)
            return
        correlation = getattr(message.properties, "CorrelationData", None) if message.properties else None
        request_id = correlation.decode(errors="replace") if correlation else answer.request_id
        with self._lock:
            slot = self._pending.get(request_id)
        if slot is None:
            self.metrics.record_late_answer()
            return
        slot.answer = answer
        slot.event.set()

    # ---- views ---------------------------------------------------------------------------------
    def status(self, threshold: float) -> EscalationStatus:
        summary = self.metrics.summary()
        low, high = self.band.bounds(threshold)
        return EscalationStatus(
            connected=self._connected,
            breaker_open=self.breaker_open,
            band_half_width=round(self.band.half_width, 6),
            band=[round(low, 6), round(high, 6)],
            calibrated=self.band.calibrated,
            target_rate=self.settings.target_rate,
            deadline_ms=self.settings.deadline_ms,
            **summary,
        )
