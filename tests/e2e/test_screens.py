"""The panel's screens in a real Chromium against a real uvicorn: trends, models, audit, ROI, archive,
review, and what a viewer may not touch. The last test runs against the real `edgeinspect run`.

Each test keeps a screenshot under tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.panel_helpers import FakePanel, confirm, open_screen, screenshot, sign_in, wait_for_js
from fixtures_mqtt import wait_until
from playwright.sync_api import Page, Request, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import fake_model_bytes

from device.station.commands import PauseInspection
from vision.teach import BeforeAfter, TeachReport

pytestmark = pytest.mark.e2e


def get(base_url: str, path: str, role: str = "viewer", keys: dict[str, str] = KEYS) -> Any:
    response = httpx.get(base_url + path, headers={"X-API-Key": keys[role]}, timeout=10)
    response.raise_for_status()
    return response.json()


def seed_history(panel: FakePanel, hours: float = 7.5) -> int:
    """A working day in the real trend recorder, ending a minute ago: a part every 10 s, defect rate and
    latency drifting. The fake is paused first, so the figures hold still while the test reads them."""
    panel.runtime.execute(PauseInspection())
    start = time.time() - 60 - hours * 3600
    parts = int(hours * 360)
    for i in range(parts):
        ts = start + 10 * i
        hour = (ts - start) / 3600
        is_defect = i % (25 if hour < hours / 2 else 9) == 0
        score = 0.9 + 0.05 * (i % 7) if is_defect else 0.08 + 0.03 * (i % 11)
        panel.runtime.trends.record(ts, score, is_defect, 11.0 + 4 * hour + (i % 13))
    return parts


# ---- trends ------------------------------------------------------------------------------------------
def test_trend_charts_show_the_history_and_the_threshold(page: Page, panel: FakePanel) -> None:
    seeded = seed_history(panel)
    sign_in(page, panel.base_url, KEYS["viewer"], "viewer")
    open_screen(page, "trends")
    for chart in ("chart-defect-rate", "chart-scores", "chart-latency", "chart-shifts"):
        expect(page.get_by_test_id(chart).locator("canvas")).to_be_visible()
    expect(page.get_by_test_id("trend-window-8h")).to_have_attribute("aria-pressed", "true")

    api = get(panel.base_url, "/trends?window=8h")
    expect(page.get_by_test_id("trend-frames")).to_have_text(str(api["totals"]["frames"]))
    assert api["totals"]["frames"] >= seeded  # the seeded day, plus what the fake judged before the pause
    line = page.get_by_test_id("threshold-line")
    expect(line).to_be_visible()
    expect(line).to_contain_text("threshold 0.5")
    # The line sits where uPlot puts 0.5 on the histogram's log axis: between the OK and NG humps.
    plot = page.get_by_test_id("chart-scores").locator(".u-over").bounding_box()
    at = line.bounding_box()
    assert plot is not None and at is not None
    assert plot["x"] < at["x"] < plot["x"] + plot["width"]
    assert page.get_by_test_id("shift-row").count() >= 2  # 8 hours span at least two shifts
    screenshot(page, "trends.png")

    page.get_by_test_id("trend-window-1h").click()
    hour = get(panel.base_url, "/trends?window=1h")["totals"]["frames"]
    expect(page.get_by_test_id("trend-frames")).to_have_text(str(hour), timeout=5_000)
    assert hour < api["totals"]["frames"]


# ---- models -----------------------------------------------------------------------------------------
def test_models_upload_compare_activate_and_roll_back(page: Page, panel: FakePanel, tmp_path: Path) -> None:
    data = fake_model_bytes("fake", "2")
    model_file = tmp_path / "fake-v2.onnx"
    model_file.write_bytes(data)
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "models")
    expect(page.get_by_test_id("model-row")).to_have_count(1)

    # A wrong sha256 is refused with the reason and nothing is registered.
    page.get_by_test_id("upload-file").set_input_files(str(model_file))
    sha = page.get_by_test_id("upload-sha")
    expect(sha).to_have_value(hashlib.sha256(data).hexdigest())  # computed in the browser
    sha.fill("0" * 64)
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("models-message")).to_contain_text("sha256 mismatch")
    expect(page.get_by_test_id("model-row")).to_have_count(1)

    sha.fill(hashlib.sha256(data).hexdigest().upper())  # as pasted from a supplier's note
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("models-message")).to_contain_text("Uploaded fake 2")
    expect(page.get_by_test_id("model-row")).to_have_count(2)

    for box in page.get_by_test_id("model-select").all():
        box.check()
    page.get_by_test_id("models-compare").click()
    expect(page.get_by_test_id("compare-card")).to_be_visible()
    version = page.locator("[data-testid=compare-row][data-key=version]")
    expect(version).to_have_class("differs")
    expect(page.locator("[data-testid=compare-row][data-key=active]")).to_contain_text("yes")

    new_id = next(m["id"] for m in get(panel.base_url, "/models") if m["version"] == "2")
    new_row = page.locator(f"[data-testid=model-row][data-model-id='{new_id}']")
    new_row.get_by_test_id("model-activate").click()
    confirm(page, new_id)
    expect(new_row.get_by_test_id("model-active")).to_be_visible()
    assert get(panel.base_url, "/status")["model"]["id"] == new_id
    screenshot(page, "models.png")

    page.get_by_test_id("models-rollback").click()
    confirm(page, "previously active")
    expect(new_row.get_by_test_id("model-activate")).to_be_visible()
    assert get(panel.base_url, "/status")["model"]["id"] != new_id


def test_a_taught_models_before_and_after_figures_side_by_side(page: Page, panel: FakePanel) -> None:
    data = fake_model_bytes("fake", "3")
    report = TeachReport(
        parent_version="1", model_version="3", taught_examples=4, bank_entries_added=37, bank_size_before=512,
        bank_size_after=549, uncovered_patches=0, good_images_calibration=20, good_images_evaluation=20,
        confirmed_defects=2, threshold=BeforeAfter(before=0.5, after=0.55), threshold_recalibrated=True,
        false_reject_rate_good=BeforeAfter(before=0.05, after=0.05),
        false_reject_rate_taught=BeforeAfter(before=1.0, after=0.0),
        defect_auroc=None, defect_detection_rate=BeforeAfter(before=1.0, after=1.0),
        notes=["two defects only"],
    )  # fmt: skip
    taught = panel.runtime.models.register(
        data, "fake-3.onnx", hashlib.sha256(data).hexdigest(), teach=report
    )
    sign_in(page, panel.base_url, KEYS["viewer"], "viewer")
    open_screen(page, "models")
    row = page.locator(f"[data-testid=model-row][data-model-id='{taught.id}']")
    expect(row.get_by_test_id("model-figures")).to_contain_text("threshold: 0.5 → 0.55")
    for box in page.get_by_test_id("model-select").all():
        box.check()
    page.get_by_test_id("models-compare").click()
    taught_rate = page.locator("[data-testid=compare-row][data-key='teach.false_reject_rate_taught']")
    expect(taught_rate).to_contain_text("1 → 0")
    expect(taught_rate).to_have_class("differs")  # the untaught model shows no figure there
    expect(page.locator("[data-testid=compare-row][data-key='teach.notes']")).to_contain_text(
        "two defects only"
    )
    not_measured = page.locator("[data-testid=compare-row][data-key='teach.defect_auroc']")
    expect(not_measured).to_contain_text("—")  # null in the report: not measurable, shown as such
    screenshot(page, "models-compare.png")


# ---- audit ------------------------------------------------------------------------------------------
def test_audit_log_pages_for_the_admin(page: Page, panel: FakePanel) -> None:
    for i in range(30):
        panel.audit.record(
            actor="operator", role="operator", action="set_threshold", target="POST /inspection/threshold",
            ok=i != 29, old_value=0.5, new_value=0.5 + i / 100, message="" if i != 29 else "out of range",
        )  # fmt: skip
    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    open_screen(page, "audit")
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(25)
    expect(page.get_by_test_id("audit-page")).to_have_text("1–25 of 30")
    expect(rows.first).to_contain_text("refused: out of range")  # newest first
    expect(rows.first).to_contain_text("0.79")
    screenshot(page, "audit.png")
    page.get_by_test_id("audit-next").click()
    expect(rows).to_have_count(5)
    expect(page.get_by_test_id("audit-page")).to_have_text("26–30 of 30")
    expect(page.get_by_test_id("audit-next")).to_be_disabled()


# ---- ROI --------------------------------------------------------------------------------------------
def drag_over(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag across the ROI stage between two points given as fractions of its shown size."""
    stage = page.get_by_test_id("roi-stage")
    wait_for_js(page, "document.getElementById('roi-frame').naturalWidth > 0")
    box = stage.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=8)
    page.mouse.up()


