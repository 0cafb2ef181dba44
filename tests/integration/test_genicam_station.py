"""The whole station on a fake GigE camera in software-trigger mode: real `edgeinspect run`, real HTTP,
a real MQTT broker. Every trigger (API or MQTT) gives exactly one judged part; settings are audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EdgeStack, launch_edge_stack
from fake_gige_camera import start_fake_camera, stop_fake_camera, wait_for
from fixtures_mqtt import MessageCollector

SERIAL = "GVSTATION"


@pytest.fixture
def genicam_stack(tmp_path: Path, trained_model: Path, mosquitto: Any) -> Iterator[EdgeStack]:
    camera = start_fake_camera(SERIAL)
    overrides = {
        "camera": {
            "source": f"genicam:{SERIAL}",
            "genicam_trigger": "software",
            "genicam_exposure_us": 1000.0,
            "genicam_watchdog_s": 1.0,
            "width": 128,
            "height": 128,
        }
    }
    try:
        with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, overrides=overrides) as stack:
            yield stack
    finally:
        stop_fake_camera(camera)


def _status(client: httpx.Client, stack: EdgeStack) -> dict[str, Any]:
    response = client.get("/status", headers=stack.headers("viewer"))
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def test_each_trigger_gives_one_part_and_settings_are_audited(genicam_stack: EdgeStack) -> None:
    stack = genicam_stack
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        assert wait_for(lambda: _status(client, stack)["camera_connected"], 60), "camera never connected"
        assert _status(client, stack)["frames"] == 0  # trigger mode: no trigger, no part

        def watchdog() -> dict[str, Any]:
            report: dict[str, Any] = client.get("/health").json()
            return report

        # No trigger yet: the watchdog says so in health instead of the line waiting silently.
        assert wait_for(
            lambda: "no parts for" in watchdog()["components"].get("trigger", {}).get("detail", "")
        )
        assert watchdog()["status"] == "degraded"

        for expected in (1, 2, 3):
            response = client.post("/camera/trigger", headers=stack.headers("operator"))
            assert response.status_code == 200, response.text
            assert wait_for(lambda n=expected: _status(client, stack)["frames"] >= n, 30)  # type: ignore[misc]

        with MessageCollector(stack.mqtt_url, [stack.topics.command_response]) as mqtt:  # type: ignore[attr-defined]
            mqtt.publish(stack.topics.command, json.dumps({"command": "camera_trigger", "request_id": "t4"}))  # type: ignore[attr-defined]
            answers = mqtt.wait_for(lambda ms: any(b"t4" in m.payload for m in ms), timeout_s=20)
        assert json.loads(answers[-1].payload)["ok"] is True
        assert wait_for(lambda: _status(client, stack)["frames"] >= 4, 30)

        response = client.post(
            "/camera/settings",
            headers=stack.headers("operator"),
            json={"exposure_us": 2500.0, "gain_db": 3.0},
        )
        assert response.status_code == 200, response.text
        assert response.json()["new_value"]["exposure_us"] == pytest.approx(2500.0)

        refused = client.post("/camera/settings", headers=stack.headers("operator"), json={"exposure_us": -1})
        assert refused.status_code == 422

        # Exactly one part per trigger: 4 triggers, 4 parts, even after waiting for strays.
        assert not wait_for(lambda: _status(client, stack)["frames"] > 4, 3)
        assert _status(client, stack)["frames"] == 4

        audit = client.get("/audit", headers=stack.headers("admin")).json()["items"]
        actions = [(e["action"], e["ok"]) for e in audit]
        assert actions.count(("camera_trigger", True)) == 4  # three through the API, one over MQTT
        assert any(e["action"] == "camera_trigger" and "mqtt" in e["actor"] for e in audit), audit
        settings = next(e for e in audit if e["action"] == "camera_settings")
        assert settings["ok"] and settings["new_value"]["gain_db"] == pytest.approx(3.0)
