"""The verify protocol: one MQTT 5 request from a station, one answer from whichever verifier took it.

Topics: stations publish on `<prefix>/verify/request`; verifiers subscribe to
`$share/<group>/<prefix>/verify/request`, so the broker hands each request to one member of the group
(load sharing with no coordinator of ours). The answer goes to the request's MQTT 5 ResponseTopic
(`<prefix>/<line>/<station>/verify/response`) with the request's CorrelationData echoed.

Request payload (a small binary framing, no base64): `EIV1` magic, a 4-byte big-endian header length,
the JSON header (`VerifyRequest`), then the frame as JPEG bytes. Response payload: JSON (`VerifyResponse`).
Everything is checked on arrival; a malformed request gets an `ok: false` answer naming the problem.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vision.types import Box

PROTOCOL_VERSION: Literal[1] = 1
REQUEST_MAGIC = b"EIV1"
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 16_384
MAX_RESPONSE_BYTES = 65_536
MAX_SUMMARY_BOXES = 10
_JPEG_START = b"\xff\xd8"
_ERROR_CHARS = 300

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class ProtocolError(ValueError):
    """A payload that breaks the contract; `request_id` is set when the header was readable."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message[:_ERROR_CHARS])
        self.request_id = request_id


def request_topic(prefix: str) -> str:
    """Where stations publish review requests (plant-wide, one topic for all stations)."""
    return f"{prefix}/verify/request"


def shared_request_topic(prefix: str, group: str) -> str:
    """What a verifier subscribes to: members of one group share the requests."""
    if not group or any(ch in group for ch in "/+#"):
        raise ValueError(f"verifier group {group!r} must be one topic level without wildcards")
    return f"$share/{group}/{request_topic(prefix)}"


def response_topic(station_base: str) -> str:
    """Where one station's answers arrive (`station_base` is `Topics.base`)."""
    return f"{station_base}/verify/response"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VerifyRequest(_Message):
    """The JSON header of a request; the JPEG frame follows it in the payload."""

    v: Literal[1] = PROTOCOL_VERSION
    request_id: Identifier
    line_id: Identifier
    station_id: Identifier
    frame_id: int = Field(..., ge=0)
    edge_score: FiniteFloat
    edge_threshold: FiniteFloat = Field(..., gt=0)
    edge_model_version: str = Field(..., max_length=128)
    deadline_epoch_ms: int = Field(..., ge=0, description="Wall clock; the station decides alone after it.")
    sent_epoch_ms: int = Field(..., ge=0)


class SummaryBox(_Message):
    x: int = Field(..., ge=0)
    y: int = Field(..., ge=0)
    width: int = Field(..., ge=0)
    height: int = Field(..., ge=0)
    score: FiniteFloat

    @classmethod
    def of(cls, box: Box) -> SummaryBox:
        return cls(x=box.x, y=box.y, width=box.width, height=box.height, score=float(box.score))

    def to_box(self) -> Box:
        return Box(x=self.x, y=self.y, width=self.width, height=self.height, score=self.score)


class MapSummary(_Message):
    """What the verifier's anomaly map says, small enough for an alert: peak, area over threshold, boxes."""

    max: FiniteFloat
    area_fraction: float = Field(..., ge=0.0, le=1.0)
    boxes: list[SummaryBox] = Field(default_factory=list, max_length=MAX_SUMMARY_BOXES)


class VerifyResponse(_Message):
    """A verifier's answer: a verdict (`ok`) or the reason it could not give one (`error`)."""

    v: Literal[1] = PROTOCOL_VERSION
    request_id: str = Field(..., max_length=128)
    ok: bool
    error: str | None = Field(None, max_length=_ERROR_CHARS)
    score: FiniteFloat | None = None
    threshold: FiniteFloat | None = None
    is_defect: bool | None = None
    summary: MapSummary | None = None
    verifier_id: str = Field(..., max_length=128)
    model_version: str = Field("", max_length=512)
    verifier_ms: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _verdict_or_error(self) -> VerifyResponse:
        verdict = (self.score, self.threshold, self.is_defect, self.summary)
        if self.ok and any(part is None for part in verdict):
            raise ValueError("an ok response needs score, threshold, is_defect and summary")
        if not self.ok and not self.error:
            raise ValueError("a failed response needs an error")
        return self


def encode_request(header: VerifyRequest, jpeg: bytes) -> bytes:
    """Magic, header length, JSON header, JPEG bytes."""
    text = header.model_dump_json().encode()
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"request header is {len(text)} bytes; the limit is {MAX_HEADER_BYTES}")
    return REQUEST_MAGIC + _LENGTH.pack(len(text)) + text + jpeg


def decode_request(payload: bytes, max_bytes: int) -> tuple[VerifyRequest, bytes]:
    """Bytes from the request topic to (header, JPEG bytes); ProtocolError names what is wrong."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"request is {len(payload)} bytes; the limit is {max_bytes}")
    start = len(REQUEST_MAGIC) + _LENGTH.size
    if len(payload) < start or not payload.startswith(REQUEST_MAGIC):
        raise ProtocolError(f"request does not start with {REQUEST_MAGIC.decode()} and a header length")
    (length,) = _LENGTH.unpack_from(payload, len(REQUEST_MAGIC))
    if length > MAX_HEADER_BYTES or start + length > len(payload):
        raise ProtocolError(f"header length {length} does not fit the {len(payload)}-byte request")
    try:
        data = json.loads(payload[start : start + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from exc
    request_id = _readable_id(data)
    try:
        header = VerifyRequest.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid header: {_describe(exc)}", request_id) from exc
    jpeg = payload[start + length :]
    if not jpeg.startswith(_JPEG_START):
        raise ProtocolError("the frame after the header is not a JPEG", header.request_id)
    return header, jpeg


def decode_response(payload: bytes) -> VerifyResponse:
    """Bytes from a response topic to a `VerifyResponse`; ProtocolError when it breaks the contract."""
    if len(payload) > MAX_RESPONSE_BYTES:
        raise ProtocolError(f"response is {len(payload)} bytes; the limit is {MAX_RESPONSE_BYTES}")
    try:
        return VerifyResponse.model_validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid response: {_describe(exc)}") from exc


def error_response(request_id: str | None, message: str, verifier_id: str) -> VerifyResponse:
    return VerifyResponse(
        request_id=(request_id or "")[:128], ok=False, error=message[:_ERROR_CHARS], verifier_id=verifier_id
    )


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, read before decoding so a tiny file claiming a huge
    image is refused instead of allocated."""
    i = 2
    while i + 9 <= len(jpeg):
        if jpeg[i] != 0xFF:
            break
        marker = jpeg[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            height, width = struct.unpack_from(">HH", jpeg, i + 5)
            return width, height
        (length,) = struct.unpack_from(">H", jpeg, i + 2)
        i += 2 + length
    raise ProtocolError("the JPEG has no readable frame header")


def _readable_id(data: object) -> str | None:
    if isinstance(data, dict):
        value = data.get("request_id")
        if isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable():
            return value
    return None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        field = ".".join(str(p) for p in item["loc"])
        parts.append(f"{field}: {item['msg']}" if field else item["msg"])
    return "; ".join(parts)