def apply_drawn_region(page: Page) -> str:
    """Wait for the drawn region's preview, then apply it: "Apply region" when the preview allows it,
    "Apply anyway" (force) when it warns. Returns the preview's verdict."""
    preview = page.get_by_test_id("roi-preview")
    expect(preview).to_have_attribute("data-verdict", re.compile("^(ok|warn|unknown)$"), timeout=60_000)
    verdict = preview.get_attribute("data-verdict") or ""
    page.get_by_test_id("roi-force" if verdict == "warn" else "roi-apply").click()
    confirm(page)
    return verdict


def assert_roi(actual: dict[str, int] | None, expected: tuple[int, int, int, int], tol: int = 1) -> None:
    assert actual is not None
    got = (actual["x"], actual["y"], actual["width"], actual["height"])
    assert all(abs(a - e) <= tol for a, e in zip(got, expected, strict=True)), (got, expected)


def test_roi_drawn_on_the_frame_becomes_the_roi(page: Page, panel: FakePanel) -> None:
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    open_screen(page, "roi")
    expect(page.get_by_test_id("roi-current")).to_have_text("whole frame")
    expect(page.get_by_test_id("roi-apply")).to_be_disabled()
    drag_over(page, (0.25, 0.2), (0.75, 0.7))  # the fake's frames are 160 x 160 source pixels
    expect(page.get_by_test_id("roi-rect")).to_be_visible()
    expect(page.get_by_test_id("roi-draft")).to_contain_text("new region")
    screenshot(page, "roi.png")
    page.get_by_test_id("roi-apply").click()
    confirm(page, "Inspect only")
    wait_until(lambda: get(panel.base_url, "/status")["roi"] is not None, what="ROI set")
    assert_roi(get(panel.base_url, "/status")["roi"], (40, 32, 80, 80))
    expect(page.get_by_test_id("roi-current")).to_contain_text("80 × 80")

    page.get_by_test_id("roi-clear").click()
    confirm(page, "whole camera frame")
    wait_until(lambda: get(panel.base_url, "/status")["roi"] is None, what="ROI cleared")
    expect(page.get_by_test_id("roi-current")).to_have_text("whole frame")
    assert panel.runtime.commands[-1][0].command == "clear_roi"


