"""The Models screen's Teach card in a real Chromium against a real uvicorn around the FakeRuntime (the real
jobs, a fake learner): teach the confirmed defects, watch the progress, read the before/after figures under
readable labels, and go to the candidate, which is not active. A viewer does not see the card.

Each test keeps a screenshot under tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from e2e.panel_helpers import FakePanel, open_screen, screenshot, sign_in
from fixtures_mqtt import wait_until
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS

pytestmark = pytest.mark.e2e


def _call(panel: FakePanel, method: str, path: str, role: str = "viewer", **kwargs: Any) -> Any:
    response = httpx.request(
        method, panel.base_url + path, headers={"X-API-Key": KEYS[role]}, timeout=10, **kwargs
    )
    response.raise_for_status()
    return response.json()


def _review_alerts(panel: FakePanel, confirmed: int, false_alarms: int) -> None:
    """The first alerts the fake line raises, reviewed by an operator through the API."""

    def enough() -> bool:
        return bool(_call(panel, "GET", "/alerts?limit=50")["total"] >= confirmed + false_alarms)

    wait_until(enough, timeout_s=30, what="alerts from the fake line")
    items = _call(panel, "GET", "/alerts?limit=50")["items"][: confirmed + false_alarms]
    for index, alert in enumerate(items):
        state = "confirmed" if index < confirmed else "false_alarm"
        _call(panel, "POST", f"/alerts/{alert['alert_id']}/review", "operator", json={"state": state})


def test_teach_confirmed_defects_from_the_models_screen(page: Page, panel: FakePanel) -> None:
    _review_alerts(panel, confirmed=6, false_alarms=1)
    parent = _call(panel, "GET", "/status")["model"]["id"]
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    card = page.get_by_test_id("teach-card")
    expect(card).to_be_visible()
    expect(page.get_by_test_id("teach-counts")).to_contain_text("6 confirmed defects")
    expect(page.get_by_test_id("teach-counts")).to_contain_text("1 false alarm not yet taught")
    expect(page.get_by_test_id("teach-normal")).to_be_visible()  # offered side by side

    page.get_by_test_id("teach-defects").click()
    expect(page.get_by_test_id("confirm-text")).to_contain_text("every fifth is kept out")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("teach-job")).to_be_visible()
    expect(page.get_by_test_id("teach-title")).to_have_text("Teach confirmed defects")
    expect(page.get_by_test_id("teach-stage")).to_contain_text(
        "100% · done: candidate registered, not active"
    )
    expect(page.get_by_test_id("teach-summary")).to_contain_text("Taught 5 confirmed defects")
    expect(page.get_by_test_id("teach-summary")).to_contain_text("1 held out to test it")

    def figure(key: str) -> Any:
        return page.locator(f"[data-testid=teach-figure][data-key='{key}']")

    expect(figure("detection_rate_check")).to_contain_text("Confirmed defects caught (held out)")
    expect(figure("detection_rate_check")).to_contain_text("100%")
    expect(figure("false_reject_rate_good")).to_contain_text("False rejects on good parts")
    expect(figure("false_reject_rate_good").locator("td").first).to_have_text("0%")
    expect(figure("threshold")).to_contain_text("Threshold")
    expect(figure("threshold").locator("td").first).to_have_text("0.5")
    expect(page.get_by_test_id("teach-figures")).not_to_contain_text("detection_rate")  # no raw keys
    expect(page.get_by_test_id("teach-message")).to_contain_text("registered, not active")

    # The candidate: marked in the list, selected for comparison with the active model, not active.
    jobs = [e for e in panel.audit.query(limit=20)[1] if e["action"] == "teach_defects_done"]
    assert len(jobs) == 1 and jobs[0]["ok"]
    candidate = jobs[0]["new_value"]["model_id"]
    page.get_by_test_id("teach-show-model").click()
    row = page.locator(f"[data-testid=model-row][data-model-id='{candidate}']")
    expect(row).to_have_class("candidate")
    expect(row.get_by_test_id("model-activate")).to_be_visible()  # activation stays an explicit click
    expect(row.get_by_test_id("model-select")).to_be_checked()
    expect(row.get_by_test_id("model-figures")).to_contain_text("threshold: 0.5 → 0.5")
    assert _call(panel, "GET", "/status")["model"]["id"] == parent
    screenshot(page, "teach-defects.png")

    # Teaching defects marks nothing: the counts stay as they were.
    expect(page.get_by_test_id("teach-counts")).to_contain_text("6 confirmed defects")


def test_a_refusal_shows_the_reason_and_a_viewer_sees_no_teach_card(page: Page, panel: FakePanel) -> None:
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    page.get_by_test_id("teach-defects").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("teach-message")).to_contain_text("Refused: no alerts reviewed as confirmed")
    expect(page.get_by_test_id("teach-job")).to_be_hidden()

    page.get_by_test_id("logout").click()
    sign_in(page, panel.base_url, KEYS["viewer"], "viewer")
    open_screen(page, "models")
    expect(page.get_by_test_id("teach-card")).to_be_hidden()


def test_teach_normal_beside_it_shows_its_own_figures(page: Page, panel: FakePanel) -> None:
    _review_alerts(panel, confirmed=1, false_alarms=2)
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    expect(page.get_by_test_id("teach-counts")).to_have_text(
        "1 confirmed defect · 2 false alarms not yet taught"
    )
    page.get_by_test_id("teach-normal").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("teach-title")).to_have_text("Teach normal: reviewed false alarms")
    taught = page.locator("[data-testid=teach-figure][data-key='false_reject_rate_taught']")
    expect(taught).to_contain_text("Taught false alarms still rejected")
    expect(taught.locator("td")).to_have_text(["100%", "0%"])
    expect(page.get_by_test_id("teach-summary")).to_contain_text("Taught 2 false alarms as normal")
    expect(page.get_by_test_id("teach-counts")).to_have_text(
        "1 confirmed defect · 0 false alarms not yet taught"
    )
