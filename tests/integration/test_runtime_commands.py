"""The runtime's one door for changes, through a real runtime, model and broker."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from fixtures_mqtt import wait_until

from app.settings import load_settings
from device.station import commands as cmd
from device.station.data_dir_lock import DataDirLockedError
from device.station.model_registry import sha256_bytes
from device.station.runtime import EdgeRuntime
from vision.inspector import ModelFileError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _variant(model: Path, version: str) -> bytes:
    """The same network under another version tag: a different file, a valid model."""
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "edgeinspect.model_version":
            prop.value = version
    return proto.SerializeToString()


@pytest.fixture
def runtime(tmp_path: Path, trained_model: Path, mosquitto):
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "camera": {"category": "bracket", "fps": 15, "defect_rate": 0.2, "queue_size": 64},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-commands"},
        },
    )
    rt = EdgeRuntime(settings)
    rt.start()
    wait_until(lambda: rt.metrics.frames >= 3, 30)
    yield rt
    rt.stop()


def test_threshold_pause_resume_and_stop(runtime: EdgeRuntime) -> None:
    calibrated = runtime.status().model.calibrated_threshold
    shown = runtime.latest_verdict()  # the live view's verdict on the frame it shows
    assert shown is not None and shown.verdict in ("OK", "NG") and shown.score is not None
    assert shown.threshold == pytest.approx(calibrated)
    assert (shown.verdict == "NG") == (shown.score >= calibrated)
    result = runtime.execute(cmd.SetThreshold(threshold=calibrated * 2, request_id="r1"), actor="test")
    assert result.ok and result.request_id == "r1"
    assert result.old_value == pytest.approx(calibrated) and runtime.status().threshold == pytest.approx(
        calibrated * 2
    )
    assert runtime.execute(cmd.ResetThreshold(), actor="test").new_value == pytest.approx(calibrated)

    assert runtime.execute(cmd.PauseInspection(), actor="test").ok
    judged, seq = runtime.metrics.frames, runtime.frame_seq
    wait_until(lambda: runtime.frame_seq >= seq + 5, 30)  # frames still shown...
    assert runtime.metrics.frames <= judged + 1  # ...but not judged
    unjudged = runtime.latest_verdict()
    assert unjudged is not None and unjudged.seq > seq and (unjudged.verdict, unjudged.score) == (None, None)
    assert runtime.status().state == "paused"
    assert runtime.execute(cmd.ResumeInspection(), actor="test").ok
    wait_until(lambda: runtime.metrics.frames >= judged + 3, 30)

    assert runtime.execute(cmd.StopLine(), actor="test").new_value == "stopped"
    refused = runtime.execute(cmd.ResumeInspection(), actor="test")
    assert not refused.ok and "start" in refused.message
    assert runtime.execute(cmd.StartLine(), actor="test").ok
    wait_until(lambda: runtime.status().camera_connected, 30)


def test_hot_swap_and_rollback_drop_no_frames(runtime: EdgeRuntime, trained_model: Path) -> None:
    first_id = runtime.status().model.id
    data = _variant(trained_model, "2")
    entry = runtime.models.register(data, "v2.onnx", sha256_bytes(data))
    dropped_before = runtime.queue.dropped
    result = runtime.execute(cmd.ActivateModel(model_id=entry.id), actor="test")
    assert result.ok, result.message
    assert runtime.status().model.id == entry.id and runtime.status().model.version == "2"
    frames = runtime.metrics.frames
    wait_until(lambda: runtime.metrics.frames >= frames + 5, 30)
    assert runtime.queue.dropped == dropped_before
    assert [m.id for m in runtime.models.list() if m.active] == [entry.id]

    rolled = runtime.execute(cmd.RollbackModel(), actor="test")
    assert rolled.ok and rolled.new_value == first_id
    assert runtime.status().model.id == first_id


def test_bad_models_are_refused_and_the_running_one_keeps_running(
    runtime: EdgeRuntime, trained_model: Path
) -> None:
    running = runtime.status().model.id
    data = _variant(trained_model, "3")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        runtime.models.register(data, "v3.onnx", "0" * 64)
    with pytest.raises(ModelFileError):
        junk = b"not an onnx model at all"
        runtime.models.register(junk, "junk.onnx", sha256_bytes(junk))
    entry = runtime.models.register(data, "v3.onnx", sha256_bytes(data))
    path = runtime.models.path_of(entry.id)
    path.write_bytes(path.read_bytes()[:-16] + b"\0" * 16)  # tampered on disk after registration
    result = runtime.execute(cmd.ActivateModel(model_id=entry.id), actor="test")
    assert not result.ok and "sha256" in result.message
    unknown = runtime.execute(cmd.ActivateModel(model_id="nope"), actor="test")
    assert not unknown.ok and "unknown model" in unknown.message
    assert runtime.status().model.id == running
    frames = runtime.metrics.frames
    wait_until(lambda: runtime.metrics.frames >= frames + 3, 30)


def test_config_patch_applies_live_fields_only(runtime: EdgeRuntime) -> None:
    changes = runtime.patch_config(
        {"inspection": {"min_defect_area_px": 40}, "reject": {"gate_delay_ms": 250}}
    )
    assert {c["field"]: c["new"] for c in changes} == {
        "inspection.min_defect_area_px": 40,
        "reject.gate_delay_ms": 250,
    }
    assert runtime.config_view()["reject"]["gate_delay_ms"] == 250
    with pytest.raises(ValueError, match=r"camera\.fps"):
        runtime.patch_config({"camera": {"fps": 3}})
    with pytest.raises(ValueError, match="gate_delay_ms"):
        runtime.patch_config({"reject": {"gate_delay_ms": -5}})
    assert runtime.config_view()["reject"]["gate_delay_ms"] == 250


def test_line_speed_request_and_reject_ack(runtime: EdgeRuntime) -> None:
    result = runtime.execute(cmd.RequestLineSpeed(parts_per_minute=90), actor="test")
    assert result.ok and runtime.status().line_speed_request_ppm == 90
    wait_until(lambda: runtime.reject.issued >= 1, 60)
    assert not runtime.execute(cmd.AcknowledgeReject(frame_id=10**9), actor="test").ok


def test_an_operator_threshold_does_not_survive_a_model_swap(
    runtime: EdgeRuntime, trained_model: Path
) -> None:
    """A threshold chosen on one model's scores means nothing for another's: a swap drops it."""
    calibrated = runtime.status().model.calibrated_threshold
    assert runtime.execute(cmd.SetThreshold(threshold=calibrated * 3), actor="test").ok
    data = _variant(trained_model, "4")
    entry = runtime.models.register(data, "v4.onnx", sha256_bytes(data))
    swapped = runtime.execute(cmd.ActivateModel(model_id=entry.id), actor="test")
    assert swapped.ok and "dropped" in swapped.message
    assert runtime.status().threshold == pytest.approx(runtime.status().model.calibrated_threshold)
    assert runtime.config_view()["inspection"]["threshold"] == pytest.approx(runtime.threshold)

    assert runtime.execute(cmd.SetThreshold(threshold=calibrated * 3), actor="test").ok
    assert runtime.execute(cmd.RollbackModel(), actor="test").ok
    assert runtime.status().threshold == pytest.approx(calibrated)


def test_a_rollback_survives_a_restart(tmp_path: Path, trained_model: Path, mosquitto) -> None:
    settings = load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            "inspection": {"enabled": False},
            "model": {"path": str(trained_model), "auto_build": False},
            "mqtt": {"url": mosquitto.url, "client_id": "edge-rollback"},
        },
    )
    first = EdgeRuntime(settings)
    first.start()
    try:
        original = first.status().model.id
        data = _variant(trained_model, "5")
        entry = first.models.register(data, "v5.onnx", sha256_bytes(data))
        assert first.execute(cmd.ActivateModel(model_id=entry.id), actor="test").ok
        assert first.execute(cmd.RollbackModel(), actor="test").ok
    finally:
        first.stop()
    second = EdgeRuntime(settings)
    second.start()
    try:
        assert second.status().model.id == original
        assert [m.id for m in second.models.list() if m.active] == [original]
    finally:
        second.stop()


def test_one_runtime_per_data_directory(runtime: EdgeRuntime) -> None:
    """A second instance on the same data directory refuses to start and names the holder."""
    with pytest.raises(DataDirLockedError, match=rf"pid {os.getpid()}"):
        EdgeRuntime(runtime.settings)
    assert runtime.outbox.depth() >= 0  # the first one is untouched and keeps running
    frames = runtime.metrics.frames
    wait_until(lambda: runtime.metrics.frames >= frames + 3, 30)


def test_health_and_status_answer_before_start(tmp_path: Path, trained_model: Path) -> None:
    settings = load_settings(
        None, {"data_dir": str(tmp_path), "model": {"path": str(trained_model), "auto_build": False}}
    )
    idle = EdgeRuntime(settings)
    try:
        report = idle.health()
        assert report.status == "down" and report.components["model"].detail == "none"
        assert idle.status().model is None
    finally:
        idle.stop()
