"""What the API needs from a runtime: the one contract between the routers and
`device.station.runtime.EdgeRuntime`.

The routers, `app.api.control` and `create_app` are typed against `RuntimePort`, not the concrete runtime, so
the API cannot reach into the runtime's threads, and mypy proves that both `EdgeRuntime` and the tests'
`FakeRuntime` keep to the same contract (`tests/unit/app/runtime_contract_check.py`).
Members are read-only properties where the API only reads them, so an implementation may use a plain
attribute of the same or a narrower type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from device.config import RegionOfInterest
from device.station.alerts import ReviewFilter, ReviewState
from device.station.archive import ArchivedImage, ArchiveStats, MvtecExport, UnreviewedPolicy, Verdict
from device.station.commands import Command, CommandResult
from device.station.model_registry import ModelEntry
from device.station.product_build import BuildStatus
from device.station.product_capture import CaptureStatus
from device.station.recipes import RecipesView
from device.station.roi_preview import RoiPreview
from device.station.rollout.view import RolloutView
from device.station.shadow import ShadowStatus
from device.station.status import FrameVerdict, HealthReport, RuntimeStatus
from device.station.teaching import TeachJob
from device.station.trends import TrendReport


class AlertHistory(Protocol):
    """The alert history the API pages through (`device.station.alerts.AlertStore`)."""

    def query(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        defect_type: str | None = None,
        defects_only: bool = True,
        review_state: ReviewFilter | None = None,
        before_id: str | None = None,
        until_id: str | None = None,
        after_id: str | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page newest first) of alert payloads, each with its `review` or None.
        Cursors by alert id (older than / this and older / newer than) keep a page still while alerts
        arrive; one naming no alert in the history raises `device.station.alerts.AlertCursorError` (a
        ValueError)."""
        ...

    def thumbnail(self, alert_id: str) -> bytes | None:
        """The alert's JPEG thumbnail, or None when there is no such alert or no thumbnail."""
        ...

    def review(
        self, alert_id: str, state: ReviewState, comment: str, reviewer: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Record or replace a review: (previous, new); KeyError unknown alert, ValueError bad input."""
        ...

    def review_states(self, alert_ids: Iterable[str]) -> dict[str, ReviewState]:
        """The review state of each of these alerts that has one (unreviewed or unknown ones left out)."""
        ...

    def review_counts(self, since: datetime | None = None) -> dict[str, int]:
        """Alerts per review state (`unreviewed`, `confirmed`, `false_alarm`) and `taught`; with `since`,
        only alerts captured at or after it."""
        ...

    def export_rows(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        review_state: ReviewFilter | None = None,
        batch: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching alert with its review, oldest first."""
        ...


class ModelCatalog(Protocol):
    """The model registry as the API uses it (`device.station.model_registry.ModelRegistry`); activation and
    rollback are commands, so they go through `RuntimePort.execute`."""

    def list(self) -> list[ModelEntry]:
        """Every registered model, with `active` set on the one in use."""
        ...

    def register(self, data: bytes, filename: str, expected_sha256: str) -> ModelEntry:
        """Keep an uploaded model; ValueError on a sha256 mismatch, ModelFileError on a bad file."""
        ...

    def previous_id(self) -> str | None:
        """The model a rollback would go back to (the one active before the current), None when none."""
        ...


class ArchiveCatalog(Protocol):
    """The image archive as the API reads it (`device.station.archive.ImageArchive`); writing is the
    runtime's."""

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        verdict: Verdict | None = None,
        defect_class: str | None = None,
        alert_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[ArchivedImage]]:
        """(total matching, one page newest first)."""
        ...

    def get(self, item_id: int) -> ArchivedImage | None: ...

    def get_many(self, item_ids: Sequence[int]) -> list[ArchivedImage]:
        """ArchiveItemNotFound naming every unknown id."""
        ...

    def find_by_alert(self, alert_id: str) -> ArchivedImage | None: ...

    def read_image(self, item_id: int, overlay: bool = False) -> bytes:
        """JPEG bytes; ArchiveItemNotFound when unknown or pruned."""
        ...

    def export_mvtec(
        self,
        items: Sequence[ArchivedImage],
        category: str,
        labels: Mapping[int, str] | None = None,
        *,
        reviews: Mapping[str, ReviewState] | None = None,
        unreviewed: UnreviewedPolicy = "defect",
    ) -> MvtecExport:
        """The plan (`device.station.archive.plan_mvtec_export`: reviews place NG parts) and its ZIP chunks
        in the
        MVTec AD layout; ValueError / ArchiveItemNotFound before the first chunk."""
        ...

    def stats(self) -> ArchiveStats: ...


