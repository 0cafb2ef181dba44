"""A stand-in for `device.station.runtime.EdgeRuntime` with the same facade, for API, schema and panel tests.

It produces real JPEG frames (a part with a frame counter, a red box on defective parts) and alerts with
thumbnails, either on a background thread (`start()`, for uvicorn + Chromium) or one at a time
(`advance()`, for deterministic unit tests). Commands and config patches change its state the way the
real runtime's do, so tests can check effects through `/status`.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from unit.app.fake_teacher import FakeLearner

from device.config import ArchiveSettings, RegionOfInterest, TrendSettings
from device.station.alerts import AlertStore
from device.station.archive import ArchiveRecord, ImageArchive
from device.station.camera.base import Frame
from device.station.commands import (
    ActivateModel,
    BuildProduct,
    CancelCapture,
    CaptureProduct,
    ClearRegionOfInterest,
    Command,
    CommandResult,
    DeleteRecipe,
    PauseInspection,
    PrepareRecipe,
    RequestLineSpeed,
    ResetThreshold,
    ResumeInspection,
    RollbackModel,
    SaveRecipe,
    SelectRecipe,
    SetRegionOfInterest,
    SetThreshold,
    StartLine,
    StartShadow,
    StopLine,
    StopShadow,
    StrikeCapture,
)
from device.station.model_registry import ModelEntry
from device.station.product_build import MIN_IMAGES, BuildStatus, HeldBackImage
from device.station.product_capture import CaptureStatus, ProductCapture
from device.station.recipes import RecipeError, RecipeStore, RecipesView
from device.station.roi_preview import REBUILD_HINT, REBUILD_ON_STATION, RoiPreview, RoiWarning, judge_verdict
from device.station.rollout.view import PublicKeyBytes, RolloutView, build_rollout_view
from device.station.shadow import ShadowRun, ShadowStatus
from device.station.status import (
    ComponentHealth,
    FrameVerdict,
    HealthReport,
    LatencyStatus,
    ModelStatus,
    RuntimeState,
    RuntimeStatus,
)
from device.station.teaching import TeachJobs
from device.station.trends import TrendRecorder, TrendReport
from device.wire.fleet import StationReport
from vision.inspector import Inspector, ModelFileError
from vision.teach import TeachReport
from vision.teach_defects import DefectTeachReport
from vision.types import Box, InspectionResult

FAKE_MODEL_MAGIC = b"FAKE-ONNX"
CALIBRATED_THRESHOLD = 0.5
SHADOW_THRESHOLD = 0.6  # the stand-in candidate's calibrated threshold
SHADOW_NG_EVERY = 3  # the stand-in candidate calls every third frame NG (the line: every `defect_every`th)
LIVE_FIELDS = {
    "inspection": {"threshold", "min_defect_area_px", "max_boxes"},
    "reject": {"enabled", "gate_delay_ms"},
}


def fake_model_bytes(name: str = "fake", version: str = "2") -> bytes:
    """Bytes the fake registry accepts as a model (the real one checks the ONNX contract instead)."""
    return FAKE_MODEL_MAGIC + f":{name}:{version}".encode()


class FakeModelRegistry:
    def __init__(self) -> None:
        self.entries: list[ModelEntry] = [self._entry(fake_model_bytes("fake", "1"), "fake", "1")]
        self.active_id = self.entries[0].id
        self.history = [self.active_id]

    @staticmethod
    def _entry(
        data: bytes,
        name: str,
        version: str,
        teach: TeachReport | None = None,
        teach_defects: DefectTeachReport | None = None,
    ) -> ModelEntry:
        digest = hashlib.sha256(data).hexdigest()
        return ModelEntry(
            id=f"{name}-{digest[:12]}",
            name=name,
            version=version,
            sha256=digest,
            size_bytes=len(data),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            teach=teach,
            teach_defects=teach_defects,
        )

    def list(self) -> list[ModelEntry]:
        return [e.model_copy(update={"active": e.id == self.active_id}) for e in self.entries]

    def register(
        self,
        data: bytes,
        filename: str,
        expected_sha256: str,
        teach: TeachReport | None = None,
        teach_defects: DefectTeachReport | None = None,
    ) -> ModelEntry:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.strip().lower():
            raise ValueError(f"sha256 mismatch for {filename!r}: expected {expected_sha256}, got {actual}")
        if not data.startswith(FAKE_MODEL_MAGIC):
            raise ModelFileError(f"{filename}: not an ONNX model with the EdgeInspect contract")
        _, name, version = data.decode().split(":")
        entry = self._entry(data, name, version, teach, teach_defects)
        self.entries.append(entry)
        return entry

    def get(self, model_id: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.id == model_id), None)

    def previous_id(self) -> str | None:
        return self.history[-2] if len(self.history) >= 2 else None


class FakeRolloutStation:
    """What `RolloutStation.history` gives, without MQTT: tests add the reports a station would make."""

    def __init__(self, station_id: str, trusted: Sequence[PublicKeyBytes]) -> None:
        self.station_id = station_id
        self.trusted = trusted
        self.events: list[StationReport] = []  # this run, oldest first
        self.remembered: list[StationReport] = []  # final reports from state.json (earlier runs)
        self.newest_created_at: str | None = None

    def history(self) -> tuple[list[StationReport], list[StationReport], str | None]:
        return list(self.events), list(self.remembered), self.newest_created_at


class FakeRuntime:
    """Same methods as EdgeRuntime's API facade (`app.api.runtime_port.RuntimePort`, which mypy checks both
    against); state changes are visible in `status()`."""

    def __init__(self, fps: float = 8.0, defect_every: int = 4, size: int = 160) -> None:
        self.fps = fps
        self.defect_every = defect_every
        self.size = size
        self.alert_store = AlertStore(":memory:")  # the real history, in memory
        self.models = FakeModelRegistry()
        recipe_dir = tempfile.mkdtemp(prefix="edgeinspect-fake-recipes-")
        weakref.finalize(self, shutil.rmtree, recipe_dir, True)
        self.recipes = RecipeStore(f"{recipe_dir}/recipes.json", lambda m: self.models.get(m) is not None)
        self.prepared: set[str] = set()
        self.datasets = Path(recipe_dir) / "datasets"
        self.product_capture: ProductCapture | None = None  # the real capture, fed by `advance()`
        self.product_build: BuildStatus | None = None
        self.shadow: ShadowRun | None = None  # the real shadow, a stand-in candidate, fed by `advance()`
        self._shadow_frames: dict[int, tuple[np.ndarray, int]] = {}  # id(image) -> (image, frame id)
        self.trends = TrendRecorder(TrendSettings())  # the real recorder, in memory
        self.archive = _temporary_archive(self)  # the real archive, every part, in a temporary folder
        self.learner = learner = FakeLearner(
            self.alert_store,
            self.archive,
            self.models.register,
            lambda n: fake_model_bytes("fake", f"taught-{n}"),
            lambda: self.models.active_id,
            CALIBRATED_THRESHOLD,
        )
        self.teacher = TeachJobs(self.alert_store, learner)  # the real jobs, a fake learner
        self._review_metrics = CollectorRegistry()
        self.alert_store.register_metrics(self._review_metrics)
        self.commands: list[tuple[Command, str]] = []
        self.patches: list[tuple[dict[str, Any], str]] = []
        self.state: RuntimeState = "running"
        self.threshold_override: float | None = None
        self.settings: dict[str, dict[str, Any]] = {
            "inspection": {"threshold": None, "min_defect_area_px": 16, "max_boxes": 10},
            "reject": {"enabled": True, "gate_delay_ms": 0},
        }
        self.roi: dict[str, int] | None = None
        # The ROI preview: frames "scored", and NG frames out of them under a region (None: whole frame);
        # 1 whatever the region unless a test sets `preview_rejects` (see `zooming_roi_rejects`).
        self.preview_frames = 20
        self.preview_rejects: Callable[[dict[str, int] | None], int] = lambda roi: 1
        self.line_speed: float | None = None
        self.frames = 0
        self.defects = 0
        self.broker_connected = True
        self.rollout: FakeRolloutStation | None = None  # set one to turn fleet rollout on
        self._frame_jpeg: dict[bool, bytes] | None = None
        self._verdict: FrameVerdict | None = None
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- frame production --------------------------------------------------------------------
    @property
    def frame_seq(self) -> int:
        return self.frames

    @property
    def threshold(self) -> float:
        return self.threshold_override if self.threshold_override is not None else CALIBRATED_THRESHOLD

    def advance(self) -> dict[str, Any] | None:
        """Judge one more frame; return the alert if this frame was a defect."""
        with self._lock:
            if self.state != "running":
                return None
            frame_id = self.frames + 1
            is_defect = frame_id % self.defect_every == 0
            score = 0.9 if is_defect else 0.1
            is_defect = score > self.threshold
            image = np.full((self.size, self.size, 3), 70, np.uint8)
            cv2.rectangle(image, (20, 20), (self.size - 20, self.size - 20), (150, 150, 150), -1)
            cv2.putText(image, str(frame_id), (30, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2)
            box = {"x": 60, "y": 80, "width": 40, "height": 12, "score": score}
            overlay = image.copy()
            if is_defect:
                cv2.rectangle(overlay, (60, 80), (100, 92), (0, 0, 255), 2)
            self._frame_jpeg = {False: _jpeg(image), True: _jpeg(overlay)}
            if self.product_capture is not None:
                self.product_capture.offer(Frame(frame_id, time.time(), time.monotonic(), image))
            if self.shadow is not None and self.shadow.running:
                self._offer_shadow(self.shadow, frame_id, image, score, is_defect)
            self._verdict = FrameVerdict(
                seq=frame_id,
                frame_id=frame_id,
                captured_at=time.time(),
                verdict="NG" if is_defect else "OK",
                score=score,
                threshold=self.threshold,
            )
            self.frames = frame_id
            self.trends.record(time.time(), score, is_defect, 12.5)
            record = self._archive_record(frame_id, image, score, is_defect)
            if not is_defect:
                self.archive.store(record)
                return None
            self.defects += 1
            alert = {
                "schema_version": 1,
                "alert_id": str(uuid.uuid4()),
                "line_id": "line1",
                "station_id": "station1",
                "frame_id": frame_id,
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "score": score,
                "threshold": self.threshold,
                "is_defect": True,
                "defect_class": "linear",
                "boxes": [box],
                "image_size": [self.size, self.size],
                "model": {"name": "fake", "version": "1", "sha256": self.models.active_id},
                "latency_ms": 12.5,
            }
        self.alert_store.add(alert, _jpeg(cv2.resize(overlay, (48, 48))))
        self.archive.store(replace(record, alert_id=str(alert["alert_id"]), defect_class="linear"))
        return alert

    def _archive_record(
        self, frame_id: int, image: np.ndarray, score: float, is_defect: bool
    ) -> ArchiveRecord:
        """The part as the real runtime hands it to the archive: a hot map and a true mask on the box."""
        anomaly_map = np.full(image.shape[:2], 0.1 * score, np.float32)
        mask = np.zeros(image.shape[:2], np.uint8)
        if is_defect:
            anomaly_map[80:92, 60:100] = score
            mask[80:92, 60:100] = 255
        return ArchiveRecord(
            captured_at=time.time(),
            frame_id=frame_id,
            image=image,
            verdict="NG" if is_defect else "OK",
            score=score,
            threshold=self.threshold,
            anomaly_map=anomaly_map,
            boxes=(Box(60, 80, 40, 12, score),) if is_defect else (),
            mask=mask if is_defect else None,
        )

    def _offer_shadow(
        self, shadow: ShadowRun, frame_id: int, image: np.ndarray, score: float, is_defect: bool
    ) -> None:
        """The part and the line's verdict, as the real inspection thread hands them to the shadow."""
        self._shadow_frames[id(image)] = (image, frame_id)  # held, so the id stays this image's
        while len(self._shadow_frames) > 32:  # far more than the shadow's queue holds
            del self._shadow_frames[next(iter(self._shadow_frames))]
        anomaly_map = np.full(image.shape[:2], 0.1 * score, np.float32)
        if is_defect:
            anomaly_map[80:92, 60:100] = score
        active = InspectionResult(
            score=score,
            threshold=self.threshold,
            is_defect=is_defect,
            boxes=[Box(60, 80, 40, 12, score)] if is_defect else [],
            anomaly_map=anomaly_map,
            inference_ms=9.0,
        )
        shadow.offer(Frame(frame_id, time.time(), time.monotonic(), image), active)

    def _shadow_frame_id(self, image: np.ndarray) -> int:
        held = self._shadow_frames.get(id(image))
        if held is None or held[0] is not image:
            raise ValueError("not a frame this fake produced")
        return held[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._produce, name="fake-runtime", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.shadow is not None:
            self.shadow.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _produce(self) -> None:
        while not self._stop.wait(1.0 / self.fps):
            self.advance()

    # ---- read-only views ---------------------------------------------------------------------
    def latest_frame_jpeg(self, overlay: bool = True) -> bytes | None:
        with self._lock:
            return None if self._frame_jpeg is None else self._frame_jpeg[overlay]

    def latest_verdict(self) -> FrameVerdict | None:
        with self._lock:
            return self._verdict

    def status(self) -> RuntimeStatus:
        active = self.models.get(self.models.active_id)
        return RuntimeStatus(
            state=self.state,
            fps=self.fps if self.state == "running" else 0.0,
            frames=self.frames,
            defects=self.defects,
            dropped_frames=0,
            corrupt_frames=0,
            queue_depth=0,
            threshold=self.threshold,
            model=ModelStatus(
                id=active.id if active else None,
                name=active.name if active else "fake",
                version=active.version if active else "1",
                sha256=active.sha256 if active else "0" * 64,
                calibrated_threshold=CALIBRATED_THRESHOLD,
                input_size=self.size,
            ),
            broker_connected=self.broker_connected,
            camera_connected=True,
            spool_depth=0,
            latency=LatencyStatus(p50_ms=12.5, p99_ms=30.0, inference_p50_ms=9.0),
            roi=self.roi,
            recipe=self.recipes.active_name,
            source_size=[self.size, self.size],
            line_speed_request_ppm=self.line_speed,
            uptime_s=time.monotonic() - self._started,
        )

    def health(self) -> HealthReport:
        components = {
            "camera": ComponentHealth(ok=True),
            "broker": ComponentHealth(
                ok=self.broker_connected, detail="" if self.broker_connected else "spooling"
            ),
            "archive": self.archive.health(),
        }
        return HealthReport(status="ok" if self.broker_connected else "degraded", components=components)

    def config_view(self) -> dict[str, Any]:
        return {
            "line": {"line_id": "line1", "station_id": "station1"},
            "mqtt": {"url": "mqtt://127.0.0.1:1883"},  # like `public_view`: secrets left out, not masked
            **{section: dict(values) for section, values in self.settings.items()},
        }

    def trend_report(self, window_s: int) -> TrendReport:
        return self.trends.report(window_s, threshold=self.threshold)

    def rollout_view(self) -> RolloutView:
        active = self.models.get(self.models.active_id)
        version = active.version if active else None
        return build_rollout_view(self.rollout, "station1", self.models.active_id, version)

    def metrics_text(self) -> bytes:
        return (
            "# HELP edgeinspect_frames_total Frames judged.\n# TYPE edgeinspect_frames_total counter\n"
            f"edgeinspect_frames_total {self.frames}\n"
        ).encode() + generate_latest(self._review_metrics)

    # ---- changes -----------------------------------------------------------------------------
    def execute(self, command: Command, actor: str = "system") -> CommandResult:
        self.commands.append((command, actor))
        name = command.command
        old: Any = None
        new: Any = None
        if isinstance(command, StartLine | StopLine | PauseInspection | ResumeInspection):
            states: dict[str, RuntimeState] = {
                "start": "running",
                "stop": "stopped",
                "pause": "paused",
                "resume": "running",
            }
            wanted = states[name]
            if name == "resume" and self.state == "stopped":
                return self._refuse(command, "line is stopped; start it first")
            old, new, self.state = self.state, wanted, wanted
        elif isinstance(command, SetThreshold):
            old, new = self.threshold, command.threshold
            self.threshold_override = command.threshold
        elif isinstance(command, ResetThreshold):
            old, new = self.threshold, CALIBRATED_THRESHOLD
            self.threshold_override = None
        elif isinstance(command, SetRegionOfInterest):
            old, new = self.roi, command.model_dump(include={"x", "y", "width", "height"})
            if not command.force:
                preview = self.preview_roi(RegionOfInterest(**new))
                if preview.verdict == "warn":
                    warning = RoiWarning(preview)
                    return CommandResult(
                        ok=False,
                        command=name,
                        request_id=command.request_id,
                        message=str(warning),
                        details=preview.model_dump(mode="json"),
                    )
            self.roi = new
        elif isinstance(command, ClearRegionOfInterest):
            old, new, self.roi = self.roi, None, None
        elif isinstance(command, RequestLineSpeed):
            old, new = self.line_speed, command.parts_per_minute
            self.line_speed = new
        elif isinstance(command, ActivateModel):
            if self.models.get(command.model_id) is None:
                return self._refuse(command, f"unknown model id {command.model_id!r}")
            old, new = self.models.active_id, command.model_id
            self.models.active_id = command.model_id
            self.models.history.append(command.model_id)
        elif isinstance(command, RollbackModel):
            if len(self.models.history) < 2:
                return self._refuse(command, "no previous model to roll back to")
            old = self.models.history.pop()
            new = self.models.active_id = self.models.history[-1]
        elif isinstance(command, CaptureProduct | CancelCapture | StrikeCapture):
            try:
                old, new = self._capture_command(command)
            except ValueError as exc:
                return self._refuse(command, str(exc))
        elif isinstance(command, BuildProduct):
            try:
                old, new = self._build_command(command)
            except ValueError as exc:
                return self._refuse(command, str(exc))
        elif isinstance(command, StartShadow | StopShadow):
            try:
                old, new = self._shadow_command(command)
            except ValueError as exc:
                return self._refuse(command, str(exc))
        elif isinstance(command, SaveRecipe | DeleteRecipe | PrepareRecipe | SelectRecipe):
            try:
                old, new = self._recipe_command(command)
            except (RecipeError, KeyError) as exc:
                return self._refuse(command, str(exc))
        else:
            return self._refuse(command, f"{name} is not supported here")
        return CommandResult(
            ok=True, command=name, request_id=command.request_id, old_value=old, new_value=new
        )

    def zooming_roi_rejects(self, roi: dict[str, int] | None) -> int:
        """For `preview_rejects`: a region under half the frame's area zooms the model into calling almost
        every part NG (what a model built on whole frames does); a larger one or none: 1 NG frame."""
        if roi is None or roi["width"] * roi["height"] >= self.size * self.size / 2:
            return 1
        return self.preview_frames - 2

    def preview_roi(self, roi: RegionOfInterest | None) -> RoiPreview:
        """The real verdict rule (`device.station.roi_preview.judge_verdict`) on `preview_rejects`'
        figures."""
        proposed = roi.model_dump() if roi else None
        frames = self.preview_frames
        now, then = self.preview_rejects(self.roi), self.preview_rejects(proposed)
        verdict, reasons = judge_verdict(frames, now, then)
        return RoiPreview(
            roi=proposed,
            current_roi=self.roi,
            frames=frames,
            model_id=self.models.active_id,
            threshold=self.threshold,
            rejects_now=now,
            rejects_proposed=then,
            reject_share_now=now / frames if frames else 0.0,
            reject_share_proposed=then / frames if frames else 0.0,
            verdict=verdict,
            reasons=reasons,
            rebuild_available=REBUILD_ON_STATION,
            rebuild_hint=REBUILD_HINT,
        )

    def _recipe_command(
        self, command: SaveRecipe | DeleteRecipe | PrepareRecipe | SelectRecipe
    ) -> tuple[Any, Any]:
        """The real `RecipeStore` behind the commands; selecting applies the recipe's ROI and threshold."""
        if isinstance(command, SaveRecipe):
            exists = command.recipe.name in {r.name for r in self.recipes.list()}
            (self.recipes.update if exists else self.recipes.create)(command.recipe)
            return None, command.recipe.name
        if isinstance(command, DeleteRecipe):
            self.recipes.delete(command.name)
            return command.name, None
        recipe = self.recipes.get(command.name)
        self.prepared.add(recipe.model_id)
        if isinstance(command, PrepareRecipe):
            return None, recipe.name
        old = self.recipes.active_name
        self.recipes.select(recipe.name)
        self.roi = recipe.roi.model_dump() if recipe.roi else None
        self.threshold_override = recipe.threshold
        return old, recipe.name

    def _capture_command(self, command: CaptureProduct | CancelCapture | StrikeCapture) -> tuple[Any, Any]:
        job = self.product_capture
        if isinstance(command, CaptureProduct):
            if job is not None and job.running:
                raise ValueError(f"a capture for {job.product!r} is running; cancel it first")
            self.product_capture = ProductCapture(
                self.datasets, command.product, command.count, command.every_n
            )
            return None, command.product
        if job is None:
            raise ValueError("no capture")
        if isinstance(command, CancelCapture):
            job.cancel()
            return job.product, None
        job.strike(command.image)
        return command.image, None

    def capture_status(self) -> CaptureStatus | None:
        return self.product_capture.status() if self.product_capture is not None else None

    def capture_image(self, image: str) -> Path:
        if self.product_capture is None:
            raise KeyError("no capture")
        return self.product_capture.image_path(image)

    def _build_command(self, command: BuildProduct) -> tuple[Any, Any]:
        """A build that is done at once: the captured images' count checked as `ProductBuild` does, a
        fake model registered (the real build is tests/unit/device/test_product_build.py)."""
        folder = self.datasets / command.product / "train" / "good"
        images = sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []
        if len(images) < MIN_IMAGES:
            raise ValueError(f"{folder} holds {len(images)} good images; a build needs at least {MIN_IMAGES}")
        data = fake_model_bytes(f"padim-{command.product}", "1")
        model_id = self.models.register(data, f"{command.product}.onnx", hashlib.sha256(data).hexdigest()).id
        self.product_build = BuildStatus(
            product=command.product,
            state="done",
            stage="done",
            model_id=model_id,
            threshold=1.0,
            fit_images=len(images) - 2,
            held_back_scores=[0.5, 0.7],
            false_reject_rate=0.0,
            worst=[HeldBackImage(image=images[0], score=0.7)],
        )
        return None, command.product

    def build_status(self) -> BuildStatus | None:
        return self.product_build

    def _shadow_command(self, command: StartShadow | StopShadow) -> tuple[Any, Any]:
        """The real `ShadowRun` behind the commands (refusals as `EdgeRuntime._cmd_*_shadow` words them),
        judging with `FakeCandidate` instead of an ONNX model."""
        current = self.shadow
        if isinstance(command, StopShadow):
            if current is None or not current.running:
                raise ValueError("no model is in the shadow")
            current.stop()
            return current.model_id, None
        if self.models.get(command.model_id) is None:
            raise ValueError(f"unknown model id {command.model_id!r}")
        if command.model_id == self.models.active_id:
            raise ValueError(f"model {command.model_id} is the active one; shadow another model")
        if current is not None and current.running:
            raise ValueError(f"model {current.model_id} is in the shadow; stop it first")
        candidate = FakeCandidate(self._shadow_frame_id)
        self.shadow = ShadowRun(command.model_id, lambda: cast(Inspector, candidate), command.parts)
        return None, command.model_id

    def shadow_status(self) -> ShadowStatus | None:
        return self.shadow.status() if self.shadow is not None else None

    def shadow_thumbnail(self, frame_id: int) -> bytes:
        if self.shadow is None:
            raise KeyError(frame_id)
        return self.shadow.thumbnail(frame_id)

    def recipes_view(self) -> RecipesView:
        return RecipesView(
            active=self.recipes.active_name, recipes=self.recipes.list(), loaded_models=sorted(self.prepared)
        )

    @staticmethod
    def _refuse(command: Command, reason: str) -> CommandResult:
        """A refusal as the real runtime answers it: ok=False, the reason, the request id echoed."""
        return CommandResult(ok=False, command=command.command, request_id=command.request_id, message=reason)

    def patch_config(self, patch: dict[str, Any], actor: str = "system") -> list[dict[str, Any]]:
        self.patches.append((patch, actor))
        for section, values in patch.items():
            if not isinstance(values, dict):
                raise ValueError(f"{section}: expected a mapping of fields")
            for field in values:
                if field not in LIVE_FIELDS.get(section, set()):
                    raise ValueError(f"{section}.{field}: not changeable while the line runs")
        changes = []
        for section, values in patch.items():
            for field, value in values.items():
                old = (
                    self.threshold
                    if (section, field) == ("inspection", "threshold")
                    else self.settings[section][field]
                )
                if (section, field) == ("inspection", "threshold"):
                    self.threshold_override = value
                self.settings[section][field] = value
                changes.append({"field": f"{section}.{field}", "old": old, "new": value})
        return changes


class FakeCandidate:
    """Stands in for the candidate's `Inspector` in the shadow: every `SHADOW_NG_EVERY`th frame is NG (a hot
    box at the top left), the rest OK, at `SHADOW_THRESHOLD`. `frame_of` gives an image's frame number."""

    def __init__(self, frame_of: Callable[[np.ndarray], int]) -> None:
        self.frame_of = frame_of
        self.info = SimpleNamespace(threshold=SHADOW_THRESHOLD)

    def inspect(self, image: np.ndarray, **_: Any) -> InspectionResult:
        is_defect = self.frame_of(image) % SHADOW_NG_EVERY == 0
        score = 0.8 if is_defect else 0.2
        anomaly_map = np.full(image.shape[:2], 0.1, np.float32)
        if is_defect:
            anomaly_map[24:44, 24:64] = score
        return InspectionResult(
            score=score,
            threshold=SHADOW_THRESHOLD,
            is_defect=is_defect,
            boxes=[Box(24, 24, 40, 20, score)] if is_defect else [],
            anomaly_map=anomaly_map,
            inference_ms=11.0,
        )


def _temporary_archive(owner: object) -> ImageArchive:
    """An ImageArchive (OK parts too) in a temporary folder that goes when `owner` is collected."""
    folder = tempfile.mkdtemp(prefix="edgeinspect-fake-archive-")
    archive = ImageArchive(ArchiveSettings(path=folder, ok_sample_rate=1.0), rng=random.Random(0))
    weakref.finalize(owner, _discard_archive, archive, folder)
    return archive


def _discard_archive(archive: ImageArchive, folder: str) -> None:
    archive.close()
    shutil.rmtree(folder, ignore_errors=True)


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return encoded.tobytes()