def test_roi_preview_warns_before_applying_and_needs_apply_anyway(page: Page, panel: FakePanel) -> None:
    panel.runtime.preview_rejects = panel.runtime.zooming_roi_rejects  # small regions zoom the model in
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    open_screen(page, "roi")
    drag_over(page, (0.4, 0.4), (0.6, 0.6))  # 32 x 32 of 160 x 160
    preview = page.get_by_test_id("roi-preview")
    expect(preview).to_have_attribute("data-verdict", "warn")
    expect(page.get_by_test_id("roi-preview-verdict")).to_contain_text("Warning")
    expect(page.get_by_test_id("roi-preview-share-now")).to_have_text("5 %")
    expect(page.get_by_test_id("roi-preview-share-new")).to_have_text("90 %")
    expect(page.get_by_test_id("roi-preview-frames")).to_contain_text("20 recent frames")
    expect(page.get_by_test_id("roi-preview-rebuild")).to_contain_text("edgeinspect train")
    expect(page.get_by_test_id("roi-apply")).to_be_disabled()
    screenshot(page, "roi-preview-warn.png")
    page.get_by_test_id("roi-force").click()
    confirm(page, "90 % of recent parts would be rejected")
    wait_until(lambda: get(panel.base_url, "/status")["roi"] is not None, what="ROI forced")
    command = panel.runtime.commands[-1][0]
    assert command.command == "set_roi" and command.model_dump()["force"] is True
    expect(page.get_by_test_id("roi-preview")).to_be_hidden()
    expect(page.get_by_test_id("roi-hint")).to_contain_text("shown: the current region", timeout=20_000)

    page.get_by_test_id("roi-clear").click()
    confirm(page, "whole camera frame")
    wait_until(lambda: get(panel.base_url, "/status")["roi"] is None, what="ROI cleared")
    expect(page.get_by_test_id("roi-hint")).not_to_contain_text("current region", timeout=20_000)
    drag_over(page, (0.02, 0.02), (0.98, 0.8))  # most of the frame: the preview is ok, apply as usual
    expect(page.get_by_test_id("roi-preview")).to_have_attribute("data-verdict", "ok")
    expect(page.get_by_test_id("roi-force")).to_be_hidden()
    page.get_by_test_id("roi-apply").click()
    confirm(page, "Inspect only")
    wait_until(lambda: get(panel.base_url, "/status")["roi"] is not None, what="ROI set")