class TeachService(Protocol):
    """Teach jobs (`device.station.teaching.TeachJobs`): build a candidate model from reviewed alerts."""

    def start(
        self, alert_ids: list[str] | None, actor: str, on_done: Callable[[TeachJob], None] | None = None
    ) -> TeachJob:
        """Start a teach-normal job (None: every untaught false alarm); TeachRequestError (409; its
        subclass UnknownAlertsError 404), TeachBusyError (409)."""
        ...

    def start_defects(self, actor: str, on_done: Callable[[TeachJob], None] | None = None) -> TeachJob:
        """Start a teach-defects job on the confirmed defects; TeachRequestError (409: none to teach, or a
        model without a per-position Gaussian head), TeachBusyError (409)."""
        ...

    def get(self, job_id: str) -> TeachJob | None:
        """A job's status, progress and (when done) its candidate model and figures."""
        ...


class RuntimePort(Protocol):
    """The runtime as the API sees it: typed commands in, read-only views out."""

    @property
    def alert_store(self) -> AlertHistory: ...

    @property
    def models(self) -> ModelCatalog: ...

    @property
    def teacher(self) -> TeachService: ...

    @property
    def archive(self) -> ArchiveCatalog: ...

    @property
    def frame_seq(self) -> int:
        """Sequence number of the latest judged frame; changes whenever `latest_frame_jpeg` would."""
        ...

    def execute(self, command: Command, actor: str) -> CommandResult:
        """The one door for changes: a refusal is `ok=False` with the reason, not an exception."""
        ...

    def preview_roi(self, roi: RegionOfInterest | None) -> RoiPreview:
        """What `roi` would do to judging (recent raw frames scored under the current ROI and under it,
        active model, live knobs); changes nothing. ValueError when there is nothing to judge with."""
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

    def latest_verdict(self) -> FrameVerdict | None:
        """The frame `latest_frame_jpeg` shows (its seq, id, capture time) and its verdict, score and
        threshold (None when it was not judged); None before the first frame."""
        ...

    def recipes_view(self) -> RecipesView:
        """Every recipe (product) on the station, the active one and the models loaded."""
        ...

    def capture_status(self) -> CaptureStatus | None:
        """The product capture's progress and images (None before the first capture)."""
        ...

    def capture_image(self, image: str) -> Path:
        """The file of one captured image; KeyError when the capture has none of that name."""
        ...

    def build_status(self) -> BuildStatus | None:
        """The station build of a captured product: progress, then the held-back check (None: never run)."""
        ...

    def shadow_status(self) -> ShadowStatus | None:
        """The candidate model in the shadow: parts compared, agreement, disagreements (None: never run)."""
        ...

    def shadow_thumbnail(self, frame_id: int) -> bytes:
        """The candidate's overlay (JPEG) of a part it disagreed on; KeyError when not kept."""
        ...

    def metrics_text(self) -> bytes:
        """The runtime's metrics in Prometheus text format."""
        ...

    def rollout_view(self) -> RolloutView:
        """Fleet rollout state: releases handled with outcomes, trusted key fingerprints (never keys)."""
        ...

    def trend_report(self, window_s: int) -> TrendReport:
        """Defect rate, latency and score trends over the last `window_s` seconds, per shift too;
        ValueError when the window is longer than the history kept."""
        ...
