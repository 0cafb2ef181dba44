"""What the OPC UA server needs from the runtime, as small typed callables (no import of the runtime).

The runtime hands over three things: a status snapshot provider, its one command door (`execute`), and
it feeds `OpcUaServer.publish_result(PartResult)` once per judged part. Tests pass fakes with the same
shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from device.station.commands import Command, CommandResult
from device.station.part_result import PartResult
from device.station.status import RuntimeStatus

StatusProvider = Callable[[], RuntimeStatus]


class CommandExecutor(Protocol):
    """`EdgeRuntime.execute`: apply one typed command on behalf of `actor` and say how it went."""

    def __call__(self, command: Command, actor: str, /) -> CommandResult: ...


__all__ = ["CommandExecutor", "PartResult", "StatusProvider"]
