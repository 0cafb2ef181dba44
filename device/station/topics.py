"""The station's MQTT topic names: the public contract that PLCs, SCADA and historians subscribe to.

Kept in one place so the alert publisher, the status publisher, the command listener and the docs can
never disagree about a topic string.
"""

from __future__ import annotations

from dataclasses import dataclass

_WILDCARDS = ("+", "#")


def _check_level(name: str, value: str, allow_slash: bool) -> str:
    if not value:
        raise ValueError(f"{name} must not be empty")
    if any(ch in value for ch in _WILDCARDS) or "\x00" in value:
        raise ValueError(f"{name} {value!r} must not contain MQTT wildcards (+, #) or NUL")
    if not allow_slash and "/" in value:
        raise ValueError(f"{name} {value!r} must be a single topic level (no '/')")
    if allow_slash and any(not part for part in value.split("/")):
        raise ValueError(
            f"{name} {value!r} must not have empty topic levels ('//' or a leading/trailing '/')"
        )
    return value


@dataclass(frozen=True)
class Topics:
    """`<prefix>/<line>/<station>/...`; the prefix may span several levels (`plant7/edgeinspect`)."""

    prefix: str
    line_id: str
    station_id: str

    def __post_init__(self) -> None:
        _check_level("topic prefix", self.prefix, allow_slash=True)
        _check_level("line id", self.line_id, allow_slash=False)
        _check_level("station id", self.station_id, allow_slash=False)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.line_id}/{self.station_id}"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def reject(self) -> str:
        return f"{self.base}/reject"

    @property
    def line_speed(self) -> str:
        return f"{self.base}/line_speed"

    @property
    def command(self) -> str:
        return f"{self.base}/command"

    @property
    def command_response(self) -> str:
        return f"{self.base}/command/response"

    def all(self) -> dict[str, str]:
        """Every topic by name, for docs, the config view and tests."""
        return {
            "alert": self.alert,
            "status": self.status,
            "result": self.result,
            "reject": self.reject,
            "line_speed": self.line_speed,
            "command": self.command,
            "command_response": self.command_response,
        }
