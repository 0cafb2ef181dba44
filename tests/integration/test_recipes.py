"""Recipes through a real runtime, two real models and a real broker: the PLC switches product mid-run.

What the line needs from a switch: no frame lost, every part judged and named under the recipe it was
captured for (its model, its threshold), and the product the station runs survives a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_mqtt import MessageCollector, wait_until

from app.settings import load_settings
from device.station.runtime import EdgeRuntime
from vision.inspector import Inspector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "edgeinspect/line1/station1"


def _settings(tmp_path: Path, model: Path, mqtt_url: str) -> Any:
    return load_settings(
        None,
        {
            "data_dir": str(tmp_path),
            # Slow enough that 2 cores never drop a frame from the 64-deep queue: a gap is then a loss.
            "camera": {"category": "bracket", "fps": 8, "defect_rate": 0.3, "queue_size": 64},
            "model": {"path": str(model), "auto_build": False},
            "mqtt": {"url": mqtt_url, "client_id": "edge-recipes", "publish_results": True},
        },
    )


def _command(collector: MessageCollector, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one command on the MQTT command topic and return the runtime's answer to it."""
    request_id = f"r{len(collector.snapshot(f'{PREFIX}/command/response'))}-{payload['command']}"
    collector.publish(f"{PREFIX}/command", json.dumps({**payload, "request_id": request_id}))
    answers = collector.wait_for(
        lambda got: any(json.loads(m.payload).get("request_id") == request_id for m in got),
        30,
        topic=f"{PREFIX}/command/response",
    )
    return next(a for a in map(lambda m: json.loads(m.payload), answers) if a["request_id"] == request_id)


def _results_named(collector: MessageCollector, recipe: str, count: int) -> None:
    collector.wait_for(
        lambda got: sum(json.loads(m.payload)["recipe"] == recipe for m in got) >= count,
        60,
        topic=f"{PREFIX}/result",
    )


def test_the_plc_switches_product_mid_run_and_no_part_is_lost_or_misjudged(
    tmp_path: Path, trained_model: Path, gaussian_trained_model: Path, mosquitto: Any
) -> None:
    topics = [f"{PREFIX}/result", f"{PREFIX}/alert", f"{PREFIX}/command/response"]
    with MessageCollector(mosquitto.url, topics) as collector:
        runtime = EdgeRuntime(_settings(tmp_path, trained_model, mosquitto.url))
        runtime.start()
        try:
            model_a = runtime.status().model
            assert model_a is not None and model_a.id is not None
            entry_b = runtime.models.register_file(gaussian_trained_model)
            threshold_b = round(Inspector(gaussian_trained_model).info.threshold * 0.9, 6)
            bracket = {"name": "bracket", "model_id": model_a.id}
            housing = {
                "name": "housing",
                "model_id": entry_b.id,
                "threshold": threshold_b,
                "gate_delay_ms": 40,
            }
            for recipe in (bracket, housing):
                assert _command(collector, {"command": "save_recipe", "recipe": recipe})["ok"]
            assert _command(collector, {"command": "select_recipe", "name": "bracket"})["ok"]
            _results_named(collector, "bracket", 8)
            prepared = _command(collector, {"command": "prepare_recipe", "name": "housing"})
            assert prepared["ok"], prepared
            switched = _command(collector, {"command": "select_recipe", "name": "housing"})
            assert switched["ok"] and switched["old_value"] == "bracket", switched
            assert "not prepared" not in switched["message"]
            _results_named(collector, "housing", 8)
            assert _command(collector, {"command": "select_recipe", "name": "bracket"})["ok"]
            _results_named(collector, "bracket", 16)
            refused = _command(collector, {"command": "delete_recipe", "name": "bracket"})
            assert not refused["ok"] and "active" in refused["message"]
            assert runtime.queue.dropped == 0
        finally:
            runtime.stop()
        results = [json.loads(m.payload) for m in collector.snapshot(f"{PREFIX}/result")]
        alerts = [json.loads(m.payload) for m in collector.snapshot(f"{PREFIX}/alert")]

    named = [r for r in results if r["recipe"] is not None]
    ids = [r["frame_id"] for r in named]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "a frame was lost across a switch"
    runs = [r["recipe"] for i, r in enumerate(named) if i == 0 or named[i - 1]["recipe"] != r["recipe"]]
    assert runs == ["bracket", "housing", "bracket"]  # each switch lands once, between two frames
    expected_threshold = {"bracket": pytest.approx(model_a.calibrated_threshold), "housing": threshold_b}
    for result in named:
        assert result["threshold"] == expected_threshold[result["recipe"]], result
    sha = {"bracket": model_a.sha256, "housing": entry_b.sha256}
    named_alerts = [a for a in alerts if a["recipe"] is not None]
    assert named_alerts and {a["recipe"] for a in named_alerts} <= {"bracket", "housing"}
    for alert in named_alerts:
        assert alert["model"]["sha256"] == sha[alert["recipe"]], alert

    # The product the line ran comes back after a restart, with its threshold.
    restarted = EdgeRuntime(_settings(tmp_path, trained_model, mosquitto.url))
    restarted.start()
    try:
        wait_until(lambda: restarted.metrics.frames >= 1, 30)
        status = restarted.status()
        assert status.recipe == "bracket" and status.model is not None and status.model.id == model_a.id
        assert [r.name for r in restarted.recipes_view().recipes] == ["bracket", "housing"]
    finally:
        restarted.stop()


