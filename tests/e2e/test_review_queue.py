"""The review queue keeps what the operator is doing (issue 22, item 2), in a real Chromium against a real
uvicorn: a comment typed into the last item survives new alerts (they wait behind a "new alerts" button)
and a reload; page 2 holds still while alerts arrive; the screen filters by review state and keeps the
filter; the tab's badge counts the current shift's unreviewed alerts.

The FakeRuntime here is never started: each `advance()` is exactly one alert, so the test decides when
alerts arrive and every wait is on a condition the panel shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.panel_helpers import FakePanel, screenshot, serve_panel, sign_in
from playwright.sync_api import Locator, Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import FakeRuntime

pytestmark = pytest.mark.e2e

COMMENT = "tab bent at the edge"
REFRESH_WAIT_MS = 20_000  # the screen refreshes every 5 s


@pytest.fixture
def quiet_panel(tmp_path: Path) -> Iterator[FakePanel]:
    runtime = FakeRuntime(defect_every=1)  # not started: alerts arrive only when the test says so
    with serve_panel(runtime, tmp_path) as panel:
        yield panel


def arrive(runtime: FakeRuntime, count: int) -> list[str]:
    """`count` new alerts; their ids, oldest first."""
    ids = []
    for _ in range(count):
        alert = runtime.advance()
        assert alert is not None
        ids.append(str(alert["alert_id"]))
    return ids


def get(base_url: str, path: str) -> Any:
    response = httpx.get(base_url + path, headers={"X-API-Key": KEYS["viewer"]}, timeout=10)
    response.raise_for_status()
    return response.json()


def shown_ids(page: Page) -> list[str]:
    items = page.get_by_test_id("review-item")
    return [str(items.nth(i).get_attribute("data-alert-id")) for i in range(items.count())]


def item(page: Page, alert_id: str) -> Locator:
    return page.locator(f"[data-testid=review-item][data-alert-id='{alert_id}']")


def test_a_comment_being_typed_survives_new_alerts_a_reload_and_page_2_holds_still(
    page: Page, quiet_panel: FakePanel
) -> None:
    runtime, base = quiet_panel.runtime, quiet_panel.base_url
    first = arrive(runtime, 22)
    newest_first = first[::-1]
    sign_in(page, base, KEYS["operator"], "operator", screen="review")
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(20)
    expect(page.get_by_test_id("review-page")).to_have_text("page 1 · 2 older")
    assert shown_ids(page) == newest_first[:20]

    # The badge counts this shift's unreviewed alerts, and says so.
    shift = get(base, "/alerts/reviews/summary?current_shift=true")
    badge = page.get_by_test_id("review-badge")
    expect(badge).to_have_text("22")
    expect(badge).to_have_attribute("title", f"Unreviewed alerts this shift ({shift['shift']['label']})")
    expect(page.get_by_test_id("review-badge-note")).to_contain_text("unreviewed alerts this shift")

    # A comment typed into the last item; then new alerts arrive.
    edited = newest_first[19]
    comment = item(page, edited).get_by_test_id("review-comment")
    comment.fill(COMMENT)
    new = arrive(runtime, 3)
    banner = page.get_by_test_id("review-new-alerts")
    expect(banner).to_have_attribute("data-count", "3", timeout=REFRESH_WAIT_MS)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("3 new alerts")
    # The list did not shift: same items, the comment still there, still being typed into.
    assert shown_ids(page) == newest_first[:20]
    expect(comment).to_have_value(COMMENT)
    expect(comment).to_be_focused()
    expect(badge).to_have_text("25", timeout=REFRESH_WAIT_MS)
    screenshot(page, "review-held.png")

    # The operator applies the banner: the new alerts show on top, the item being edited stays.
    banner.click()
    expect(items.first).to_have_attribute("data-alert-id", new[-1])
    expect(banner).to_be_hidden()
    assert shown_ids(page)[:3] == new[::-1]
    expect(item(page, edited).get_by_test_id("review-comment")).to_have_value(COMMENT)

    # A reload keeps the draft: the item is on page 2 now (page 1 is the newest 20 of 25).
    page.reload()
    expect(page.get_by_test_id("screen-review")).to_be_visible()
    expect(items.first).to_have_attribute("data-alert-id", new[-1])
    expect(items).to_have_count(20)
    page.get_by_test_id("review-next").click()
    expect(page.get_by_test_id("review-page")).to_have_text("page 2")
    page_two = first[4::-1]  # the five oldest, newest first
    expect(items).to_have_count(5)
    assert shown_ids(page) == page_two
    expect(item(page, edited).get_by_test_id("review-comment")).to_have_value(COMMENT)

    # Page 2 holds still while alerts arrive (offset paging would shift it by four).
    arrive(runtime, 4)
    expect(banner).to_have_attribute("data-count", "4", timeout=REFRESH_WAIT_MS)
    expect(banner).to_be_visible()
    assert shown_ids(page) == page_two
    expect(page.get_by_test_id("review-page")).to_have_text("page 2")

    # The kept comment is saved with the review.
    item(page, edited).get_by_test_id("review-confirm").click()
    expect(item(page, edited)).to_have_count(0)  # it leaves the unreviewed view
    confirmed = get(base, "/alerts?review_state=confirmed")["items"]
    assert [(a["alert_id"], a["review"]["comment"]) for a in confirmed] == [(edited, COMMENT)]
    expect(badge).to_have_text("28", timeout=REFRESH_WAIT_MS)  # 29 alerts this shift, one reviewed


def test_the_queue_filters_by_review_state_and_keeps_the_filter(page: Page, quiet_panel: FakePanel) -> None:
    runtime, base = quiet_panel.runtime, quiet_panel.base_url
    ids = arrive(runtime, 6)
    sign_in(page, base, KEYS["operator"], "operator", screen="review")
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(6)
    states = page.get_by_test_id("review-filter")
    expect(states).to_have_value("unreviewed")

    # Nothing confirmed yet.
    states.select_option("confirmed")
    expect(page.get_by_test_id("review-empty")).to_be_visible()
    expect(page.get_by_test_id("review-empty")).to_have_text("No alerts in this view.")
    expect(items).to_have_count(0)

    # In "all", a review stays in view and shows its new state.
    states.select_option("all")
    expect(items).to_have_count(6)
    expect(item(page, ids[0]).get_by_test_id("review-state")).to_have_text("Unreviewed")
    item(page, ids[0]).get_by_test_id("review-comment").fill("sticker on the tray")
    item(page, ids[0]).get_by_test_id("review-false-alarm").click()
    expect(item(page, ids[0]).get_by_test_id("review-state")).to_contain_text("False alarm · by operator")
    expect(item(page, ids[0])).to_have_attribute("data-state", "false_alarm")
    expect(item(page, ids[0]).get_by_test_id("review-comment")).to_have_value("sticker on the tray")
    item(page, ids[5]).get_by_test_id("review-confirm").click()
    expect(item(page, ids[5])).to_have_attribute("data-state", "confirmed")
    expect(items).to_have_count(6)

    states.select_option("false_alarm")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-alert-id", ids[0])
    states.select_option("confirmed")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-alert-id", ids[5])
    screenshot(page, "review-confirmed.png")

    # The filter is kept across a reload.
    page.reload()
    expect(page.get_by_test_id("screen-review")).to_be_visible()
    expect(states).to_have_value("confirmed")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-alert-id", ids[5])

    states.select_option("unreviewed")
    expect(items).to_have_count(4)
    assert shown_ids(page) == ids[4:0:-1]
    expect(page.get_by_test_id("review-badge")).to_have_text("4", timeout=REFRESH_WAIT_MS)
