"""EdgeRuntime: owns the line's threads and is the one door for changes (`execute`).

The API, the panel and the MQTT command topic read `status()`/`health()` and send typed commands;
nothing outside this class touches a thread or a queue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel

from device.config import (
    InspectionSettings,
    RegionOfInterest,
    RejectSettings,
    RuntimeSettings,
    escalation_problem,
    public_view,
)
from device.station import camera_control
from device.station import commands as cmd
from device.station.alerts import AlertStore, build_alert, iso_utc
from device.station.archive import ImageArchive
from device.station.camera import open_source
from device.station.camera.base import Frame, FrameSource
from device.station.capture import CaptureWorker, FrameQueue, RawFrameRing
from device.station.data_dir_lock import DataDirLock
from device.station.escalation.decision import Decision
from device.station.inspection_worker import DecisionKnobs, InspectionWorker
from device.station.metrics import EscalationMetrics, RuntimeMetrics
from device.station.model_registry import ModelRegistry
from device.station.mqtt_link import MqttLink
from device.station.outbox import Outbox
from device.station.part_result import PartResult
from device.station.product_build import BuildStatus, ProductBuild
from device.station.product_capture import CaptureStatus, ProductCapture
from device.station.recipes import PreparedModels, Recipe, RecipeStore, RecipesView
from device.station.reject import RejectScheduler, encoder_position
from device.station.roi_preview import PREVIEW_FRAMES, RoiPreview, RoiWarning, preview_roi
from device.station.rollout.view import RolloutView, build_rollout_view
from device.station.shadow import ShadowRun, ShadowStatus
from device.station.status import (
    ComponentHealth,
    FrameVerdict,
    HealthReport,
    HealthState,
    LatencyStatus,
    ModelStatus,
    RuntimeState,
    RuntimeStatus,
)
from device.station.teaching import ArchiveLearner, TeachJobs
from device.station.topics import Topics
from device.station.trends import TrendRecorder, TrendReport
from vision.export import sha256_file
from vision.inspector import Inspector, ModelFileError
from vision.overlay import encode_overlay_jpeg, overlay_thumbnail, render_overlay
from vision.types import InspectionResult

if TYPE_CHECKING:
    from device.station.escalation.client import EscalationClient
    from device.station.opcua import OpcUaServer
    from device.station.rollout.station import RolloutStation
    from device.station.sparkplug import SparkplugNode

log = logging.getLogger(__name__)

# Fields an operator may change while the line runs (everything else needs a restart).
LIVE_FIELDS = {
    "inspection.threshold",
    "inspection.min_defect_area_px",
    "inspection.max_boxes",
    "reject.enabled",
    "reject.gate_delay_ms",
}
STATUS_PERIOD_S = 5.0
# Models kept loaded (the active one and recipes prepared for a switch), least recently used evicted first.
LOADED_MODELS = 4

# What a command changed: (old value, new value, message for the operator).
Change = tuple[Any, Any, str]
# A handler of one command type; the table holds handlers of different command types, hence `Any`.
CommandHandler = Callable[[Any], Change]
CommandListener = Callable[[cmd.Command, str, cmd.CommandResult], None]
CommandT = TypeVar("CommandT", bound=BaseModel)


def _filed(kind: type[CommandT], handler: Callable[[CommandT], Change]) -> tuple[str, CommandHandler]:
    """File `handler` under `kind`'s command name, so mypy checks that each handler takes the command
    it is filed under (which the table's `Any` cannot)."""
    name: str = kind.model_fields["command"].default
    return name, handler


class EdgeRuntime:
    def __init__(self, settings: RuntimeSettings, source: FrameSource | None = None) -> None:
        self.settings = settings.model_copy(deep=True)
        self._source = source
        data_dir = Path(self.settings.data_dir)
        self._data_dir_lock = DataDirLock(data_dir)
        self._data_dir_lock.acquire()  # before any state file is opened: one runtime per data directory
        try:
            self._init_parts(data_dir)
        except BaseException:
            self._data_dir_lock.release()
            raise

    def _init_parts(self, data_dir: Path) -> None:
        self.topics = Topics(
            self.settings.mqtt.topic_prefix, self.settings.line.line_id, self.settings.line.station_id
        )
        self.metrics = RuntimeMetrics()
        self.outbox = Outbox(self.settings.outbox.path, self.settings.outbox.max_alerts)
        self.alert_store = AlertStore(self.settings.alerts.path, self.settings.alerts.keep_alerts)
        self.models = ModelRegistry(data_dir / "models" / "registry")
        self.recipes = RecipeStore(data_dir / "recipes.json", self._model_known)
        self._loaded_models: PreparedModels[Inspector] = PreparedModels(self._load_inspector, LOADED_MODELS)
        self.trends = TrendRecorder(self.settings.trends, data_dir / "trends.sqlite3")
        self.archive = ImageArchive(self.settings.archive, registry=self.metrics.registry)
        self.alert_store.register_metrics(self.metrics.registry)
        learner = ArchiveLearner(
            self.alert_store,
            self.archive,
            self.models,
            lambda: self._active_model_id,
            self.settings.teach,
            self.settings.model.target_false_reject_rate,
        )
        self.teacher = TeachJobs(
            self.alert_store,
            learner,
            self.settings.teach.max_examples,
            self.settings.teach.max_defects_taught,
        )
        self.queue = FrameQueue(self.settings.camera.queue_size)
        self._raw_frames = RawFrameRing(PREVIEW_FRAMES)  # for the ROI preview; kept across stop/start
        self._init_state()
        self.reject = RejectScheduler(self.settings.reject, self._emit_reject)
        self.escalation: EscalationClient | None = None  # plant verifiers (`escalation.enabled`)
        if self.settings.escalation.enabled:
            from device.station.escalation.client import EscalationClient

            self.escalation = EscalationClient(
                self.settings.mqtt,
                self.settings.escalation,
                self.topics,
                EscalationMetrics(self.metrics.registry),
            )
        self.worker = InspectionWorker(
            self.queue,
            self._knobs_for,
            self._on_defect,
            self.metrics,
            on_judged=self._on_judged,
            decide=self._decide if self.escalation is not None else None,
            on_frame=self._offer_to_capture,
        )
        self.link = MqttLink(
            self.settings.mqtt, self.topics, self.outbox, self._on_mqtt_command, self._status_payload
        )
        self._sparkplug: SparkplugNode | None = None
        self._opcua: OpcUaServer | None = None
        self.rollout: RolloutStation | None = None  # fleet model rollout (`rollout.enabled`)
        if self.settings.rollout.enabled:
            from device.station.rollout.station import RolloutStation

            station_id = self.settings.rollout.station_id or self.settings.line.station_id
            self.rollout = RolloutStation(
                self.settings.rollout, self.settings.mqtt, station_id, self, data_dir / "rollout"
            )
        self._housekeeping = threading.Thread(target=self._housekeep, name="housekeeping", daemon=True)
        self._command_listeners: list[CommandListener] = []
        self._handlers = self._command_table()

    def _init_state(self) -> None:
        """What the runtime tracks while it runs (the line's state, the active model and recipe, the
        live knobs, jobs in progress), guarded by `_lock`."""
        self._lock = threading.RLock()
        self._state: RuntimeState = "starting"
        self._inspector: Inspector | None = None
        self._active_model_id: str | None = None
        self._active_recipe: str | None = None
        self._threshold_override = self.settings.inspection.threshold
        self._line_speed_ppm: float | None = None
        self._started_mono = time.monotonic()
        self._stop_event = threading.Event()
        self._capture: CaptureWorker | None = None
        self._next_frame_id = 0
        self._knobs = DecisionKnobs(0.0, 0, 1, False)
        self._retired_knobs: DecisionKnobs | None = None  # the previous recipe's, for its frames in flight
        self._product_capture: ProductCapture | None = None  # learning a new product from the camera
        self._product_build: ProductBuild | None = None  # building a captured product's model
        self._shadow: ShadowRun | None = None  # a candidate model judging beside the active one
        self._jpeg_cache: tuple[int, bool, bytes] | None = None

    def _command_table(self) -> dict[str, CommandHandler]:
        """One handler per command: `execute` dispatches on the command's name through this table."""
        return dict(
            [
                _filed(cmd.StartLine, self._cmd_start),
                _filed(cmd.ResumeInspection, self._cmd_resume),
                _filed(cmd.StopLine, self._cmd_stop),
                _filed(cmd.PauseInspection, self._cmd_pause),
                _filed(cmd.SetThreshold, self._cmd_set_threshold),
                _filed(cmd.ResetThreshold, self._cmd_reset_threshold),
                _filed(cmd.SetRegionOfInterest, self._cmd_set_roi),
                _filed(cmd.ClearRegionOfInterest, self._cmd_clear_roi),
                _filed(cmd.RequestLineSpeed, self._cmd_line_speed),
                _filed(cmd.AcknowledgeReject, self._cmd_reject_ack),
                _filed(cmd.ActivateModel, self._cmd_activate_model),
                _filed(cmd.RollbackModel, self._cmd_rollback_model),
                _filed(cmd.TriggerCamera, self._cmd_camera_trigger),
                _filed(cmd.SetCameraSettings, self._cmd_camera_settings),
                _filed(cmd.SaveRecipe, self._cmd_save_recipe),
                _filed(cmd.DeleteRecipe, self._cmd_delete_recipe),
                _filed(cmd.PrepareRecipe, self._cmd_prepare_recipe),
                _filed(cmd.SelectRecipe, self._cmd_select_recipe),
                _filed(cmd.CaptureProduct, self._cmd_capture_product),
                _filed(cmd.CancelCapture, self._cmd_cancel_capture),
                _filed(cmd.StrikeCapture, self._cmd_strike_capture),
                _filed(cmd.BuildProduct, self._cmd_build_product),
                _filed(cmd.StartShadow, self._cmd_start_shadow),
                _filed(cmd.StopShadow, self._cmd_stop_shadow),
            ]
        )

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._load_initial_model()
        self.link.start()
        if self.escalation is not None:
            self.escalation.start()
        if self.settings.mqtt.sparkplug:
            from device.station.sparkplug import SparkplugNode

            self._sparkplug = SparkplugNode(self.settings.mqtt, self.settings.line, self._sparkplug_metrics)
            self._sparkplug.start()
        if self.settings.opcua.enabled:
            from device.station.opcua import OpcUaServer

            self._opcua = OpcUaServer(
                self.settings.opcua,
                self.settings.line,
                self.status,
                self.execute,
                data_dir=self.settings.data_dir,
            )
            self._opcua.start()
        self.reject.start()
        self.archive.start()
        self.worker.start()
        self.trends.start()
        self._state = "stopped"
        if self.settings.inspection.enabled:
            self._start_line()
        self._housekeeping.start()
        if self.rollout is not None:  # last: a release may be installed at once and checked on live frames
            self.rollout.start()

    def stop(self) -> None:
        self._stop_event.set()
        if self._product_capture is not None:
            self._product_capture.cancel()
        if self._product_build is not None:
            self._product_build.cancel()
        if self._shadow is not None:
            self._shadow.stop()
        if self.rollout is not None:
            self.rollout.stop()
        self._stop_line()
        self.worker.stop()
        if self.escalation is not None:  # after the worker: nobody waits for an answer any more
            self.escalation.stop()
        self.archive.stop()  # after the worker: nothing is offered any more
        self.reject.stop()
        if self._sparkplug is not None:
            self._sparkplug.stop()
        if self._opcua is not None:
            self._opcua.stop()
        self.link.stop()
        self.alert_store.close()
        self.trends.close()
        self.outbox.close()
        self._data_dir_lock.release()

    def __enter__(self) -> EdgeRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_line(self) -> None:
        with self._lock:
            if self._capture is None:
                if self._source is None:  # kept across stop/start: the simulator's sequence continues
                    self._source = open_source(self.settings.camera)
                self._capture = CaptureWorker(
                    self._source,
                    self.settings.camera,
                    self.queue,
                    first_frame_id=self._next_frame_id,
                    raw_frames=self._raw_frames,
                )
                self._capture.set_recipe(self._active_recipe, self.settings.camera.roi)
                self._capture.start()
            self._state = "running"
            self._refresh_knobs()

    def _stop_line(self) -> None:
        with self._lock:
            capture, self._capture = self._capture, None
            self._state = "stopped"
            self._refresh_knobs()
        if capture is not None:
            capture.stop()
            # Frame ids never repeat within a run, so consumers can key on them across a stop/start.
            if capture.latest_frame is not None:
                self._next_frame_id = max(self._next_frame_id, capture.latest_frame.frame_id + 1)
        self.queue.clear()

    # ---- model ---------------------------------------------------------------------------------
    def _load_initial_model(self) -> None:
        configured = Path(self.settings.model.path)
        model_id: str | None = None
        if configured.exists():
            digest = sha256_file(configured)
            known = {e.sha256: e.id for e in self.models.list()}
            if digest not in known:
                model_id = self.models.register_file(configured).id
                self.models.mark_active(model_id)
        model_id = self.models.active_id or model_id
        recipe = self.recipes.active()
        if recipe is not None:  # the product the line ran before the restart
            self._apply_recipe(recipe)
            return
        if model_id is None:
            raise ModelFileError(
                f"model file not found: {configured} (set model.path or enable model.auto_build)"
            )
        self._activate(model_id)

    def _model_known(self, model_id: str) -> bool:
        try:
            self.models.get(model_id)
        except KeyError:
            return False
        return True

    def _load_inspector(self, model_id: str) -> Inspector:
        entry = self.models.get(model_id)
        return Inspector(self.models.path_of(model_id), threads=2, expected_sha256=entry.sha256)

    def _activate(self, model_id: str, *, rollback: bool = False) -> Inspector:
        """Load `model_id` (a broken file raises and leaves the current model running), then swap it in.

        `rollback` pops the current model off the registry's history instead of pushing `model_id`, so a
        restart loads the model rolled back to, not the one rolled back from."""
        inspector = self._loaded_models.get(model_id, pinned=self._active_model_id)
        with self._lock:
            if rollback:
                self.models.mark_rolled_back()
            else:
                self.models.mark_active(model_id)
            self._inspector = inspector  # the worker picks it up on its next frame: no frame is dropped
            self._active_model_id = model_id
            self._refresh_knobs()
        return inspector

    def _swap_model(self, model_id: str, *, rollback: bool) -> Change:
        """Activate or roll back; an operator's threshold was chosen for the old model's scores, so it is
        dropped and the new model's calibrated threshold applies."""
        old_id = self._active_model_id
        dropped = self._threshold_override
        self._activate(model_id, rollback=rollback)
        with self._lock:
            self._threshold_override = None
            self.settings.inspection.threshold = None
            self._refresh_knobs()
        message = "rolled back" if rollback else "model activated"
        message += f"; threshold is now the model's calibrated {self.threshold:.6g}"
        if dropped is not None:
            message += f" (the override {dropped:.6g} was set for the previous model and is dropped)"
        return old_id, model_id, message + self._remember_in_recipe(model_id=model_id, threshold=None)

    @property
    def threshold(self) -> float:
        if self._threshold_override is not None:
            return self._threshold_override
        return self._inspector.info.threshold if self._inspector else 0.0

    def _refresh_knobs(self) -> None:
        self._knobs = DecisionKnobs(
            threshold=self.threshold,
            min_area=self.settings.inspection.min_defect_area_px,
            max_boxes=self.settings.inspection.max_boxes,
            judging=self._state == "running" and self._inspector is not None,
            inspector=self._inspector,
            recipe=self._active_recipe,
        )
        self.metrics.set_gauge("threshold", self._knobs.threshold)

    def _knobs_for(self, frame: Frame) -> DecisionKnobs:
        """The knobs of the recipe `frame` was captured under: the current ones, or for a frame captured
        just before a switch the previous recipe's (judging on or off as the line is now)."""
        knobs, retired = self._knobs, self._retired_knobs
        if frame.recipe == knobs.recipe or retired is None or retired.recipe != frame.recipe:
            return knobs
        return dataclasses.replace(retired, judging=knobs.judging)

    # ---- the data path -------------------------------------------------------------------------
    def _decide(self, frame: Frame, result: InspectionResult) -> tuple[InspectionResult, Decision]:
        """Escalate an uncertain part to a plant verifier; held until the answer, the deadline, or the reject
        gate's due time minus the margin, whichever comes first."""
        inspector = self._knobs_for(frame).inspector
        assert self.escalation is not None and inspector is not None
        reject = self.settings.reject
        gate_due = frame.captured_mono + reject.gate_delay_ms / 1000.0 if reject.enabled else None
        return self.escalation.decide(frame, result, inspector.info.version, gate_due)

    def _on_defect(self, frame: Frame, result: InspectionResult, decision: Decision) -> None:
        inspector = self._knobs_for(frame).inspector
        assert inspector is not None
        height, width = frame.image.shape[:2]
        alert = build_alert(
            frame_id=frame.frame_id,
            captured_at=frame.captured_at,
            result=result,
            model=inspector.info,
            recipe=frame.recipe,
            line_id=self.settings.line.line_id,
            station_id=self.settings.line.station_id,
            frame_size=(width, height),
            latency_ms=(time.monotonic() - frame.captured_mono) * 1000.0,
            decision=decision.alert_fields(),
        )
        self.outbox.put(alert["alert_id"], self.topics.alert, json.dumps(alert).encode(), qos=1)
        self.link.wake()
        self.reject.schedule(frame.frame_id, alert["alert_id"], frame.captured_mono)
        self.alert_store.add(alert, self._thumbnail(frame.image, result))
        self.archive.submit(frame, result, alert_id=alert["alert_id"], defect_class=alert["defect_class"])

    def _on_judged(self, frame: Frame, result: InspectionResult, decision: Decision) -> None:
        """Every judged part, OK or NG, to the trends and the optional per-part outputs (MQTT, OPC UA)."""
        self.trends.record(frame.captured_at, result.score, result.is_defect, _since_ms(frame.captured_mono))
        shadow = self._shadow
        if shadow is not None:
            shadow.offer(frame, result)
        if not result.is_defect:  # NG parts were offered with their alert id in `_on_defect`
            self.archive.submit(frame, result)
        if self._opcua is None and not self.settings.mqtt.publish_results:
            return
        part = PartResult.from_inspection(frame, result, decision.decided_by)
        if self._opcua is not None:
            self._opcua.publish_result(part)
        if self.settings.mqtt.publish_results:
            line = self.settings.line
            position = encoder_position(frame.frame_id, self.settings.reject)
            payload = part.to_payload(line.line_id, line.station_id, position)
            self.link.publish_live(self.topics.result, json.dumps(payload).encode())

    def _thumbnail(self, image: np.ndarray, result: InspectionResult) -> bytes | None:
        return overlay_thumbnail(image, result, self.settings.alerts.thumbnail_size)

    def _emit_reject(self, command: dict[str, Any]) -> None:
        command["ts"] = iso_utc(time.time())
        message_id = f"reject-{command['alert_id']}"
        self.outbox.put(message_id, self.topics.reject, json.dumps(command).encode(), qos=1)
        self.link.wake()

    # ---- the one door for changes --------------------------------------------------------------
    def add_command_listener(self, listener: CommandListener) -> None:
        """Called with (command, actor, result) after every command, applied or refused, from any door
        (API, MQTT, OPC UA, rollout): what the audit log hangs on."""
        self._command_listeners.append(listener)

    def execute(self, command: cmd.Command, actor: str = "system") -> cmd.CommandResult:
        name = command.command
        try:
            old, new, message = self._apply(command)
        except (ValueError, KeyError, ModelFileError) as exc:
            log.warning("command %s by %s refused: %s", name, actor, exc)
            message = str(exc)
            details = exc.preview.model_dump(mode="json") if isinstance(exc, RoiWarning) else None
            result = cmd.CommandResult(
                ok=False, command=name, request_id=command.request_id, message=message, details=details
            )
        else:
            log.info("command %s by %s: %s -> %s", name, actor, old, new)
            self.link.publish_status()
            result = cmd.CommandResult(
                ok=True,
                command=name,
                request_id=command.request_id,
                message=message,
                old_value=old,
                new_value=new,
            )
        for listener in list(self._command_listeners):
            try:
                listener(command, actor, result)
            except Exception:  # a broken listener must not undo or hide a change already made
                log.exception("command listener failed for %s by %s", name, actor)
        return result

    def _apply(self, command: cmd.Command) -> Change:
        handler = self._handlers.get(command.command)
        if handler is None:
            raise ValueError(f"unsupported command {command.command!r}")
        return handler(command)

    # One handler per command; each returns (old value, new value, message) or raises ValueError.
    def _cmd_start(self, _: cmd.StartLine) -> Change:
        old = self._state
        self._start_line()
        return old, self._state, "inspection running"

    def _cmd_resume(self, _: cmd.ResumeInspection) -> Change:
        if self._state == "stopped":
            raise ValueError("line is stopped; start it instead of resuming")
        old = self._state
        self._start_line()
        return old, self._state, "inspection running"

    def _cmd_stop(self, _: cmd.StopLine) -> Change:
        old = self._state
        self._stop_line()
        return old, self._state, "line stopped"

    def _cmd_pause(self, _: cmd.PauseInspection) -> Change:
        with self._lock:
            if self._state != "running":
                raise ValueError(f"cannot pause while {self._state}")
            self._state = "paused"
            self._refresh_knobs()
        return "running", "paused", "inspection paused; frames still shown"

    def _set_threshold_override(self, value: float | None) -> Change:
        old = self.threshold
        with self._lock:
            self._threshold_override = value
            self.settings.inspection.threshold = value
            self._refresh_knobs()
        return old, self.threshold, "threshold changed" + self._remember_in_recipe(threshold=value)

    def _cmd_set_threshold(self, command: cmd.SetThreshold) -> Change:
        return self._set_threshold_override(command.threshold)

    def _cmd_reset_threshold(self, _: cmd.ResetThreshold) -> Change:
        return self._set_threshold_override(None)

    def _set_roi(self, roi: RegionOfInterest | None) -> Change:
        with self._lock:
            old = self.settings.camera.roi
            self.settings.camera.roi = roi
            if self._capture is not None:
                self._capture.set_roi(roi)
        return (
            old.model_dump() if old else None,
            roi.model_dump() if roi else None,
            "region of interest changed" + self._remember_in_recipe(roi=roi),
        )

    def _cmd_set_roi(self, command: cmd.SetRegionOfInterest) -> Change:
        """Refused (RoiWarning, with the preview) when the preview warns, unless `force`."""
        roi = RegionOfInterest(x=command.x, y=command.y, width=command.width, height=command.height)
        note = ""
        if not command.force:
            preview = self.preview_roi(roi)
            if preview.verdict == "warn":
                raise RoiWarning(preview)
            if preview.verdict == "unknown":
                note = "; not previewed: no recent camera frames"
        old, new, message = self._set_roi(roi)
        if command.force:
            note = "; applied with force"
        return old, new, message + note

    def preview_roi(self, roi: RegionOfInterest | None) -> RoiPreview:
        """What `roi` would do to judging: the kept raw frames scored under the current ROI and under
        `roi` with the active model and the live knobs (`device.station.roi_preview`). ValueError with no
        model."""
        with self._lock:
            inspector, knobs, current = self._inspector, self._knobs, self.settings.camera.roi
            model_id = self._active_model_id
        if inspector is None:
            raise ValueError("no model loaded")

        def judge(image: np.ndarray) -> InspectionResult:
            return inspector.inspect(
                image, threshold=knobs.threshold, min_area=knobs.min_area, max_boxes=knobs.max_boxes
            )

        size = (self.settings.camera.width, self.settings.camera.height)
        frames = self._raw_frames.snapshot()
        return preview_roi(frames, current, roi, judge, size, threshold=knobs.threshold, model_id=model_id)

    def _cmd_clear_roi(self, _: cmd.ClearRegionOfInterest) -> Change:
        return self._set_roi(None)

    def _cmd_line_speed(self, command: cmd.RequestLineSpeed) -> Change:
        old = self._line_speed_ppm
        self._line_speed_ppm = command.parts_per_minute
        payload = {
            "parts_per_minute": command.parts_per_minute,
            "request_id": command.request_id,
            "ts": iso_utc(time.time()),
            "station_id": self.settings.line.station_id,
        }
        message_id = f"speed-{time.time_ns()}"
        self.outbox.put(message_id, self.topics.line_speed, json.dumps(payload).encode(), qos=1)
        self.link.wake()
        return old, command.parts_per_minute, "line-speed request forwarded to the PLC"

    def _cmd_reject_ack(self, command: cmd.AcknowledgeReject) -> Change:
        if not self.reject.acknowledge(command.frame_id):
            raise ValueError(f"no reject pending for frame {command.frame_id}")
        return None, command.frame_id, "reject acknowledged"

    def _cmd_activate_model(self, command: cmd.ActivateModel) -> Change:
        return self._swap_model(command.model_id, rollback=False)

    def _cmd_rollback_model(self, _: cmd.RollbackModel) -> Change:
        previous = self.models.previous_id()
        if previous is None:
            raise ValueError("no previous model to roll back to")
        return self._swap_model(previous, rollback=True)

    def _cmd_camera_trigger(self, _: cmd.TriggerCamera) -> Change:
        capture = self._capture
        return camera_control.trigger(capture.source if capture else None)

    def _cmd_camera_settings(self, command: cmd.SetCameraSettings) -> Change:
        capture = self._capture
        source = capture.source if capture else None
        return camera_control.apply_settings(source, self.settings.camera, command)

    # ---- recipes (products) ---------------------------------------------------------------------
    def _cmd_save_recipe(self, command: cmd.SaveRecipe) -> Change:
        recipe = command.recipe
        try:
            old: Recipe | None = self.recipes.get(recipe.name)
        except KeyError:
            old = None
        if old is None:
            self.recipes.create(recipe)
            message = f"recipe {recipe.name!r} created"
        else:
            self.recipes.update(recipe)
            message = f"recipe {recipe.name!r} replaced"
        if recipe.name == self._active_recipe:
            message += "; it is active and applies from the next frame" + self._apply_recipe(recipe)
        return (old.model_dump(mode="json") if old else None), recipe.model_dump(mode="json"), message

    def _cmd_delete_recipe(self, command: cmd.DeleteRecipe) -> Change:
        old = self.recipes.get(command.name)
        self.recipes.delete(command.name)
        return old.model_dump(mode="json"), None, f"recipe {command.name!r} deleted"

    def _cmd_prepare_recipe(self, command: cmd.PrepareRecipe) -> Change:
        recipe = self.recipes.get(command.name)
        started = time.monotonic()
        self._loaded_models.get(recipe.model_id, pinned=self._active_model_id)
        took_ms = (time.monotonic() - started) * 1000.0
        message = f"recipe {recipe.name!r} ready (model {recipe.model_id} loaded, {took_ms:.0f} ms)"
        return None, recipe.name, message

    def _cmd_select_recipe(self, command: cmd.SelectRecipe) -> Change:
        recipe = self.recipes.get(command.name)
        old = self._active_recipe
        loaded = self._loaded_models.is_loaded(recipe.model_id)
        note = self._apply_recipe(recipe)
        self.recipes.select(recipe.name)
        if not loaded:
            note = f" (model {recipe.model_id} was not prepared: loaded first)" + note
        return old, recipe.name, f"recipe {recipe.name!r} active from the next frame{note}"

    def _apply_recipe(self, recipe: Recipe) -> str:
        """Load the recipe's model (outside the lock; a broken file raises and changes nothing), then swap
        model, threshold, ROI and reject timing together: frames captured from now on carry the recipe's
        name and are judged under it; those already captured keep the previous recipe's knobs."""
        inspector = self._loaded_models.get(recipe.model_id, pinned=self._active_model_id)
        with self._lock:
            if self._knobs.recipe != recipe.name:
                self._retired_knobs = self._knobs
            self._inspector = inspector
            self._active_model_id = recipe.model_id
            self._active_recipe = recipe.name
            self._threshold_override = recipe.threshold
            self.settings.inspection.threshold = recipe.threshold
            self.settings.camera.roi = recipe.roi
            self.settings.reject.gate_delay_ms = recipe.gate_delay_ms
            self._refresh_knobs()  # before the capture stamps a frame with the new name
            capture = self._capture
            if capture is not None:
                capture.set_recipe(recipe.name, recipe.roi)
        return self._apply_recipe_camera(recipe, capture)

    def _apply_recipe_camera(self, recipe: Recipe, capture: CaptureWorker | None) -> str:
        """The recipe's exposure and gain: kept in the camera settings (a GenICam camera opened later
        starts with them) and set on the running camera; a note for the operator when that fails."""
        if recipe.exposure_us is None and recipe.gain_db is None:
            return ""
        if recipe.exposure_us is not None:
            self.settings.camera.genicam_exposure_us = recipe.exposure_us
        if recipe.gain_db is not None:
            self.settings.camera.genicam_gain_db = recipe.gain_db
        if capture is None:
            return ""
        change = cmd.SetCameraSettings(exposure_us=recipe.exposure_us, gain_db=recipe.gain_db)
        try:
            camera_control.apply_settings(capture.source, self.settings.camera, change)
        except ValueError as exc:
            log.warning("recipe %s: camera settings not applied: %s", recipe.name, exc)
            return f"; camera settings not applied: {exc}"
        return "; camera settings applied"

    # ---- learning a new product from the camera -----------------------------------------------
    def _offer_to_capture(self, frame: Frame) -> None:
        job = self._product_capture
        if job is not None:
            job.offer(frame)

    def _cmd_capture_product(self, command: cmd.CaptureProduct) -> Change:
        with self._lock:
            current = self._product_capture
            if current is not None and current.running:
                raise ValueError(f"a capture for {current.product!r} is running; cancel it first")
            datasets = Path(self.settings.data_dir) / "datasets"
            self._product_capture = ProductCapture(datasets, command.product, command.count, command.every_n)
        note = "" if self._state == "running" else f"; the line is {self._state}: start it to capture"
        folder = self._product_capture.folder
        return None, command.product, f"capturing {command.count} good parts into {folder}{note}"

    def _cmd_cancel_capture(self, _: cmd.CancelCapture) -> Change:
        job = self._product_capture
        if job is None or not job.running:
            raise ValueError("no capture is running")
        job.cancel()
        return job.product, None, f"capture for {job.product!r} cancelled; {job.status().kept} images kept"

    def _cmd_strike_capture(self, command: cmd.StrikeCapture) -> Change:
        job = self._product_capture
        if job is None:
            raise ValueError("no capture to strike images from")
        job.strike(command.image)
        return command.image, None, f"{command.image} struck from {job.product!r}"

    def capture_status(self) -> CaptureStatus | None:
        job = self._product_capture
        return job.status() if job is not None else None

    def capture_image(self, image: str) -> Path:
        """The file of one captured image (KeyError when there is none of that name)."""
        job = self._product_capture
        if job is None:
            raise KeyError("no capture")
        return job.image_path(image)

    # ---- building a captured product's model on the station ------------------------------------
    def _cmd_build_product(self, command: cmd.BuildProduct) -> Change:
        data_dir = Path(self.settings.data_dir)
        with self._lock:
            current, capture = self._product_build, self._product_capture
            if current is not None and current.running:
                raise ValueError(f"the model of {current.product!r} is being built; wait for it")
            if capture is not None and capture.running and capture.product == command.product:
                raise ValueError(f"{command.product!r} is still being captured; build when it is done")
            self._product_build = ProductBuild(
                Path(self.settings.model.build_template),
                data_dir / "datasets",
                command.product,
                data_dir / "models" / "builds",
                lambda path: self.models.register_file(path).id,
            )
        return None, command.product, f"building the model of {command.product!r} at low priority"

    def build_status(self) -> BuildStatus | None:
        job = self._product_build
        return job.status() if job is not None else None

    # ---- shadow mode -----------------------------------------------------------------------------
    def _cmd_start_shadow(self, command: cmd.StartShadow) -> Change:
        entry = self.models.get(command.model_id)
        if command.model_id == self._active_model_id:
            raise ValueError(f"model {command.model_id} is the active one; shadow another model")
        with self._lock:
            current = self._shadow
            if current is not None and current.running:
                raise ValueError(f"model {current.model_id} is in the shadow; stop it first")
            path = self.models.path_of(command.model_id)
            # One thread for the candidate: on a small box the line keeps the other core.
            self._shadow = ShadowRun(
                command.model_id,
                lambda: Inspector(path, threads=1, expected_sha256=entry.sha256),
                command.parts,
            )
        return (
            None,
            command.model_id,
            f"model {command.model_id} judges the next {command.parts} parts in the shadow",
        )

    def _cmd_stop_shadow(self, _: cmd.StopShadow) -> Change:
        shadow = self._shadow
        if shadow is None or not shadow.running:
            raise ValueError("no model is in the shadow")
        shadow.stop()
        return (
            shadow.model_id,
            None,
            f"shadow of {shadow.model_id} stopped after {shadow.status().compared} parts",
        )

    def shadow_status(self) -> ShadowStatus | None:
        shadow = self._shadow
        return shadow.status() if shadow is not None else None

    def shadow_thumbnail(self, frame_id: int) -> bytes:
        """The candidate's view of a part where it disagreed with the line (KeyError if not kept)."""
        shadow = self._shadow
        if shadow is None:
            raise KeyError(frame_id)
        return shadow.thumbnail(frame_id)

    def recipes_view(self) -> RecipesView:
        return RecipesView(
            active=self._active_recipe, recipes=self.recipes.list(), loaded_models=self._loaded_models.ids()
        )

    def _remember_in_recipe(self, **changes: Any) -> str:
        """An operator's change to the running product is kept in its recipe, so switching back to it
        restores it; the note for the command's message ('' without an active recipe)."""
        name = self._active_recipe
        if name is None:
            return ""
        recipe = self.recipes.get(name)
        self.recipes.update(recipe.model_copy(update=changes))
        return f"; saved in recipe {name!r}"

    def _on_mqtt_command(self, command: cmd.Command) -> cmd.CommandResult:
        return self.execute(command, actor="mqtt")

    # ---- config --------------------------------------------------------------------------------
    def config_view(self) -> dict[str, Any]:
        """The settings a viewer may read: built from an allow-list, so a new or secret field stays out."""
        with self._lock:
            return public_view(self.settings, threshold=self.threshold)

    def patch_config(self, patch: dict[str, Any], actor: str = "system") -> list[dict[str, Any]]:
        """Apply live-changeable fields only; validate everything before changing anything."""
        flat = _flatten(patch)
        unknown = sorted(set(flat) - LIVE_FIELDS)
        if unknown:
            raise ValueError(
                f"not changeable while running: {', '.join(unknown)} (live: {sorted(LIVE_FIELDS)})"
            )
        # Validate the sections alone (ValidationError names the field); the root settings class would
        # re-read the environment and could quietly override the patch.
        with self._lock:
            candidate = {
                "inspection": self.settings.inspection.model_dump(),
                "reject": self.settings.reject.model_dump(),
            }
        for key, value in flat.items():
            section, field = key.split(".")
            candidate[section][field] = value
        inspection = InspectionSettings.model_validate(candidate["inspection"])
        reject = RejectSettings.model_validate(candidate["reject"])
        problem = escalation_problem(self.settings.escalation, reject, self.settings.mqtt.protocol)
        if problem:
            raise ValueError(problem)
        validated = {"inspection": inspection, "reject": reject}
        changes = []
        with self._lock:
            for key in flat:
                section, field = key.split(".")
                old = (
                    self.threshold
                    if key == "inspection.threshold"
                    else getattr(getattr(self.settings, section), field)
                )
                changes.append({"field": key, "old": old, "new": getattr(validated[section], field)})
            self.settings.inspection = inspection
            self.settings.reject = reject
            self.reject.settings = reject
            if "inspection.threshold" in flat:
                self._threshold_override = inspection.threshold
            self._refresh_knobs()
        log.info("config patched by %s: %s", actor, changes)
        self.link.publish_status()
        return changes

    # ---- views ---------------------------------------------------------------------------------
    @property
    def opcua(self) -> OpcUaServer | None:
        """The OPC UA server when `opcua.enabled` (for status and tests); None otherwise."""
        return self._opcua

    @property
    def frame_seq(self) -> int:
        return self.worker.seq

    def latest_frame_jpeg(self, overlay: bool = True) -> bytes | None:
        judgement = self.worker.latest
        if judgement is None:
            return None
        cached = self._jpeg_cache
        if cached is not None and cached[0] == judgement.seq and cached[1] == overlay:
            return cached[2]
        image = judgement.frame.image
        if overlay and judgement.result is not None:
            res = judgement.result
            image = render_overlay(image, res.anomaly_map, res.threshold, res.boxes)
        self._jpeg_cache = (judgement.seq, overlay, encode_overlay_jpeg(image, 85))
        return self._jpeg_cache[2]

    def latest_verdict(self) -> FrameVerdict | None:
        judgement = self.worker.latest
        if judgement is None:
            return None
        frame, result = judgement.frame, judgement.result
        return FrameVerdict(
            seq=judgement.seq,
            frame_id=frame.frame_id,
            captured_at=frame.captured_at,
            verdict=None if result is None else "NG" if result.is_defect else "OK",
            score=None if result is None else float(result.score),
            threshold=None if result is None else float(result.threshold),
        )

    def recent_frames(self, count: int, timeout_s: float) -> list[np.ndarray]:
        """Up to `count` distinct frames as the line shows them (waits at most `timeout_s`); a stopped line
        gives its last frame at most. For checking a new model on what the camera really sees."""
        frames: list[np.ndarray] = []
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(frames) < count and time.monotonic() < deadline:
            latest = self.worker.latest
            if latest is not None and latest.seq not in seen:
                seen.add(latest.seq)
                frames.append(latest.frame.image)
            elif self._capture is None:
                break
            else:
                time.sleep(0.02)
        return frames

    def trend_report(self, window_s: int) -> TrendReport:
        return self.trends.report(window_s, threshold=self.threshold)

    def _model_status(self) -> ModelStatus | None:
        if self._inspector is None:
            return None
        info = self._inspector.info
        return ModelStatus(
            id=self._active_model_id,
            name=info.name,
            version=info.version,
            sha256=info.sha256,
            calibrated_threshold=info.threshold,
            input_size=info.input_size,
        )

    def status(self) -> RuntimeStatus:
        capture = self._capture
        roi = self.settings.camera.roi
        return RuntimeStatus(
            state=self._state,
            fps=self.metrics.fps(),
            frames=self.metrics.frames,
            defects=self.metrics.defects,
            dropped_frames=self.queue.dropped,
            corrupt_frames=self.metrics.corrupt + (capture.corrupt_frames if capture else 0),
            queue_depth=len(self.queue),
            threshold=self.threshold,
            model=self._model_status(),
            broker_connected=self.link.connected,
            camera_connected=bool(capture and capture.connected),
            spool_depth=self.outbox.depth(),
            latency=LatencyStatus(**self.metrics.latency_percentiles()),
            roi=roi.model_dump() if roi else None,
            recipe=self._active_recipe,
            source_size=list(capture.source_size) if capture and capture.source_size else None,
            line_speed_request_ppm=self._line_speed_ppm,
            uptime_s=round(time.monotonic() - self._started_mono, 1),
            escalation=self.escalation.status(self.threshold) if self.escalation is not None else None,
        )

    def rollout_view(self) -> RolloutView:
        """Fleet rollout state for `GET /fleet/rollout`: releases handled, trusted key fingerprints."""
        model = self._model_status()
        station_id = self.settings.rollout.station_id or self.settings.line.station_id
        version = model.version if model else None
        return build_rollout_view(self.rollout, station_id, self._active_model_id, version)

    def health(self) -> HealthReport:
        capture = self._capture
        running = self._state == "running"
        camera_ok = not running or bool(capture and capture.connected)
        camera_detail = (
            "stopped"
            if not running
            else ("connected" if camera_ok else ((capture.last_error if capture else None) or ""))
        )
        spool = self.outbox.depth()
        components = {
            "model": ComponentHealth(ok=self._inspector is not None, detail=self._active_model_id or "none"),
            "inference": ComponentHealth(ok=self.worker.alive, detail=self.worker.last_error or "running"),
            "camera": ComponentHealth(ok=camera_ok, detail=camera_detail),
            "broker": ComponentHealth(
                ok=self.link.connected,
                detail="connected" if self.link.connected else (self.link.last_error or "disconnected"),
            ),
            "spool": ComponentHealth(
                ok=spool < 0.9 * self.settings.outbox.max_alerts and self.outbox.dropped == 0,
                detail=f"{spool} waiting, {self.outbox.dropped} dropped (full)",
            ),
            "archive": self.archive.health(),
        }
        watchdog = camera_control.trigger_watchdog(
            capture.source if capture and running else None, self.settings.camera.genicam_watchdog_s
        )
        if watchdog is not None:
            components["trigger"] = ComponentHealth(ok=watchdog[0], detail=watchdog[1])
        if self.escalation is not None:  # the line decides alone meanwhile: degraded, not down
            components["verifier"] = self._verifier_health(self.escalation)
        overall: HealthState
        if not components["model"].ok or not components["inference"].ok:
            overall = "down"
        elif all(c.ok for c in components.values()):
            overall = "ok"
        else:
            overall = "degraded"
        return HealthReport(status=overall, components=components)

    @staticmethod
    def _verifier_health(escalation: EscalationClient) -> ComponentHealth:
        if not escalation.connected:
            return ComponentHealth(ok=False, detail="verify connection down; the edge decides alone")
        if escalation.breaker_open:
            return ComponentHealth(ok=False, detail="verifiers not answering; the edge decides alone")
        return ComponentHealth(ok=True, detail="connected")

    def metrics_text(self) -> bytes:
        self._update_gauges()
        return self.metrics.exposition()

    def _update_gauges(self) -> None:
        capture = self._capture
        self.metrics.set_gauge("fps", self.metrics.fps())
        self.metrics.set_gauge("queue_depth", len(self.queue))
        self.metrics.set_gauge("dropped_frames", self.queue.dropped)
        self.metrics.set_gauge("spool_depth", self.outbox.depth())
        self.metrics.set_gauge("spool_dropped", self.outbox.dropped)
        self.metrics.set_gauge("broker_connected", float(self.link.connected))
        self.metrics.set_gauge("camera_connected", float(bool(capture and capture.connected)))

    def _status_payload(self) -> dict[str, Any]:
        model = self._model_status()
        escalation = self.escalation.status(self.threshold).model_dump() if self.escalation else None
        return {
            "escalation": escalation,
            "ts": iso_utc(time.time()),
            "runtime_state": self._state,
            "threshold": self.threshold,
            "model": model.model_dump() if model else None,
            "frames": self.metrics.frames,
            "defects": self.metrics.defects,
            "fps": self.metrics.fps(),
        }

    def _sparkplug_metrics(self) -> dict[str, Any]:
        status = self.status()
        latest = self.worker.latest
        last_score = float(latest.result.score) if latest and latest.result else 0.0
        return {
            "last_score": last_score,
            "frames": status.frames,
            "defects": status.defects,
            "fps": status.fps,
            "threshold": status.threshold,
            "spool_depth": status.spool_depth,
            "broker_connected": status.broker_connected,
            "camera_connected": status.camera_connected,
            "state": status.state,
        }

    def _housekeep(self) -> None:
        while not self._stop_event.wait(STATUS_PERIOD_S):
            try:
                self._update_gauges()
                self.link.publish_status()
                if self._sparkplug is not None:
                    self._sparkplug.publish_data()
            except Exception:  # housekeeping must never take the line down
                log.exception("housekeeping failed")


def _since_ms(mono: float) -> float:
    return (time.monotonic() - mono) * 1000.0


def _flatten(patch: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