# ---- archive ----------------------------------------------------------------------------------------
def test_archive_filters_views_downloads_and_exports(page: Page, panel: FakePanel) -> None:
    wait_until(
        lambda: get(panel.base_url, "/archive?verdict=NG")["total"] >= 3, 20, "three NG parts archived"
    )
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    open_screen(page, "archive")
    expect(page.get_by_test_id("archive-item").first).to_be_visible()
    page.get_by_test_id("archive-verdict").select_option("NG")
    page.get_by_test_id("archive-search").click()
    expect(page.locator(".archive-item.verdict-OK")).to_have_count(0)
    items = page.get_by_test_id("archive-item")
    expect(items.first).to_be_visible()
    wait_for_js(
        page,
        "Array.from(document.querySelectorAll('[data-testid=archive-image]')).every(i => i.naturalWidth > 0)",
    )
    screenshot(page, "archive.png")

    items.first.get_by_test_id("archive-image").click()
    expect(page.get_by_test_id("archive-viewer")).to_be_visible()
    wait_for_js(page, "document.getElementById('archive-viewer-image').naturalWidth > 0")
    page.get_by_test_id("archive-viewer-close").click()

    with page.expect_download() as download_info:
        items.first.get_by_test_id("archive-download").click()
    assert download_info.value.suggested_filename.endswith("_NG.jpg")

    items.nth(0).get_by_test_id("archive-select").check()
    items.nth(1).get_by_test_id("archive-select").check()
    expect(page.get_by_test_id("archive-export")).to_have_text("Export 2 (ZIP)")
    page.get_by_test_id("archive-unreviewed").select_option("good")  # nobody reviewed these two
    with page.expect_download() as export_info:
        page.get_by_test_id("archive-export").click()
        confirm(page, "Export 2")
    archive = zipfile.ZipFile(io.BytesIO(Path(export_info.value.path()).read_bytes()))
    images = [n for n in archive.namelist() if n.endswith(".jpg") and "/test/good/" in n]
    assert len(images) == 2
    expect(page.get_by_test_id("archive-message")).to_have_text("Exported 2 image(s): test/good 2.")
    audit = get(panel.base_url, "/audit", "admin")["items"][0]
    assert audit["action"] == "archive_export" and audit["ok"]


def test_archive_selection_outlives_searches_and_exports_exactly_it(page: Page, panel: FakePanel) -> None:
    def archived(verdict: str) -> int:
        return int(get(panel.base_url, f"/archive?verdict={verdict}")["total"])

    wait_until(lambda: archived("NG") >= 2 and archived("OK") >= 2, 20, "two NG and two OK parts archived")
    panel.runtime.execute(PauseInspection())  # the archive holds still while the test reads it
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    open_screen(page, "archive")
    selection = page.get_by_test_id("archive-selection")
    expect(selection).to_have_text("0 selected (0 NG, 0 OK)")
    expect(page.get_by_test_id("archive-clear-selection")).to_be_disabled()

    # One search (any verdict): two NG and two OK parts picked.
    ng, ok = page.locator(".archive-item.verdict-NG"), page.locator(".archive-item.verdict-OK")
    expect(ng.nth(1)).to_be_visible()
    expect(ok.nth(1)).to_be_visible()
    picked = [item for group in (ng, ok) for item in (group.nth(0), group.nth(1))]
    ids = {str(item.get_attribute("data-id")) for item in picked}
    for item in picked:
        item.get_by_test_id("archive-select").check()
    expect(selection).to_have_text("4 selected (2 NG, 2 OK)")

    # Another search (only NG) keeps all four, the two OK ones included, though none of them is shown.
    page.get_by_test_id("archive-verdict").select_option("NG")
    page.get_by_test_id("archive-search").click()
    expect(ok).to_have_count(0)
    expect(ng.first).to_be_visible()
    expect(selection).to_have_text("4 selected (2 NG, 2 OK)")
    expect(page.get_by_test_id("archive-export")).to_have_text("Export 4 (ZIP)")
    # The two newest NG parts were picked, so they lead this page too, still ticked.
    expect(page.locator("[data-testid=archive-select]:checked")).to_have_count(2)

    def is_export(request: Request) -> bool:
        return request.url.endswith("/archive/export") and request.method == "POST"

    with page.expect_download() as export_info, page.expect_request(is_export) as sent:
        page.get_by_test_id("archive-export").click()
        confirm(page, "Export 4 selected image(s) (2 NG, 2 OK)")
    assert set(map(str, sent.value.post_data_json["ids"])) == ids
    archive = zipfile.ZipFile(io.BytesIO(Path(export_info.value.path()).read_bytes()))
    images = [n for n in archive.namelist() if n.endswith(".jpg")]
    manifest = json.loads(archive.read("manifest.json"))
    assert len(images) == 4
    assert {str(row["id"]) for row in manifest["images"]} == ids
    expect(page.get_by_test_id("archive-message")).to_contain_text("Exported 4 image(s)")

    # Only the explicit button empties the selection.
    page.get_by_test_id("archive-clear-selection").click()
    expect(selection).to_have_text("0 selected (0 NG, 0 OK)")
    expect(page.get_by_test_id("archive-export")).to_have_text("Export all (ZIP)")
    expect(page.locator("[data-testid=archive-select]:checked")).to_have_count(0)


