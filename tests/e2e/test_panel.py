"""The operator panel in a real Chromium: sign in, watch frames and defects, change the threshold.

The first test runs the panel against the FakeRuntime behind a real uvicorn; the second against the real
`edgeinspect run` (runtime, model, Mosquitto) and also checks the change in the retained MQTT status.
"""

from __future__ import annotations

import json
import re
import threading

import httpx
import paho.mqtt.client as mqtt
import pytest
from e2e.panel_helpers import screenshot, sign_in
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime

pytestmark = pytest.mark.e2e


def expect_frames_update(page: Page) -> None:
    seq = page.get_by_test_id("frame-seq")
    expect(seq).to_have_text(re.compile(r"^\d+$"))
    first = seq.inner_text()
    expect(seq).not_to_have_text(first)
    page.wait_for_function("document.getElementById('live-frame').naturalWidth > 0")


def change_threshold(page: Page, value: str) -> None:
    page.get_by_test_id("threshold-input").fill(value)
    page.get_by_test_id("threshold-apply").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("confirm-text")).to_contain_text(value)
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("threshold-current")).to_have_text(value)


def test_panel_against_fake_runtime(page: Page, fake_panel: tuple[str, FakeRuntime]) -> None:
    base_url, runtime = fake_panel
    page.goto(base_url + "/")
    page.get_by_test_id("login-key").fill("wrong-key-0123456789")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("not accepted")

    sign_in(page, base_url, KEYS["operator"], "operator")
    expect(page.get_by_test_id("line-state")).to_have_text("running")
    expect_frames_update(page)

    alert = page.get_by_test_id("alert-item").first
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("linear")
    page.wait_for_function(
        "document.querySelector('[data-testid=alert-thumb]') && "
        "document.querySelector('[data-testid=alert-thumb]').naturalWidth > 0"
    )
    expect(page.get_by_test_id("counter-defects")).not_to_have_text("0")

    # Cancelling the dialog changes nothing.
    page.get_by_test_id("threshold-input").fill("0.61")
    page.get_by_test_id("threshold-apply").click()
    page.get_by_test_id("confirm-cancel").click()
    expect(page.get_by_test_id("message")).to_have_text("Threshold unchanged.")
    assert runtime.threshold == 0.5

    change_threshold(page, "0.77")
    status = httpx.get(f"{base_url}/status", headers={"X-API-Key": KEYS["viewer"]}, timeout=5).json()
    assert status["threshold"] == 0.77
    assert runtime.commands[-1][1] == "operator (operator)"

    page.get_by_test_id("btn-pause").click()
    expect(page.get_by_test_id("line-state")).to_have_text("paused")

    screenshot(page, "panel.png")


def test_viewer_sees_but_cannot_control_and_docs_work_offline(
    page: Page, fake_panel: tuple[str, FakeRuntime]
) -> None:
    base_url, _ = fake_panel
    sign_in(page, base_url, KEYS["viewer"], "viewer")
    expect_frames_update(page)
    for test_id in ("btn-start", "btn-stop", "threshold-apply", "threshold-reset"):
        expect(page.get_by_test_id(test_id)).to_be_disabled()
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('edgeinspect.apiKey')") is None

    page.goto(base_url + "/docs")
    expect(page.get_by_test_id("operation").first).to_be_visible()
    expect(page.get_by_test_id("endpoints")).to_contain_text("/inspection/threshold")


def retained_status_threshold(
    mqtt_url: str, topic: str, wanted: float, timeout_s: float = 20.0
) -> float | None:
    """Watch the retained status topic until it carries `wanted`; return the last threshold seen."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    seen: list[float] = []
    matched = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        if "threshold" in payload:
            seen.append(payload["threshold"])
            if abs(payload["threshold"] - wanted) < 1e-9:
                matched.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-status-watch")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(host, int(port))
    client.loop_start()
    try:
        matched.wait(timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()
    return seen[-1] if seen else None


@pytest.mark.integration
def test_panel_against_the_real_stack(page: Page, edge_stack) -> None:
    sign_in(page, edge_stack.base_url, edge_stack.keys["operator"], "operator")
    expect(page.get_by_test_id("line-state")).to_have_text("running", timeout=60_000)
    expect_frames_update(page)
    expect(page.get_by_test_id("verdict-word")).to_have_text(re.compile(r"^(OK|NG)$"))  # the part in view
    expect(page.get_by_test_id("btn-start")).to_be_disabled()  # already running
    expect(page.get_by_test_id("model-name")).not_to_have_text("none")
    expect(page.get_by_test_id("alert-item").first).to_be_visible(timeout=60_000)

    change_threshold(page, "0.4242")
    status = httpx.get(
        f"{edge_stack.base_url}/status", headers=edge_stack.headers("viewer"), timeout=5
    ).json()
    assert status["threshold"] == pytest.approx(0.4242)
    assert retained_status_threshold(edge_stack.mqtt_url, edge_stack.topics.status, 0.4242) == pytest.approx(
        0.4242
    )
    audit = httpx.get(f"{edge_stack.base_url}/audit", headers=edge_stack.headers("admin"), timeout=5).json()
    assert audit["items"][0]["action"] == "set_threshold" and audit["items"][0]["new_value"] == pytest.approx(
        0.4242
    )

    screenshot(page, "panel-real.png")
