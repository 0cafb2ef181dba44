"""The whole station on a fake GigE camera in software-trigger mode: real `edgeinspect run`, real HTTP,
a real MQTT broker. Every trigger (API or MQTT) gives exactly one judged part; settings are audited; a
camera killed mid-run degrades health and the station picks it up again when it is back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EdgeStack, launch_edge_stack
from fake_gige_camera import start_fake_camera, stop_fake_camera, wait_for
from fixtures_mqtt import MessageCollector

SERIAL = "GVSTATION"


class FakeCamera:
    """The station's fake GigE camera process, which a test may kill and start again."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] = start_fake_camera(SERIAL)

    def kill(self) -> None:
        self.process.kill()  # no goodbye to the station: like a pulled cable or a power cut
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.process = start_fake_camera(SERIAL)

    def stop(self) -> None:
        stop_fake_camera(self.process)


@pytest.fixture
def fake_camera() -> Iterator[FakeCamera]:
    camera = FakeCamera()
    try:
        yield camera
    finally:
        camera.stop()


@pytest.fixture
def genicam_stack(
    tmp_path: Path, trained_model: Path, mosquitto: Any, fake_camera: FakeCamera
) -> Iterator[EdgeStack]:
    overrides = {
        "camera": {
            "source": f"genicam:{SERIAL}",
            "genicam_trigger": "software",
            "genicam_exposure_us": 1000.0,
            "genicam_watchdog_s": 1.0,
            "width": 128,
            "height": 128,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 2.0,
        }
    }
    with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, overrides=overrides) as stack:
        yield stack


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

        # The line engineer switches the running camera to free run: parts flow without triggers, the
        # test trigger is refused with the reason, and the switch is audited with the mode it left.
        response = client.post(
            "/camera/settings", headers=stack.headers("operator"), json={"trigger": "free_run"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["new_value"]["trigger"] == "free_run"
        assert wait_for(lambda: _status(client, stack)["frames"] >= 10, 60), "free run never judged parts"
        refused = client.post("/camera/trigger", headers=stack.headers("operator"))
        assert refused.status_code == 409 and "not 'software'" in refused.text
        assert "trigger" not in client.get("/health").json()["components"]  # no watchdog in free run
        audit = client.get("/audit", headers=stack.headers("admin")).json()["items"]
        switch = next(e for e in audit if e["action"] == "camera_settings")
        assert switch["old_value"]["trigger"] == "software" and switch["new_value"]["trigger"] == "free_run"


def test_a_killed_camera_degrades_health_and_the_station_picks_it_up_again(
    genicam_stack: EdgeStack, fake_camera: FakeCamera
) -> None:
    stack = genicam_stack
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:

        def health() -> dict[str, Any]:
            report: dict[str, Any] = client.get("/health").json()
            return report

        def camera_ok() -> bool:
            return bool(health()["components"]["camera"]["ok"])

        def trigger_until(frames: int) -> bool:
            """Fire a trigger (refused while the camera is away) and say whether `frames` parts came."""
            client.post("/camera/trigger", headers=stack.headers("operator"))
            return int(_status(client, stack)["frames"]) >= frames

        assert wait_for(lambda: _status(client, stack)["camera_connected"], 60), "camera never connected"
        assert wait_for(lambda: trigger_until(2), 60), _status(client, stack)
        assert camera_ok()

        fake_camera.kill()
        # Trigger mode: silence is normal, so only the lost control connection can tell the station.
        assert wait_for(lambda: not camera_ok(), 60), health()
        report = health()
        assert report["status"] == "degraded", report
        assert report["components"]["camera"]["detail"], report  # says why, not just "down"
        assert _status(client, stack)["camera_connected"] is False

        fake_camera.restart()
        assert wait_for(camera_ok, 60), health()
        before = int(_status(client, stack)["frames"])
        assert wait_for(lambda: trigger_until(before + 2), 60), _status(client, stack)
        assert health()["components"]["camera"]["ok"] is True