# ---- review queue -----------------------------------------------------------------------------------
def test_a_review_marks_the_alert_and_it_leaves_the_queue(page: Page, panel: FakePanel) -> None:
    wait_until(lambda: panel.runtime.defects >= 3, 20, "three alerts")
    panel.runtime.execute(PauseInspection())  # the queue holds still while the test reads it
    unreviewed = get(panel.base_url, "/alerts?review_state=unreviewed")["total"]
    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    expect(page.get_by_test_id("review-badge")).to_have_text(str(unreviewed), timeout=15_000)
    open_screen(page, "review")
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(unreviewed)
    summary = page.get_by_test_id("review-summary")
    expect(summary.locator("[data-key=unreviewed] .value")).to_have_text(str(unreviewed))
    wait_for_js(
        page,
        "Array.from(document.querySelectorAll('[data-testid=review-thumb]')).every(i => i.naturalWidth > 0)",
    )
    screenshot(page, "review.png")

    first, second = items.nth(0), items.nth(1)
    first_id, second_id = first.get_attribute("data-alert-id"), second.get_attribute("data-alert-id")
    first.get_by_test_id("review-comment").fill("scratch across the pad")
    first.get_by_test_id("review-confirm").click()
    expect(page.locator(f"[data-testid=review-item][data-alert-id='{first_id}']")).to_have_count(0)
    expect(page.get_by_test_id("review-message")).to_contain_text("confirmed as a defect")
    page.locator(f"[data-testid=review-item][data-alert-id='{second_id}']").get_by_test_id(
        "review-false-alarm"
    ).click()
    expect(page.locator(f"[data-testid=review-item][data-alert-id='{second_id}']")).to_have_count(0)
    expect(items).to_have_count(unreviewed - 2)
    expect(summary.locator("[data-key=confirmed] .value")).to_have_text("1")
    expect(summary.locator("[data-key=false_alarm] .value")).to_have_text("1")
    expect(page.get_by_test_id("review-badge")).to_have_text(str(unreviewed - 2), timeout=15_000)

    confirmed = get(panel.base_url, "/alerts?review_state=confirmed")["items"]
    assert [a["alert_id"] for a in confirmed] == [first_id]
    assert confirmed[0]["review"]["comment"] == "scratch across the pad"
    assert confirmed[0]["review"]["reviewer"] == "operator"
    false_alarms = get(panel.base_url, "/alerts?review_state=false_alarm")["items"]
    assert [a["alert_id"] for a in false_alarms] == [second_id]


