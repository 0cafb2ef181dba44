"""What the panel's browser tests share: Chromium's flags, signing in, and where screenshots go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fixtures_mqtt import wait_until
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS, api_settings
from unit.app.fake_runtime import FakeRuntime
from unit.app.uvicorn_thread import serve

from app.api.main import create_app
from app.api.security import KeyStore
from app.audit import AuditLog

# Screenshots are kept as test artefacts (git-ignored) for a person to look at.
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TABLET = {"width": 1366, "height": 900}


@dataclass
class FakePanel:
    """The panel served by a real uvicorn around the FakeRuntime, with the app's audit log."""

    base_url: str
    runtime: FakeRuntime
    audit: AuditLog


def sign_in(page: Page, base_url: str, key: str, role: str, screen: str = "") -> None:
    """Open the panel (on `screen`'s tab if given) and sign in with `key`."""
    page.goto(base_url + "/" + (f"#{screen}" if screen else ""))
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("dashboard")).to_be_visible()
    expect(page.get_by_test_id("role")).to_contain_text(role)


def confirm(page: Page, text: str = "") -> None:
    """Accept the panel's confirm dialog, checking it names `text`."""
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    if text:
        expect(page.get_by_test_id("confirm-text")).to_contain_text(text)
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()


def open_screen(page: Page, name: str) -> None:
    page.get_by_test_id(f"tab-{name}").click()
    expect(page.get_by_test_id(f"screen-{name}")).to_be_visible()


def wait_for_js(page: Page, expression: str, timeout_s: float = 15.0) -> None:
    """Poll a JS expression until it is truthy. (`page.wait_for_function` evaluates its string with
    `eval` inside the page, which the panel's Content-Security-Policy rightly refuses.)"""
    wait_until(lambda: bool(page.evaluate(expression)), timeout_s, expression)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def serve_panel(runtime: FakeRuntime, tmp_path: Path) -> Iterator[FakePanel]:
    """The panel and API on a real uvicorn around `runtime`, with its audit log at hand."""
    settings = api_settings(tmp_path)
    audit = AuditLog(settings.auth.audit_path)
    app = create_app(runtime, settings, KeyStore.from_keys(KEYS), audit_log=audit)
    try:
        with serve(app) as base_url:
            yield FakePanel(base_url, runtime, audit)
    finally:
        audit.close()
