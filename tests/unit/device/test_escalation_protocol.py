"""The verify protocol: what goes on the wire, and every way a payload is refused with a reason."""

from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest

from app.settings import ConfigError, load_settings
from device.config import EscalationSettings, MqttSettings, RejectSettings, escalation_problem
from device.plant.verifier import Verdict, VerifierService
from device.station.alerts import build_alert
from device.station.escalation.decision import EDGE_DECISION, Decision
from device.wire.escalation import (
    REQUEST_MAGIC,
    MapSummary,
    ProtocolError,
    SummaryBox,
    VerifyRequest,
    VerifyResponse,
    decode_request,
    decode_response,
    encode_request,
    error_response,
    jpeg_size,
    request_topic,
    response_topic,
    shared_request_topic,
)
from vision.types import InspectionResult, ModelInfo


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    image = np.full((height, width, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def _header(**changes: object) -> VerifyRequest:
    now = int(time.time() * 1000)
    fields: dict[str, object] = {
        "request_id": "abc123",
        "line_id": "line1",
        "station_id": "st1",
        "frame_id": 7,
        "edge_score": 1.2,
        "edge_threshold": 1.0,
        "edge_model_version": "3",
        "deadline_epoch_ms": now + 10_000,
        "sent_epoch_ms": now,
    }
    fields.update(changes)
    return VerifyRequest.model_validate(fields)


def _raw(header: dict[str, object], body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return REQUEST_MAGIC + struct.pack(">I", len(text)) + text + body


def test_topics() -> None:
    assert request_topic("plant7/edgeinspect") == "plant7/edgeinspect/verify/request"
    assert shared_request_topic("edgeinspect", "g1") == "$share/g1/edgeinspect/verify/request"
    assert response_topic("edgeinspect/line1/st1") == "edgeinspect/line1/st1/verify/response"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="group"):
            shared_request_topic("edgeinspect", bad)


def test_request_round_trip() -> None:
    jpeg, sent = _jpeg(), _header()
    header, body = decode_request(encode_request(sent, jpeg), max_bytes=1_000_000)
    assert header == sent and body == jpeg


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "does not start with EIV1"),
        (b"XXXX\x00\x00\x00\x02{}", "does not start with EIV1"),
        (REQUEST_MAGIC + struct.pack(">I", 999) + b"{}", "header length 999"),
        (REQUEST_MAGIC + struct.pack(">I", 3) + b"{x}" + b"\xff\xd8", "not UTF-8 JSON"),
        (REQUEST_MAGIC + struct.pack(">I", 2) + b"\xff\xfe", "not UTF-8 JSON"),
    ],
)
def test_malformed_framing_is_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(payload, max_bytes=1_000_000)


def test_invalid_header_names_the_field_and_keeps_the_request_id() -> None:
    header = json.loads(_header().model_dump_json())
    header["edge_threshold"] = -1
    with pytest.raises(ProtocolError, match="edge_threshold") as caught:
        decode_request(_raw(header, _jpeg()), max_bytes=1_000_000)
    assert caught.value.request_id == "abc123"
    header = json.loads(_header().model_dump_json())
    header["surprise"] = 1
    with pytest.raises(ProtocolError, match="surprise"):
        decode_request(_raw(header, _jpeg()), max_bytes=1_000_000)


def test_body_must_be_a_jpeg_and_the_request_must_fit() -> None:
    header = json.loads(_header().model_dump_json())
    with pytest.raises(ProtocolError, match="not a JPEG") as caught:
        decode_request(_raw(header, b"\x89PNG...."), max_bytes=1_000_000)
    assert caught.value.request_id == "abc123"
    with pytest.raises(ProtocolError, match="limit is 100"):
        decode_request(encode_request(_header(), _jpeg()), max_bytes=100)


def test_jpeg_size_reads_the_frame_header() -> None:
    assert jpeg_size(_jpeg(64, 48)) == (64, 48)
    with pytest.raises(ProtocolError, match="frame header"):
        jpeg_size(b"\xff\xd8\x00\x00garbage-garbage")