# ---- what a viewer sees -----------------------------------------------------------------------------
def test_a_viewer_sees_no_controls_that_change_the_line(page: Page, panel: FakePanel) -> None:
    sign_in(page, panel.base_url, KEYS["viewer"], "viewer")
    expect(page.get_by_test_id("tab-audit")).to_be_hidden()
    open_screen(page, "models")
    expect(page.get_by_test_id("model-row")).to_have_count(1)
    expect(page.get_by_test_id("upload-card")).to_be_hidden()
    expect(page.get_by_test_id("models-rollback")).to_be_hidden()
    expect(page.get_by_test_id("model-activate")).to_have_count(0)
    screenshot(page, "models-viewer.png")

    open_screen(page, "roi")
    expect(page.get_by_test_id("roi-hint")).to_contain_text("needs the operator role")
    drag_over(page, (0.2, 0.2), (0.6, 0.6))
    expect(page.get_by_test_id("roi-rect")).to_be_hidden()
    expect(page.get_by_test_id("roi-apply")).to_be_disabled()
    expect(page.get_by_test_id("roi-clear")).to_be_disabled()

    open_screen(page, "review")
    expect(page.get_by_test_id("review-item").first).to_be_visible(timeout=20_000)
    expect(page.get_by_test_id("review-confirm").first).to_be_disabled()
    expect(page.get_by_test_id("review-false-alarm").first).to_be_disabled()

    open_screen(page, "archive")
    expect(page.get_by_test_id("archive-export")).to_be_hidden()
    # The address bar cannot open the audit screen either.
    page.goto(panel.base_url + "/#audit")
    expect(page.get_by_test_id("screen-live")).to_be_visible()
    expect(page.get_by_test_id("screen-audit")).to_be_hidden()


# ---- the real main job ------------------------------------------------------------------------------
@pytest.mark.integration
def test_roi_trends_and_models_against_the_real_stack(page: Page, edge_stack) -> None:
    base, keys = edge_stack.base_url, edge_stack.keys
    sign_in(page, base, keys["operator"], "operator")
    expect(page.get_by_test_id("line-state")).to_have_text("running", timeout=60_000)
    wait_until(lambda: get(base, "/status", keys=keys)["source_size"] is not None, 60, "camera frames")
    width, height = get(base, "/status", keys=keys)["source_size"]

    # On the whole frame: the middle half.
    open_screen(page, "roi")
    drag_over(page, (0.25, 0.25), (0.75, 0.75))
    apply_drawn_region(page)  # the model was built on whole frames: it may warn; applied anyway
    wait_until(lambda: get(base, "/status", keys=keys)["roi"] is not None, 30, "ROI set")
    first = get(base, "/status", keys=keys)["roi"]
    assert_roi(first, (width // 4, height // 4, width // 2, height // 2), tol=2)

    # The editor now shows the crop; the top-left quarter of it is a region inside the first one.
    expect(page.get_by_test_id("roi-hint")).to_contain_text("shown: the current region", timeout=20_000)
    drag_over(page, (0.02, 0.02), (0.5, 0.5))
    apply_drawn_region(page)
    wait_until(lambda: get(base, "/status", keys=keys)["roi"] != first, 30, "ROI changed")
    second = get(base, "/status", keys=keys)["roi"]
    expected = (
        first["x"] + round(0.02 * first["width"]),
        first["y"] + round(0.02 * first["height"]),
        round(0.48 * first["width"]),
        round(0.48 * first["height"]),
    )
    assert_roi(second, expected, tol=2)
    expect(page.get_by_test_id("roi-hint")).to_contain_text("shown: the current region", timeout=20_000)
    screenshot(page, "roi-real.png")
    page.get_by_test_id("roi-clear").click()
    confirm(page)
    wait_until(lambda: get(base, "/status", keys=keys)["roi"] is None, 10, "ROI cleared")

    open_screen(page, "trends")
    expect(page.get_by_test_id("trend-frames")).not_to_have_text("—")
    assert int(page.get_by_test_id("trend-frames").inner_text()) > 0
    threshold = get(base, "/status", keys=keys)["threshold"]
    expect(page.get_by_test_id("threshold-line")).to_be_visible()
    assert float(page.get_by_test_id("threshold-line").get_attribute("data-value") or "nan") == pytest.approx(
        threshold
    )
    expect(page.get_by_test_id("shift-row").first).to_be_visible()
    screenshot(page, "trends-real.png")

    open_screen(page, "models")
    expect(page.get_by_test_id("model-active")).to_have_count(1)
    expect(page.get_by_test_id("model-activate")).to_have_count(0)  # an operator may look, not swap
