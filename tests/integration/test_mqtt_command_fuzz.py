"""Generated command messages through a real Mosquitto into a real `EdgeRuntime` (ONNX model, simulator).

The command topic is open to anything on the plant network, so whatever arrives there must be answered
on `<...>/command/response` (bad input: `ok: false` with a reason) and must never stop the runtime.
Each probe is published with its own MQTT 5 correlation data, so every answer is matched to its message
even when the payload is not JSON; a `request_id` the payload carries must come back as well.
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_CATEGORY
from fixtures_mqtt import MessageCollector, Received, wait_until
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.settings import load_settings
from device.station.broker import MosquittoBroker
from device.station.runtime import EdgeRuntime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # An exception that ends any thread (the MQTT command thread included) fails the test.
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

LIMIT = 65_536  # README: commands over 64 KiB are refused
SAFE_TEXT = "abcdefghjklmopqrstuvwxyz"  # no i/n: pydantic reads "inf" and "nan" as numbers
ID_TEXT = string.ascii_letters + string.digits + "-_."


@dataclass(frozen=True)
class Probe:
    """One message for the command topic and what its answer must say."""

    kind: str
    payload: bytes
    bad: bool  # must be answered `ok: false` with a reason
    echo: str | None  # the `request_id` the answer must carry (None: it must be null)


@dataclass
class Station:
    runtime: EdgeRuntime
    client: MessageCollector
    model_id: str


@pytest.fixture
def station(tmp_path: Path, trained_model: Path, mosquitto: MosquittoBroker) -> Iterator[Station]:
    """A running line on a real broker, and a client that sends commands and reads the answers."""
    settings_ = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": TEST_CATEGORY, "fps": 10, "defect_rate": 0.2},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-command-fuzz"},
        },
    )
    runtime = EdgeRuntime(settings_)
    runtime.start()
    try:
        wait_until(lambda: runtime.link.connected and runtime.metrics.frames >= 2, 60, "line running")
        model = runtime.status().model
        assert model is not None and model.id is not None
        with MessageCollector(mosquitto.url, [runtime.topics.command_response]) as client:
            yield Station(runtime, client, model.id)
    finally:
        runtime.stop()


# ---- generated payloads ------------------------------------------------------------------------
request_ids = st.text(alphabet=ID_TEXT, min_size=1, max_size=40)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
not_a_number = (
    st.none()
    | st.text(alphabet=SAFE_TEXT, min_size=1, max_size=10)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), junk)
)
not_a_string = st.none() | st.integers() | st.lists(st.text(max_size=5), max_size=3)
# JSON may escape a lone surrogate (`"\ud800"`): valid JSON, but no text that an answer could carry.
lone_surrogates = st.builds(
    lambda head, code: head + chr(code), st.text(alphabet=ID_TEXT, max_size=8), st.integers(0xD800, 0xDFFF)
)


def valid_fields(model_ids: list[str]) -> dict[str, dict[str, st.SearchStrategy[Any]]]:
    """Each command's fields, drawn from their valid ranges (`model_ids` includes the real one)."""
    pixel, extent = st.integers(0, 300), st.integers(1, 300)
    model_id = st.sampled_from(model_ids) | st.text(alphabet=ID_TEXT, min_size=1, max_size=64)
    return {
        "start": {},
        "stop": {},
        "pause": {},
        "resume": {},
        "reset_threshold": {},
        "clear_roi": {},
        "rollback_model": {},
        "set_threshold": {"threshold": st.floats(0.001, 1e5)},
        "line_speed": {"parts_per_minute": st.floats(0.5, 1e5)},
        "reject_ack": {"frame_id": st.integers(0, 2**40)},
        "set_roi": {"x": pixel, "y": pixel, "width": extent, "height": extent},
        "activate_model": {"model_id": model_id},
    }


COMMAND_NAMES = frozenset(valid_fields(["m"]))

# Values each field refuses: out of range, not finite, too long or of the wrong type.
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "threshold": st.sampled_from([0, -1.5, 1e6, 1e300, math.nan, math.inf, -math.inf]) | not_a_number,
    "parts_per_minute": st.sampled_from([0, -3, 100_001, math.nan, math.inf]) | not_a_number,
    "frame_id": st.sampled_from([-1, 1.5, math.inf]) | not_a_number,
    "x": st.sampled_from([-1, 100_001, 2**70]) | not_a_number,
    "y": st.sampled_from([-1, 100_001]) | not_a_number,
    "width": st.sampled_from([0, -5, 100_001]) | not_a_number,
    "height": st.sampled_from([0, 100_001, math.nan]) | not_a_number,
    "model_id": st.sampled_from(["", "a" * 129, "../../etc/passwd", "a b", "é"]) | not_a_string,
}


