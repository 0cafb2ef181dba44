"""The panel's camera card on the real station with a fake GigE camera in software-trigger mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EdgeStack, launch_edge_stack
from e2e.panel_helpers import sign_in
from fake_gige_camera import start_fake_camera, stop_fake_camera, wait_for
from playwright.sync_api import Page, expect

SERIAL = "GVPANEL"


@pytest.fixture
def genicam_stack(tmp_path: Path, trained_model: Path, mosquitto: Any) -> Iterator[EdgeStack]:
    camera = start_fake_camera(SERIAL)
    overrides = {
        "camera": {"source": f"genicam:{SERIAL}", "genicam_trigger": "software", "width": 128, "height": 128}
    }
    try:
        with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, overrides=overrides) as stack:
            yield stack
    finally:
        stop_fake_camera(camera)


def test_operator_fires_a_trigger_sets_exposure_and_switches_to_free_run_from_the_panel(
    page: Page, genicam_stack: EdgeStack
) -> None:
    stack = genicam_stack

    def frames() -> int:
        status = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer"), timeout=10).json()
        return int(status["frames"])

    def connected() -> bool:
        status = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer"), timeout=10).json()
        return bool(status["camera_connected"])

    sign_in(page, stack.base_url, stack.keys["operator"], "operator")
    expect(page.get_by_test_id("line-state")).to_have_text("running", timeout=60_000)
    assert wait_for(connected, 60), "camera never connected"
    page.get_by_test_id("camera-trigger").click()
    expect(page.get_by_test_id("message")).to_have_text("software trigger fired", timeout=30_000)
    assert wait_for(lambda: frames() == 1, 30)

    page.get_by_test_id("camera-exposure").fill("3000")
    page.get_by_test_id("camera-apply").click()
    expect(page.get_by_test_id("message")).to_have_text("camera settings changed", timeout=30_000)
    audit = httpx.get(f"{stack.base_url}/audit", headers=stack.headers("admin"), timeout=10).json()["items"]
    latest = audit[0]
    assert latest["action"] == "camera_settings" and latest["new_value"]["exposure_us"] == pytest.approx(
        3000.0
    )
    assert any(e["action"] == "camera_trigger" and e["ok"] for e in audit)

    # Switching the running camera to free run from the card: parts flow without a trigger.
    page.get_by_test_id("camera-exposure").fill("")
    page.get_by_test_id("camera-trigger-mode").select_option("free_run")
    page.get_by_test_id("camera-apply").click()
    expect(page.get_by_test_id("message")).to_have_text("camera settings changed", timeout=30_000)
    assert wait_for(lambda: frames() >= 5, 60), "free run never judged parts"
    audit = httpx.get(f"{stack.base_url}/audit", headers=stack.headers("admin"), timeout=10).json()["items"]
    assert audit[0]["new_value"]["trigger"] == "free_run" and audit[0]["old_value"]["trigger"] == "software"
