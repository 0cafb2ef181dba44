"""Command messages from the broker: every kind of bad input becomes an answer that names the problem."""

from __future__ import annotations

import json

import pytest

from device.station.commands import SetThreshold
from device.station.mqtt_link import CommandRejected, parse_command


def test_a_valid_command_becomes_its_typed_model() -> None:
    command = parse_command(
        json.dumps({"command": "set_threshold", "threshold": 0.7, "request_id": "r1"}).encode()
    )
    assert isinstance(command, SetThreshold)
    assert command.threshold == 0.7 and command.request_id == "r1"


@pytest.mark.parametrize(
    ("payload", "command", "request_id", "problem"),
    [
        (b"not json", "unknown", None, "not valid JSON"),
        (b"\xff\xfe\x00", "unknown", None, "not UTF-8"),
        (b"[1, 2]", "unknown", None, "must be a JSON object, got list"),
        (
            b'{"command": "explode", "request_id": "r2"}',
            "explode",
            "r2",
            "does not match any of the expected tags",
        ),
        (b'{"threshold": 1}', "unknown", None, "command"),
        (
            b'{"command": "set_threshold", "threshold": "high"}',
            "set_threshold",
            None,
            "set_threshold.threshold",
        ),
        (b'{"command": "set_threshold", "threshold": -1}', "set_threshold", None, "greater than 0"),
        (b'{"command": "pause", "extra": 1}', "pause", None, "pause.extra"),
        (b"{" + b" " * 70_000 + b"}", "unknown", None, "the limit is 65536"),
    ],
)
def test_bad_commands_are_rejected_with_a_reason(
    payload: bytes, command: str, request_id: str | None, problem: str
) -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_command(payload)
    result = caught.value.result()
    assert result.ok is False
    assert result.command == command
    assert result.request_id == request_id
    assert problem in result.message
    assert len(result.message) < 400  # a huge payload is never echoed back
