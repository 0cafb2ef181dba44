"""Checked by mypy (see `[tool.mypy]` in pyproject.toml), never run: the real runtime and the tests' fake
both satisfy the API's `RuntimePort`, so the fake cannot drift from what the API gets in production."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unit.app.fake_runtime import FakeRuntime

    from app.api.runtime_port import RuntimePort
    from device.station.runtime import EdgeRuntime


def _real_runtime_keeps_the_contract(runtime: EdgeRuntime) -> RuntimePort:
    return runtime


def _fake_runtime_keeps_the_contract(runtime: FakeRuntime) -> RuntimePort:
    return runtime