def test_response_needs_a_verdict_or_an_error() -> None:
    box = SummaryBox(x=1, y=2, width=3, height=4, score=2)
    summary = MapSummary(max=2.0, area_fraction=0.01, boxes=[box])
    ok = VerifyResponse(
        request_id="r", ok=True, score=2.0, threshold=1.0, is_defect=True, summary=summary, verifier_id="v"
    )
    assert decode_response(ok.model_dump_json().encode()) == ok
    with pytest.raises(ValueError, match="needs score"):
        VerifyResponse(request_id="r", ok=True, verifier_id="v")
    with pytest.raises(ValueError, match="needs an error"):
        VerifyResponse(request_id="r", ok=False, verifier_id="v")
    for garbage in (b"", b"[]", b'{"ok": true}', b"\xff" * 10, b"x" * 70_000):
        with pytest.raises(ProtocolError):
            decode_response(garbage)
    assert error_response(None, "bad", "v").error == "bad"


class _FakeEngine:
    model_version = "verifier@1"

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def judge(self, image_bgr: np.ndarray) -> Verdict:
        self.images.append(image_bgr)
        return Verdict(2.5, 1.0, True, MapSummary(max=3.0, area_fraction=0.2, boxes=[]))


def _service(engine: _FakeEngine) -> VerifierService:
    # Not started: `_verify` is the per-request logic; the MQTT side is covered by the integration tests.
    return VerifierService(MqttSettings(), "g", engine, "v1", max_request_bytes=1_000_000)  # type: ignore[arg-type]


def test_verifier_answers_a_good_request_and_refuses_bad_ones_without_crashing() -> None:
    engine = _FakeEngine()
    service = _service(engine)
    answer = service._verify(encode_request(_header(), _jpeg(64, 48)))
    assert answer is not None and answer.ok and answer.is_defect and answer.request_id == "abc123"
    assert engine.images[0].shape == (48, 64, 3)
    header = json.loads(_header().model_dump_json())
    bad_jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x40\x00\x40\x00\x03" + b"\x00" * 20  # 16384 x 16384
    for payload, reason in (
        (b"nonsense", "EIV1"),
        (_raw(header, bad_jpeg), "each side"),
        (_raw(header, b"\xff\xd8\xff\xdb\x00\x04\x00\x00" + b"\x00" * 20), "frame header"),
    ):
        refused = service._verify(payload)
        assert refused is not None and not refused.ok and reason in (refused.error or "")
    assert len(engine.images) == 1


def test_verifier_drops_requests_past_their_deadline() -> None:
    engine = _FakeEngine()
    service = _service(engine)
    stale = _header(deadline_epoch_ms=int(time.time() * 1000) - 1)
    assert service._verify(encode_request(stale, _jpeg())) is None
    assert service.expired == 1 and not engine.images


def test_verifier_skips_requests_it_cannot_answer_in_time_and_outgrows_a_stale_estimate() -> None:
    engine = _FakeEngine()
    service = _service(engine)

    def ask() -> object:
        return service._verify(
            encode_request(_header(deadline_epoch_ms=int(time.time() * 1000) + 150), _jpeg())
        )

    service._judge_ms, service._last_judged = 400.0, time.monotonic()  # judging takes 400 ms lately
    assert ask() is None and service.expired == 1 and not engine.images, "a late answer is wasted work"
    service._last_judged -= 2.0  # nothing judged for a while: the next live request is judged anyway
    answer = ask()
    assert answer is not None and answer.ok and len(engine.images) == 1
    assert service._judge_ms < 75.0, "the probe replaced the stale estimate"
    assert ask() is not None, "with a fresh estimate 150 ms is enough again"