def as_probe(kind: str, document: Any, bad: bool, echo: str | None) -> Probe:
    return Probe(kind, json.dumps(document).encode(), bad, echo)  # NaN/Infinity as Python writes them


@st.composite
def valid_commands(draw: st.DrawFn, fields: dict[str, dict[str, st.SearchStrategy[Any]]]) -> Probe:
    name = draw(st.sampled_from(sorted(fields)))
    request_id = draw(request_ids)
    document = {"command": name, **{k: draw(v) for k, v in fields[name].items()}, "request_id": request_id}
    return as_probe(f"valid {name}", document, bad=False, echo=request_id)


@st.composite
def broken_commands(draw: st.DrawFn, fields: dict[str, dict[str, st.SearchStrategy[Any]]]) -> Probe:
    """A known command name with a field missing, out of range, of the wrong type, or one too many."""
    breakage = draw(st.sampled_from(["missing", "bad value", "extra"]))
    names = sorted(n for n, f in fields.items() if f or breakage == "extra")  # only fields can go missing
    name = draw(st.sampled_from(names))
    document: dict[str, Any] = {"command": name, **{k: draw(v) for k, v in fields[name].items()}}
    request_id = draw(request_ids)
    document["request_id"] = request_id
    if breakage == "missing":
        del document[draw(st.sampled_from(sorted(fields[name])))]
    elif breakage == "bad value":
        field = draw(st.sampled_from(sorted(fields[name])))
        document[field] = draw(BAD_VALUES[field])
    else:
        extra = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in document))
        document[extra] = draw(junk | st.text(min_size=1000, max_size=20_000))
    return as_probe(f"{name}: {breakage}", document, bad=True, echo=request_id)


@st.composite
def bad_envelopes(draw: st.DrawFn) -> Probe:
    """What is wrong is the message itself: its name, its request_id, or the command is not an object."""
    request_id = draw(request_ids)
    choice = draw(st.sampled_from(["unknown name", "name not a string", "huge name", "bad request_id"]))
    if choice == "unknown name":
        name = draw((st.text(max_size=30) | lone_surrogates).filter(lambda n: n not in COMMAND_NAMES))
        return as_probe(choice, {"command": name, "request_id": request_id}, bad=True, echo=request_id)
    if choice == "name not a string":
        return as_probe(choice, {"command": draw(not_a_string), "request_id": request_id}, True, request_id)
    if choice == "huge name":
        name = "x" * draw(st.integers(100, 60_000))
        return as_probe(choice, {"command": name, "request_id": request_id}, bad=True, echo=request_id)
    too_long = st.text(alphabet=ID_TEXT, min_size=129, max_size=5000)
    wrong_id = draw(too_long | lone_surrogates | not_a_string.filter(bool))
    return as_probe(choice, {"command": "pause", "request_id": wrong_id}, bad=True, echo=None)


@st.composite
def raw_payloads(draw: st.DrawFn) -> Probe:
    """Bytes that are not a JSON object: noise, non-UTF-8, other JSON, deep nesting, over the size limit."""
    choice = draw(
        st.sampled_from(["bytes", "not utf-8", "json not an object", "deep", "deep inside", "oversized"])
    )
    if choice == "bytes":
        return Probe(choice, draw(st.binary(max_size=300)), bad=True, echo=None)
    if choice == "not utf-8":
        good = b'{"command": "pause", "request_id": "r-'
        return Probe(
            choice, good + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"])) + b'"}', True, None
        )
    if choice == "json not an object":
        value = draw(junk.filter(lambda v: not isinstance(v, dict)))
        return as_probe(choice, value, bad=True, echo=None)
    depth = draw(st.integers(900, 30_000))
    if choice == "deep":
        return Probe(choice, b"[" * depth + b"]" * depth, bad=True, echo=None)
    if choice == "deep inside":
        inner = b"[" * depth + b"]" * depth
        return Probe(choice, b'{"command": "pause", "x": ' + inner + b"}", bad=True, echo=None)
    padding = b" " * draw(st.integers(LIMIT - 18, LIMIT + 20_000))
    payload = b'{"command":"stop"}' + padding  # a valid command, only too big: refused unread
    return Probe(choice, payload, bad=len(payload) > LIMIT, echo=None)