def test_a_new_product_is_captured_from_the_camera_built_and_switched_to(
    tmp_path: Path, trained_model: Path, mosquitto: Any
) -> None:
    """The line engineer's flow on the station itself: capture good parts while the line keeps judging,
    build the model there (the build template, ONNX Runtime and numpy) while the line keeps judging, then
    save it as a recipe and switch to it."""
    from device.station import commands as cmd
    from device.station.recipes import Recipe
    from vision.build_template import export_build_template
    from vision.config import ModelSettings

    settings = _settings(tmp_path / "station", trained_model, mosquitto.url)
    # What the plant ships with the station (`edgeinspect template`): both heads, picked per product.
    export_build_template(ModelSettings(), settings.model.build_template)
    runtime = EdgeRuntime(settings)
    runtime.start()
    try:
        started = runtime.execute(cmd.CaptureProduct(product="housing", count=24, every_n=2), actor="test")
        assert started.ok, started.message
        judged_before = runtime.metrics.frames
        wait_until(
            lambda: (
                (runtime.capture_status() or None) is not None and runtime.capture_status().state == "done"
            ),
            60,
        )  # type: ignore[union-attr]
        status = runtime.capture_status()
        assert status is not None and status.kept == 24 and status.skipped_frames == 0
        assert runtime.metrics.frames - judged_before >= 2 * 24 - 2  # the line kept judging meanwhile
        assert runtime.queue.dropped == 0
        struck = runtime.execute(cmd.StrikeCapture(image=status.images[0]), actor="test")
        assert struck.ok and runtime.capture_status().kept == 23  # type: ignore[union-attr]

        judged_before = runtime.metrics.frames
        building = runtime.execute(cmd.BuildProduct(product="housing"), actor="engineer")
        assert building.ok, building.message
        wait_until(lambda: runtime.build_status().state != "running", 180)  # type: ignore[union-attr]
        built = runtime.build_status()
        assert built is not None and built.state == "done", built
        assert built.fit_images + len(built.held_back_scores) == 23 and built.model_id is not None
        assert runtime.metrics.frames > judged_before and runtime.queue.dropped == 0  # judged throughout
        assert runtime.execute(cmd.SaveRecipe(recipe=Recipe(name="housing", model_id=built.model_id))).ok
        switched = runtime.execute(cmd.SelectRecipe(name="housing"), actor="plc")
        assert switched.ok, switched.message
        wait_until(lambda: runtime.status().recipe == "housing" and runtime.metrics.frames > 0, 10)
        model = runtime.status().model
        assert model is not None and model.id == built.model_id and model.name.endswith("-housing")
    finally:
        runtime.stop()


def test_a_candidate_model_judges_in_the_shadow_and_decides_nothing(
    tmp_path: Path, trained_model: Path, gaussian_trained_model: Path, mosquitto: Any
) -> None:
    """Before a new model judges parts it runs beside the active one; the panel sees where they differ."""
    from device.station import commands as cmd

    runtime = EdgeRuntime(_settings(tmp_path, trained_model, mosquitto.url))
    runtime.start()
    try:
        active = runtime.status().model
        assert active is not None and active.id is not None
        refused = runtime.execute(cmd.StartShadow(model_id=active.id), actor="test")
        assert not refused.ok and "active one" in refused.message
        assert not runtime.execute(cmd.StartShadow(model_id="no-such-model"), actor="test").ok
        candidate = runtime.models.register_file(gaussian_trained_model)
        started = runtime.execute(cmd.StartShadow(model_id=candidate.id, parts=12), actor="test")
        assert started.ok, started.message
        again = runtime.execute(cmd.StartShadow(model_id=candidate.id), actor="test")
        assert not again.ok and "stop it first" in again.message

        def done() -> bool:
            status = runtime.shadow_status()
            return status is not None and status.state == "done"

        wait_until(done, 90)
        status = runtime.shadow_status()
        assert status is not None and status.compared == 12 and status.error is None
        assert status.agreed + status.candidate_ng_active_ok + status.candidate_ok_active_ng == 12
        assert status.candidate_threshold == pytest.approx(Inspector(gaussian_trained_model).info.threshold)
        for disagreement in status.disagreements:
            assert (disagreement.candidate_verdict == "NG") == (
                disagreement.candidate_score > disagreement.candidate_threshold
            )
            assert disagreement.active_verdict != disagreement.candidate_verdict
            assert runtime.shadow_thumbnail(disagreement.frame_id)[:2] == b"\xff\xd8"  # a JPEG
        assert runtime.status().model.id == active.id  # type: ignore[union-attr]  # it decided nothing
        assert runtime.queue.dropped == 0
    finally:
        runtime.stop()