def test_every_alert_says_who_decided() -> None:
    result = InspectionResult(1.5, 1.0, True, [], np.zeros((4, 4), np.float32), 1.0)
    model = ModelInfo("m", "3", "ab" * 32, 1.0, 256)
    common = {
        "frame_id": 1,
        "captured_at": time.time(),
        "result": result,
        "model": model,
        "line_id": "l",
        "station_id": "s",
        "frame_size": (4, 4),
        "latency_ms": 1.0,
    }
    assert build_alert(**common)["decided_by"] == "edge"  # type: ignore[arg-type]
    assert build_alert(**common, decision=EDGE_DECISION.alert_fields())["decided_by"] == "edge"  # type: ignore[arg-type]
    fallback = Decision("fallback", "timeout", edge_is_defect=True, held_ms=200.0).alert_fields()
    assert fallback == {
        "decided_by": "fallback",
        "edge_is_defect": True,
        "fallback_reason": "timeout",
        "held_ms": 200.0,
    }
    answer = VerifyResponse(
        request_id="r",
        ok=True,
        score=0.5,
        threshold=1.0,
        is_defect=False,
        summary=MapSummary(max=0.7, area_fraction=0.0),
        verifier_id="v1",
        model_version="dense@1",
        verifier_ms=12.0,
    )
    verified = Decision("verifier", None, True, answer, 30.0).alert_fields()
    assert verified["decided_by"] == "verifier" and verified["verifier"]["verifier_id"] == "v1"
    assert verified["verifier"]["is_defect"] is False and verified["held_ms"] == 30.0


def test_deadline_must_fit_the_reject_gate() -> None:
    enabled = EscalationSettings(enabled=True, deadline_ms=200, margin_ms=50)
    assert escalation_problem(enabled, RejectSettings(gate_delay_ms=250), "5") is None
    assert escalation_problem(enabled, RejectSettings(enabled=False), "5") is None
    problem = escalation_problem(enabled, RejectSettings(gate_delay_ms=249), "5")
    assert problem and "escalation.deadline_ms" in problem and "reject.gate_delay_ms" in problem
    assert "mqtt.protocol" in (escalation_problem(enabled, RejectSettings(gate_delay_ms=900), "3.1.1") or "")
    with pytest.raises(ConfigError, match=r"reject\.gate_delay_ms"):
        load_settings(None, {"escalation": {"enabled": True}, "reject": {"gate_delay_ms": 100}})
    with pytest.raises(ConfigError, match="min_width"):
        load_settings(None, {"escalation": {"min_width": 0.5, "max_width": 0.1}})


def test_station_falls_back_at_once_when_it_cannot_ask() -> None:
    from prometheus_client import CollectorRegistry

    from device.station.camera.base import Frame
    from device.station.escalation.client import EscalationClient
    from device.station.metrics import EscalationMetrics
    from device.station.topics import Topics

    settings = EscalationSettings(enabled=True, initial_width=1.0, max_width=1.0)
    metrics = EscalationMetrics(CollectorRegistry())
    client = EscalationClient(
        MqttSettings(), settings, Topics("edgeinspect", "l", "s"), metrics
    )  # not started
    image = np.zeros((8, 8, 3), np.uint8)
    frame = Frame(frame_id=1, captured_at=time.time(), captured_mono=time.monotonic(), image=image)
    result = InspectionResult(1.2, 1.0, True, [], np.zeros((8, 8), np.float32), 1.0)
    final, decision = client.decide(frame, result, "3", gate_due_mono=None)
    assert final is result and decision.decided_by == "fallback" and decision.fallback_reason == "broker"
    _, late = client.decide(frame, result, "3", gate_due_mono=time.monotonic() - 1.0)
    assert late.fallback_reason == "late"
    far = InspectionResult(9.0, 1.0, True, [], np.zeros((8, 8), np.float32), 1.0)  # outside the band
    assert client.decide(frame, far, "3", gate_due_mono=None)[1] == EDGE_DECISION
    summary = metrics.summary()
    assert summary["escalated"] == 2 and summary["judged"] == 3
    assert summary["fallbacks"] == {"broker": 1, "late": 1}