def probes(model_ids: list[str]) -> st.SearchStrategy[Probe]:
    fields = valid_fields(model_ids)
    return st.one_of(valid_commands(fields), broken_commands(fields), bad_envelopes(), raw_payloads())


# ---- sending and checking ----------------------------------------------------------------------
def send(station: Station, payload: bytes, tag: str, retain: bool = False) -> dict[str, Any]:
    """Publish one command with correlation data `tag`; the one answer that carries it, parsed."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.CorrelationData = tag.encode()
    topics = station.runtime.topics
    station.client.publish(topics.command, payload, properties=properties, retain=retain)

    def answered(messages: list[Received]) -> bool:
        return any(correlation(m) == tag for m in messages)

    messages = station.client.wait_for(answered, timeout_s=20, topic=topics.command_response)
    matching = [m for m in messages if correlation(m) == tag]
    assert len(matching) == 1, f"{len(matching)} answers to {tag}"
    answer = json.loads(matching[0].payload)
    assert isinstance(answer, dict)
    return answer


def correlation(message: Received) -> str | None:
    data = getattr(message.properties, "CorrelationData", None) if message.properties else None
    return data.decode() if data is not None else None


def check_answer(probe: Probe, answer: dict[str, Any]) -> None:
    assert {"ok", "command", "request_id", "message"} <= answer.keys()
    assert answer["request_id"] == probe.echo
    if probe.bad or answer["ok"] is not True:
        assert answer["ok"] is False, answer
        assert isinstance(answer["message"], str) and answer["message"].strip(), answer
    if not probe.bad:  # a valid command is named in its answer (it may still be refused, e.g. resume)
        assert answer["command"] == json.loads(probe.payload)["command"]


def test_every_generated_command_is_answered_and_the_runtime_survives(
    station: Station, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[Probe] = []

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(probe=probes([station.model_id]))
    # Found by this test: both killed the command thread, so nothing was answered afterwards.
    @example(probe=Probe("deep", b"[" * 60_000, bad=True, echo=None))
    @example(probe=Probe("surrogate", rb'{"command":"pause","request_id":"\ud800"}', bad=True, echo=None))
    def send_one(probe: Probe) -> None:
        note(f"{probe.kind}: {probe.payload[:200]!r}")
        sent.append(probe)
        check_answer(probe, send(station, probe.payload, f"probe-{len(sent)}"))

    send_one()

    runtime = station.runtime
    answers = station.client.snapshot(runtime.topics.command_response)
    assert len(answers) == len(sent)  # one answer per message: none lost, none doubled
    assert runtime.link.commands_rejected >= sum(p.bad for p in sent)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
    # Still alive and still obeying: a plain start is carried out and the line judges frames again.
    assert runtime.link.connected and runtime.worker.alive
    answer = send(station, b'{"command": "start", "request_id": "after-fuzz"}', "after-fuzz")
    assert answer["ok"] is True and answer["request_id"] == "after-fuzz"
    frames = runtime.metrics.frames
    wait_until(lambda: runtime.metrics.frames >= frames + 3, 30, "frames judged after the fuzzing")
    assert runtime.health().status != "down"


def test_retained_and_oversized_commands_are_refused_with_an_answer(station: Station) -> None:
    """README: retained commands and commands over 64 KiB are refused; the sender still hears why."""
    runtime = station.runtime
    stop = b'{"command": "stop", "request_id": "retained"}'
    retained = send(station, stop, "retained", retain=True)  # sent while the station listens
    cleared = send(station, b"", "clear", retain=True)  # the empty retained message that removes it
    assert retained["ok"] is False and "retained" in retained["message"]
    assert cleared["ok"] is False
    assert runtime.status().state == "running"  # the retained stop did not run

    at_limit = b'{"command": "pause", "request_id": "at-limit"}'
    answer = send(station, at_limit + b" " * (LIMIT - len(at_limit)), "at-limit")
    assert answer["ok"] is True and answer["request_id"] == "at-limit"  # exactly 64 KiB is accepted
    over = send(station, b'{"command": "resume"}' + b" " * LIMIT, "over")
    assert over["ok"] is False and f"limit is {LIMIT}" in over["message"]
    assert runtime.status().state == "paused"  # the oversized resume did not run
