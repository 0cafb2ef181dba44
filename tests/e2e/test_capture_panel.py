"""The Recipes screen's "Learn a new product" card in a real Chromium against a real uvicorn around the
FakeRuntime (its real ProductCapture): an operator captures 3 parts, the test feeds the camera frame by
frame, strikes one image on the contact sheet, the capture keeps one more and ends "done" with 3 kept and
the `edgeinspect train` command; starting the same product again is refused with the reason in the card.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from e2e.panel_helpers import open_screen, screenshot, sign_in
from fixtures_mqtt import wait_until
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime

pytestmark = pytest.mark.e2e

PRODUCT = "bracket_C"
BLOB_URL = re.compile(r"^blob:")  # a thumbnail fetched with the key header, shown from an object URL


def captured(runtime: FakeRuntime) -> int:
    status = runtime.capture_status()
    return status.captured if status is not None else 0


def feed_part(runtime: FakeRuntime) -> None:
    """One frame from the camera, and wait until the capture's writer has saved it (every_n=1)."""
    before = captured(runtime)
    runtime.advance()  # judged OK or NG, the frame is captured: the operator strikes bad ones
    wait_until(lambda: captured(runtime) == before + 1, 10.0, f"image {before} saved")


def test_an_operator_captures_a_product_strikes_one_image_and_gets_the_train_command(
    page: Page, fake_panel: tuple[str, FakeRuntime]
) -> None:
    base_url, runtime = fake_panel
    runtime.stop()  # no background frames: this test feeds the camera one part at a time

    sign_in(page, base_url, KEYS["operator"], "operator")
    open_screen(page, "recipes")
    card = page.get_by_test_id("capture-card")
    expect(card).to_be_visible()
    expect(page.get_by_test_id("capture-job")).to_be_hidden()  # GET /capture: null, nothing captured yet
    expect(page.get_by_test_id("capture-count")).to_have_value("100")
    expect(page.get_by_test_id("capture-every-n")).to_have_value("1")
    expect(page.get_by_test_id("capture-cancel")).to_be_disabled()

    page.get_by_test_id("capture-product").fill(PRODUCT)
    page.get_by_test_id("capture-count").fill("3")
    page.get_by_test_id("capture-start").click()
    message = page.get_by_test_id("capture-message")
    expect(message).to_contain_text(f"Capturing 3 parts of {PRODUCT}")
    expect(message).to_have_class("message ok")
    state = page.get_by_test_id("capture-state")
    progress = page.get_by_test_id("capture-progress-text")
    expect(state).to_have_text("running")
    expect(progress).to_have_text("0 of 3 kept · running")
    expect(page.get_by_test_id("capture-cancel")).to_be_enabled()
    expect(page.get_by_test_id("capture-done")).to_be_hidden()

    # Two parts pass the camera: the contact sheet shows them (polled), with their thumbnails loaded.
    images = page.get_by_test_id("capture-image")
    feed_part(runtime)
    feed_part(runtime)
    expect(images).to_have_count(2)
    expect(progress).to_have_text("2 of 3 kept · running")
    expect(page.get_by_test_id("capture-progress")).to_have_attribute("max", "3")
    for thumb in page.get_by_test_id("capture-thumb").all():
        expect(thumb).to_have_attribute("src", BLOB_URL)
    expect(images.first).to_have_attribute("data-image", "0000.png")

    # The first capture was bad (a hand in the view): strike it; the capture keeps one more instead.
    page.locator("[data-testid=capture-image][data-image='0000.png']").get_by_test_id(
        "capture-strike"
    ).click()
    expect(message).to_contain_text("Image 0000.png struck")
    expect(page.locator("[data-testid=capture-image][data-image='0000.png']")).to_have_count(0)
    expect(images).to_have_count(1)
    expect(progress).to_have_text("1 of 3 kept · running")
    expect(page.get_by_test_id("capture-figures")).to_contain_text("2 captured · 1 struck")

    feed_part(runtime)
    feed_part(runtime)
    expect(state).to_have_text("done")
    expect(progress).to_have_text("3 of 3 kept · done")
    expect(images).to_have_count(3)
    expect(images.first).to_have_attribute("data-image", "0001.png")
    expect(page.get_by_test_id("capture-cancel")).to_be_disabled()

    status = runtime.capture_status()
    assert status is not None
    assert (status.state, status.kept, status.struck, status.captured) == ("done", 3, 1, 4)
    assert status.images == ["0001.png", "0002.png", "0003.png"]
    folder = Path(status.folder)
    assert folder == runtime.datasets / PRODUCT / "train" / "good"
    assert sorted(p.name for p in folder.iterdir()) == status.images

    done = page.get_by_test_id("capture-done")
    expect(done).to_be_visible()
    expect(page.get_by_test_id("capture-done-text")).to_contain_text(str(folder))
    expect(page.get_by_test_id("capture-train-command")).to_have_text(
        f"edgeinspect train --data {runtime.datasets} --category {PRODUCT}"
    )
    screenshot(page, "capture.png")

    # The same product again: its folder holds images, so the runtime refuses; the reason is in the card.
    page.get_by_test_id("capture-start").click()
    expect(message).to_contain_text("Refused")
    expect(message).to_contain_text("already holds images")
    expect(message).to_have_class("message bad")
    expect(state).to_have_text("done")
    final = runtime.capture_status()
    assert final is not None and final.struck == 1 and final.kept == 3
