"""Browser fixtures for the panel tests: one Chromium per module, a tablet-sized page per test, and the
panel served by a real uvicorn around the FakeRuntime (with its audit log at hand)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.panel_helpers import CHROMIUM_ARGS, TABLET, FakePanel
from playwright.sync_api import Browser, Page, sync_playwright
from unit.app.api_helpers import KEYS, api_settings
from unit.app.fake_runtime import FakeRuntime
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore
from app.audit import AuditLog


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
    settings = api_settings(tmp_path)
    audit = AuditLog(settings.auth.audit_path)
    app = create_app(runtime, settings, KeyStore.from_keys(KEYS), audit_log=audit)
    try:
        with serve(app) as base_url:
            yield FakePanel(base_url, runtime, audit)
    finally:
        runtime.stop()
        audit.close()


@pytest.fixture
def fake_panel(panel: FakePanel) -> tuple[str, FakeRuntime]:
    return panel.base_url, panel.runtime
