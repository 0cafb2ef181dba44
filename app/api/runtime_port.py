"""What the API needs from a runtime: the one contract between the routers and `device.runtime.EdgeRuntime`.

The routers, `app.api.control` and `create_app` are typed against `RuntimePort`, not the concrete runtime, so
the API cannot reach into the runtime's threads, and mypy proves that both `EdgeRuntime` and the tests'
`FakeRuntime` keep to the same contract (`tests/unit/app/runtime_contract_check.py`).
Members are read-only properties where the API only reads them, so an implementation may use a plain
attribute of the same or a narrower type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from device.commands import Command, CommandResult
from device.model_registry import ModelEntry
from device.status import HealthReport, RuntimeStatus


class AlertHistory(Protocol):
    """The alert history the API pages through (`device.alerts.AlertStore`)."""

    def query(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        defect_type: str | None = None,
        defects_only: bool = True,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page newest first) of alert payloads."""
        ...

    def thumbnail(self, alert_id: str) -> bytes | None:
        """The alert's JPEG thumbnail, or None when there is no such alert or no thumbnail."""
        ...


class ModelCatalog(Protocol):
    """The model registry as the API uses it (`device.model_registry.ModelRegistry`); activation and
    rollback are commands, so they go through `RuntimePort.execute`."""

    def list(self) -> list[ModelEntry]:
        """Every registered model, with `active` set on the one in use."""
        ...

    def register(self, data: bytes, filename: str, expected_sha256: str) -> ModelEntry:
        """Keep an uploaded model; ValueError on a sha256 mismatch, ModelFileError on a bad file."""
        ...


class RuntimePort(Protocol):
    """The runtime as the API sees it: typed commands in, read-only views out."""

    @property
    def alert_store(self) -> AlertHistory: ...

    @property
    def models(self) -> ModelCatalog: ...

    @property
    def frame_seq(self) -> int:
        """Sequence number of the latest judged frame; changes whenever `latest_frame_jpeg` would."""
        ...

    def execute(self, command: Command, actor: str) -> CommandResult:
        """The one door for changes: a refusal is `ok=False` with the reason, not an exception."""
        ...

    def patch_config(self, patch: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        """Apply live settings; ValueError naming the field when refused. Returns {field, old, new} each."""
        ...

    def config_view(self) -> dict[str, Any]:
        """The settings a viewer may read, secrets left out."""
        ...

    def status(self) -> RuntimeStatus: ...

    def health(self) -> HealthReport: ...

    def latest_frame_jpeg(self, overlay: bool = True) -> bytes | None:
        """The latest judged frame as JPEG (with the defect overlay if asked), None before the first."""
        ...

    def metrics_text(self) -> bytes:
        """The runtime's metrics in Prometheus text format."""
        ...
