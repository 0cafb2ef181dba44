"""The Models screen's Shadow card in a real Chromium against a real uvicorn around the FakeRuntime (its
real ShadowRun, judging with a stand-in candidate that calls every third frame NG while the line calls every
fifth): an admin runs a second model in the shadow for a few parts, the test feeds the camera frame by
frame, the card ends "done" with the agreement, both kinds of disagreement and the parts they disagreed on
(with the candidate's view), a second start is refused with the reason in the card, and Promote activates
the candidate.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from e2e.panel_helpers import open_screen, screenshot, sign_in
from fixtures_mqtt import wait_until
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import SHADOW_NG_EVERY, FakeRuntime, fake_model_bytes

pytestmark = pytest.mark.e2e

PARTS = 6  # any 6 frames in a row hold two multiples of 3, at most one of 15: at least one disagreement
BLOB_URL = re.compile(r"^blob:")  # a view fetched with the key header, shown from an object URL


def compared(runtime: FakeRuntime) -> int:
    status = runtime.shadow_status()
    return status.compared if status is not None else 0


def feed_part(runtime: FakeRuntime) -> int:
    """One frame from the camera, and wait until the candidate has judged it; return its frame id."""
    before = compared(runtime)
    runtime.advance()
    wait_until(lambda: compared(runtime) == before + 1, 10.0, f"part {before + 1} compared")
    return runtime.frames


def test_admin_runs_a_model_in_the_shadow_sees_where_it_disagrees_and_promotes_it(
    page: Page, fake_panel: tuple[str, FakeRuntime]
) -> None:
    base_url, runtime = fake_panel
    runtime.stop()  # no background frames: this test feeds the camera one part at a time
    data = fake_model_bytes("fake", "2")
    candidate = runtime.models.register(data, "x.onnx", hashlib.sha256(data).hexdigest()).id
    active = runtime.models.active_id

    sign_in(page, base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    card = page.get_by_test_id("shadow-card")
    expect(card).to_be_visible()
    expect(page.get_by_test_id("shadow-empty")).to_be_visible()  # GET /shadow: null, none run yet
    expect(page.get_by_test_id("shadow-job")).to_be_hidden()
    expect(page.get_by_test_id("shadow-parts")).to_have_value("200")
    active_row = page.locator(f"[data-testid=model-row][data-model-id='{active}']")
    candidate_row = page.locator(f"[data-testid=model-row][data-model-id='{candidate}']")
    expect(active_row.get_by_test_id("model-shadow")).to_have_count(0)  # only inactive models

    page.get_by_test_id("shadow-parts").fill(str(PARTS))
    candidate_row.get_by_test_id("model-shadow").click()
    message = page.get_by_test_id("shadow-message")
    expect(message).to_contain_text(f"judges the next {PARTS} parts in the shadow")
    expect(message).to_have_class("message ok")
    state = page.get_by_test_id("shadow-state")
    progress = page.get_by_test_id("shadow-progress-text")
    expect(state).to_have_text("running")
    expect(progress).to_have_text(f"0 of {PARTS} compared · running")
    expect(page.get_by_test_id("shadow-title")).to_contain_text(f"Candidate fake 2 ({candidate})")
    expect(page.get_by_test_id("shadow-stop")).to_be_visible()
    expect(page.get_by_test_id("shadow-promote")).to_be_hidden()

    # A second start while it runs: refused (409), the runtime's reason in the card.
    candidate_row.get_by_test_id("model-shadow").click()
    expect(message).to_contain_text("Refused")
    expect(message).to_contain_text("is in the shadow; stop it first")
    expect(message).to_have_class("message bad")
    expect(state).to_have_text("running")

    frames = [feed_part(runtime) for _ in range(PARTS)]
    line_ng = {f for f in frames if f % runtime.defect_every == 0}
    candidate_ng = {f for f in frames if f % SHADOW_NG_EVERY == 0}
    disagreed = sorted(line_ng ^ candidate_ng, reverse=True)  # most recent first
    assert disagreed
    agreed = PARTS - len(disagreed)

    expect(state).to_have_text("done")
    expect(progress).to_have_text(f"{PARTS} of {PARTS} compared · done")
    expect(page.get_by_test_id("shadow-progress")).to_have_attribute("max", str(PARTS))
    expect(page.get_by_test_id("shadow-agreement")).to_have_text(
        f"{100 * agreed / PARTS:.1f} % ({agreed} of {PARTS})"
    )
    expect(page.get_by_test_id("shadow-candidate-ng")).to_have_text(str(len(candidate_ng - line_ng)))
    expect(page.get_by_test_id("shadow-candidate-ok")).to_have_text(str(len(line_ng - candidate_ng)))
    expect(page.get_by_test_id("shadow-stop")).to_be_hidden()

    items = page.get_by_test_id("shadow-disagreement")
    expect(items).to_have_count(len(disagreed))
    for item, frame_id in zip(items.all(), disagreed, strict=True):
        expect(item).to_have_attribute("data-frame-id", str(frame_id))
        expect(item.get_by_test_id("shadow-frame")).to_have_text(f"Frame {frame_id}")
        line_verdict = "NG" if frame_id in line_ng else "OK"
        candidate_verdict = "NG" if frame_id in candidate_ng else "OK"
        expect(item.get_by_test_id("shadow-active")).to_contain_text(f"Line: {line_verdict}")
        expect(item.get_by_test_id("shadow-candidate")).to_contain_text(f"Candidate: {candidate_verdict}")
        expect(item.get_by_test_id("shadow-candidate")).to_contain_text("threshold 0.6")
        thumb = item.get_by_test_id("shadow-thumb")
        expect(thumb).to_have_attribute("src", BLOB_URL)
        expect(thumb).to_be_visible()
    screenshot(page, "shadow.png")

    # Promote: the ordinary activation, behind the same confirmation.
    promote = page.get_by_test_id("shadow-promote")
    expect(promote).to_be_visible()
    promote.click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("confirm-text")).to_contain_text(f"fake 2 ({candidate})")
    expect(page.get_by_test_id("confirm-text")).to_contain_text(
        f"agreed with the line on {agreed} of {PARTS}"
    )
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(message).to_contain_text("Promoted fake 2")
    expect(message).to_have_class("message ok")
    expect(candidate_row.get_by_test_id("model-active")).to_be_visible()
    expect(promote).to_be_hidden()
    expect(page.get_by_test_id("shadow-title")).to_contain_text("now active")
    assert runtime.models.active_id == candidate


def test_admin_stops_a_shadow_early_and_a_viewer_only_watches(
    page: Page, fake_panel: tuple[str, FakeRuntime]
) -> None:
    base_url, runtime = fake_panel
    runtime.stop()
    data = fake_model_bytes("fake", "3")
    candidate = runtime.models.register(data, "x.onnx", hashlib.sha256(data).hexdigest()).id

    sign_in(page, base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    page.locator(f"[data-testid=model-row][data-model-id='{candidate}']").get_by_test_id(
        "model-shadow"
    ).click()  # the default: 200 parts
    state = page.get_by_test_id("shadow-state")
    expect(state).to_have_text("running")
    feed_part(runtime)
    expect(page.get_by_test_id("shadow-progress-text")).to_have_text("1 of 200 compared · running")
    page.get_by_test_id("shadow-stop").click()
    expect(page.get_by_test_id("shadow-message")).to_contain_text("stopped")
    expect(state).to_have_text("stopped")
    expect(page.get_by_test_id("shadow-stop")).to_be_hidden()
    expect(page.get_by_test_id("shadow-promote")).to_be_visible()
    status = runtime.shadow_status()
    assert status is not None and (status.state, status.compared) == ("stopped", 1)

    page.get_by_test_id("logout").click()
    sign_in(page, base_url, KEYS["viewer"], "viewer")
    open_screen(page, "models")
    expect(state).to_have_text("stopped")
    expect(page.get_by_test_id("shadow-parts")).to_be_hidden()
    expect(page.get_by_test_id("model-shadow")).to_have_count(0)
    expect(page.get_by_test_id("shadow-promote")).to_be_hidden()
