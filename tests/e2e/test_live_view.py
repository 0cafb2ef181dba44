"""The live view in a real Chromium against a real uvicorn: the big OK / NG for the part in view, line buttons
that follow the line's state, controls a role cannot use disabled with the reason in text, and Roll back
offered only when there is a model to go back to.

Each test keeps a screenshot under tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e.panel_helpers import FakePanel, open_screen, screenshot, serve_panel, sign_in
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime, fake_model_bytes

from device.station.commands import PauseInspection, ResumeInspection, StopLine

pytestmark = pytest.mark.e2e

OK_GREEN = "rgb(47, 191, 113)"  # --ok
NG_RED = "rgb(229, 72, 77)"  # --bad


@pytest.fixture
def still_panel(tmp_path: Path) -> Iterator[FakePanel]:
    """The panel around a FakeRuntime that judges a frame only when the test says so (`runtime.advance()`),
    so what the API reports about the latest frame holds still while the browser is checked against it."""
    runtime = FakeRuntime(defect_every=5)  # not started: no frames of its own
    with serve_panel(runtime, tmp_path) as panel:
        yield panel


def latest_frame_report(base_url: str) -> dict[str, str]:
    """What the API says about the frame the live view shows (the headers of that very image)."""
    response = httpx.get(f"{base_url}/frames/latest.jpg", headers={"X-API-Key": KEYS["viewer"]}, timeout=10)
    response.raise_for_status()
    return {name: response.headers[f"x-frame-{name}"] for name in ("verdict", "id", "score", "threshold")}


def css(page: Page, test_id: str, prop: str) -> str:
    return str(
        page.get_by_test_id(test_id).evaluate(
            "(node, prop) => getComputedStyle(node).getPropertyValue(prop)", prop
        )
    )


def expect_verdict_matches_api(page: Page, base_url: str, wanted: str, colour: str) -> None:
    report = latest_frame_report(base_url)
    assert report["verdict"] == wanted
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-frame-id", report["id"])
    expect(page.get_by_test_id("verdict-word")).to_have_text(report["verdict"])
    detail = page.get_by_test_id("verdict-detail")
    expect(detail).to_contain_text(f"frame {report['id']}")
    expect(detail).to_contain_text(f"score {report['score']}")
    expect(detail).to_contain_text(f"threshold {report['threshold']}")
    assert css(page, "verdict", "background-color") == colour


def test_the_verdict_is_the_part_in_view_and_never_a_stale_one(page: Page, still_panel: FakePanel) -> None:
    base_url, runtime = still_panel.base_url, still_panel.runtime
    sign_in(page, base_url, KEYS["viewer"], "viewer")
    expect(page.get_by_test_id("verdict-detail")).to_contain_text("Waiting for the first judged part")

    for _ in range(4):  # frames 1-4 are good
        runtime.advance()
    expect_verdict_matches_api(page, base_url, "OK", OK_GREEN)
    assert float(css(page, "verdict-word", "font-size").removesuffix("px")) >= 64  # readable from afar
    screenshot(page, "live-verdict-ok.png")

    runtime.advance()  # frame 5 is a defect
    expect_verdict_matches_api(page, base_url, "NG", NG_RED)
    screenshot(page, "live-verdict-ng.png")

    # No new frame for a while: the panel says so instead of keeping the old NG up.
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-verdict", "stale", timeout=20_000)
    expect(page.get_by_test_id("verdict-word")).to_have_text("NO FRAMES")
    expect(page.get_by_test_id("verdict-detail")).to_contain_text("Last frame 5")
    runtime.advance()
    expect_verdict_matches_api(page, base_url, "OK", OK_GREEN)

    runtime.execute(PauseInspection())
    expect(verdict).to_have_attribute("data-verdict", "paused")
    expect(page.get_by_test_id("verdict-word")).to_have_text("PAUSED")
    runtime.execute(ResumeInspection())
    expect(verdict).to_have_attribute("data-verdict", "ok")
    runtime.execute(StopLine())
    expect(verdict).to_have_attribute("data-verdict", "stopped")
    expect(page.get_by_test_id("verdict-word")).to_have_text("STOPPED")
    assert css(page, "verdict", "background-color") not in (OK_GREEN, NG_RED)


def expect_line_buttons(page: Page, enabled: set[str]) -> None:
    for name in ("start", "stop", "pause", "resume"):
        button = page.get_by_test_id(f"btn-{name}")
        if name in enabled:
            expect(button).to_be_enabled()
        else:
            expect(button).to_be_disabled()


def test_line_buttons_follow_the_line_state(page: Page, panel: FakePanel) -> None:
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    expect(page.get_by_test_id("line-state")).to_have_text("running")
    expect_line_buttons(page, {"stop", "pause"})
    expect(page.get_by_test_id("line-needs-note")).to_be_hidden()
    expect(page.get_by_test_id("verdict-word")).to_have_text(re.compile(r"^(OK|NG)$"))

    page.get_by_test_id("btn-pause").click()
    expect(page.get_by_test_id("line-state")).to_have_text("paused")
    expect_line_buttons(page, {"stop", "resume"})
    expect(page.get_by_test_id("line-hint")).to_contain_text("Resume")

    page.get_by_test_id("btn-stop").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("line-state")).to_have_text("stopped")
    expect_line_buttons(page, {"start"})
    expect(page.get_by_test_id("verdict-word")).to_have_text("STOPPED")
    screenshot(page, "live-stopped.png")

    page.get_by_test_id("btn-start").click()
    expect(page.get_by_test_id("line-state")).to_have_text("running")
    expect_line_buttons(page, {"stop", "pause"})
    assert panel.runtime.state == "running"


def test_a_viewer_sees_disabled_controls_and_why(page: Page, panel: FakePanel) -> None:
    sign_in(page, panel.base_url, KEYS["viewer"], "viewer")
    expect(page.get_by_test_id("line-state")).to_have_text("running")
    for test_id in ("btn-start", "btn-stop", "btn-pause", "btn-resume", "threshold-input", "threshold-apply"):
        expect(page.get_by_test_id(test_id)).to_be_disabled()
    line_note = page.get_by_test_id("line-needs-note")
    expect(line_note).to_be_visible()
    expect(line_note).to_contain_text("Operator key needed")
    expect(page.get_by_test_id("threshold-needs-note")).to_be_visible()
    expect(page.get_by_test_id("threshold-needs-note")).to_contain_text("Operator key needed")
    # Disabled shows in more than a fade: no colour, a dashed edge.
    assert css(page, "btn-stop", "opacity") == "1"
    assert css(page, "btn-stop", "border-top-style") == "dashed"
    assert css(page, "btn-stop", "background-color") == "rgba(0, 0, 0, 0)"
    screenshot(page, "live-viewer.png")

    # A stopped line does not make Start usable for a viewer.
    panel.runtime.execute(StopLine())
    expect(page.get_by_test_id("line-state")).to_have_text("stopped")
    expect(page.get_by_test_id("btn-start")).to_be_disabled()
    expect(line_note).to_be_visible()


def test_roll_back_is_offered_only_when_there_is_a_model_to_go_back_to(page: Page, panel: FakePanel) -> None:
    admin = {"X-API-Key": KEYS["admin"]}
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    rollback, note = page.get_by_test_id("models-rollback"), page.get_by_test_id("models-rollback-note")
    expect(page.get_by_test_id("model-row")).to_have_count(1)
    expect(rollback).to_be_visible()
    expect(rollback).to_be_disabled()
    expect(note).to_have_text("Nothing to roll back to")

    data = fake_model_bytes("fake", "2")
    upload = httpx.post(
        f"{panel.base_url}/models",
        files={"file": ("fake-v2.onnx", data)},
        data={"sha256": hashlib.sha256(data).hexdigest()},
        headers=admin,
        timeout=10,
    )
    assert upload.status_code == 201, upload.text
    activated = httpx.post(
        f"{panel.base_url}/models/{upload.json()['id']}/activate", headers=admin, timeout=10
    )
    assert activated.json()["ok"], activated.text
    open_screen(page, "live")
    open_screen(page, "models")
    expect(page.get_by_test_id("model-row")).to_have_count(2)
    expect(rollback).to_be_enabled()
    expect(note).to_have_text("to fake 1")
    screenshot(page, "models-rollback.png")

    rollback.click()
    expect(page.get_by_test_id("confirm-text")).to_contain_text("fake 1")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("models-message")).to_contain_text(re.compile("rolled back", re.IGNORECASE))
    expect(rollback).to_be_disabled()
    expect(note).to_have_text("Nothing to roll back to")
