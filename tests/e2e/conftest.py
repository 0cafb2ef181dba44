"""Browser fixtures for the panel tests: one Chromium per module, a tablet-sized page per test, and the
panel served by a real uvicorn around the FakeRuntime (with its audit log at hand)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.panel_helpers import CHROMIUM_ARGS, TABLET, FakePanel, serve_panel
from playwright.sync_api import Browser, Page, sync_playwright
from unit.app.fake_runtime import FakeRuntime


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=TABLET, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[FakePanel]:
    runtime = FakeRuntime(fps=6, defect_every=5)
    runtime.start()
    try:
        with serve_panel(runtime, tmp_path) as panel:
            yield panel
    finally:
        runtime.stop()


@pytest.fixture
def fake_panel(panel: FakePanel) -> tuple[str, FakeRuntime]:
    return panel.base_url, panel.runtime
