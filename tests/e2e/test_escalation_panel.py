"""The escalation line and the fleet rollout card in a real Chromium against the real stack: `edgeinspect run`
with escalation and rollout on, one real `edgeinspect verify` process on the same Mosquitto, and a signed
release published with `edgeinspect release publish`.

Screenshots: tests/artifacts/escalation.png (live view) and rollout.png (Models screen).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import onnx
import pytest
from conftest import EdgeStack, free_port, launch_edge_stack
from e2e.panel_helpers import open_screen, screenshot, sign_in
from fixtures_mqtt import wait_until
from playwright.sync_api import Page, expect
from verifier_process import start_verifier

from app.cli import main
from device.wire.release import generate_keypair, load_public_key

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

GROUP = "panel-verifiers"
# Every part escalates (a band wider than any score), at a pace one verifier on a shared box can answer.
STACK_ENV = {
    "EDGEINSPECT_CAMERA__FPS": "4",
    "EDGEINSPECT_REJECT__ENABLED": "true",
    "EDGEINSPECT_REJECT__GATE_DELAY_MS": "1200",
    "EDGEINSPECT_ESCALATION__ENABLED": "true",
    "EDGEINSPECT_ESCALATION__GROUP": GROUP,
    "EDGEINSPECT_ESCALATION__DEADLINE_MS": "800",
    "EDGEINSPECT_ESCALATION__MARGIN_MS": "100",
    "EDGEINSPECT_ESCALATION__MIN_SAMPLES": "10",
    "EDGEINSPECT_ESCALATION__INITIAL_WIDTH": "5.0",
    "EDGEINSPECT_ESCALATION__MIN_WIDTH": "5.0",
    "EDGEINSPECT_ESCALATION__MAX_WIDTH": "10.0",
    "EDGEINSPECT_ROLLOUT__ENABLED": "true",
}
# "Escalation: verifiers reachable · escalated 100.0 % (target 5.0 %) · verified 12 · agreement 91.7 % ·
#  verifier p50 35 ms · fallbacks 0 · deadline 800 ms"
LINE = re.compile(
    r"escalated (?P<rate>[\d.]+) %.*verified (?P<verified>\d+) · agreement (?P<agreement>[\d.]+) % · "
    r"verifier p50 (?P<p50>\d+) ms"
)


@dataclass
class Plant:
    stack: EdgeStack
    verifier_log: Path
    private_key: Path
    public_key: Path


@pytest.fixture
def plant(tmp_path: Path, trained_model: Path, mosquitto) -> Iterator[Plant]:
    private_key, public_key = generate_keypair(tmp_path / "keys")
    verifier = start_verifier(tmp_path, trained_model, mosquitto.url, "v-panel", GROUP)
    env = {**STACK_ENV, "EDGEINSPECT_ROLLOUT__TRUSTED_PUBLIC_KEYS": json.dumps([str(public_key)])}
    try:
        wait_until(lambda: "subscribed to" in verifier.log(), 90, "verifier ready")
        with launch_edge_stack(tmp_path / "data", trained_model, mosquitto.url, env) as stack:
            yield Plant(stack, verifier.log_path, private_key, public_key)
    finally:
        verifier.stop()


def _line_figures(page: Page) -> dict[str, float] | None:
    match = LINE.search(page.get_by_test_id("escalation-line").inner_text())
    return {k: float(v) for k, v in match.groupdict().items()} if match else None


def _version(model: Path, out: Path, version: str) -> Path:
    """The test model under another version: a valid, different file to release."""
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "edgeinspect.model_version":
            prop.value = version
    onnx.save(proto, str(out))
    return out


def _publish(plant: Plant, model: Path, tmp_path: Path, release_id: str) -> None:
    port = free_port()
    code = main(
        [
            "release", "publish", "--model", str(model), "--key", str(plant.private_key),
            "--base-url", f"http://127.0.0.1:{port}", "--serve", f"127.0.0.1:{port}",
            "--serve-dir", str(tmp_path / "served"), "--stations", "st1",
            "--mqtt-url", plant.stack.mqtt_url, "--release-id", release_id, "--timeout", "120",
        ]
    )  # fmt: skip
    assert code == 0, plant.stack.log_path.read_text()[-3000:]


def test_the_panel_shows_escalation_figures_and_the_rollout_card(
    page: Page, plant: Plant, trained_model: Path, tmp_path: Path
) -> None:
    stack = plant.stack
    sign_in(page, stack.base_url, stack.keys["viewer"], "viewer")
    expect(page.get_by_test_id("line-state")).to_have_text("running", timeout=60_000)
    line = page.get_by_test_id("escalation-line")
    expect(line).to_be_visible(timeout=30_000)
    expect(line).to_contain_text("verifiers reachable", timeout=30_000)

    # Numbers appear once the verifier has answered, and keep moving while parts escalate.
    def answered(at_least: float) -> bool:
        figures = _line_figures(page)
        return figures is not None and figures["verified"] >= at_least

    wait_until(lambda: answered(3), 90, "verified escalations in the panel")
    first = _line_figures(page)
    assert first is not None, line.inner_text()
    assert first["rate"] > 0 and first["agreement"] > 0 and first["p50"] > 0, line.inner_text()
    wait_until(lambda: answered(first["verified"] + 3), 60, "the escalation line to update")
    api = httpx.get(f"{stack.base_url}/status", headers=stack.headers("viewer"), timeout=10).json()
    escalation = api["escalation"]
    assert escalation["verified"] >= first["verified"] + 3 and escalation["verifier_p50_ms"] > 0
    alerts = httpx.get(f"{stack.base_url}/alerts", headers=stack.headers("viewer"), timeout=10).json()
    deciders = {(a["decided_by"], (a.get("verifier") or {}).get("verifier_id")) for a in alerts["items"]}
    assert ("verifier", "v-panel") in deciders, deciders
    screenshot(page, "escalation.png")

    # A signed release reaches the station; the Models screen's card shows it and the key it trusts.
    open_screen(page, "models")
    card = page.get_by_test_id("rollout-card")
    running = api["model"]["version"]
    expect(page.get_by_test_id("rollout-summary")).to_contain_text(
        f"On · station st1 · model version {running}"
    )
    expect(page.get_by_test_id("rollout-empty")).to_be_visible()
    _publish(plant, _version(trained_model, tmp_path / "v2.onnx", "2"), tmp_path, "bracket-2-panel")

    row = page.get_by_test_id("rollout-row").first
    expect(row).to_contain_text("bracket-2-panel", timeout=15_000)  # the card polls every 5 s
    expect(row.get_by_test_id("rollout-outcome")).to_have_text("activated")
    expect(row).to_contain_text("health check passed")
    expect(page.get_by_test_id("rollout-summary")).to_contain_text("model version 2")
    active = page.locator("tr.active[data-testid=model-row]")  # the models table follows the swap
    expect(active.locator("td.strong")).to_have_text(re.compile(r" 2$"), timeout=10_000)
    expect(page.get_by_test_id("rollout-empty")).to_be_hidden()
    raw = load_public_key(plant.public_key).public_bytes_raw()
    expected = hashlib.sha256(raw).hexdigest()
    expect(page.get_by_test_id("rollout-keys")).to_contain_text(expected[:16])

    view = httpx.get(f"{stack.base_url}/fleet/rollout", headers=stack.headers("viewer"), timeout=10)
    body = view.json()
    assert body["trusted_key_fingerprints"] == [expected] and body["model_version"] == "2"
    assert [(r["release_id"], r["outcome"]) for r in body["releases"]] == [("bracket-2-panel", "activated")]
    assert plant.private_key.read_bytes().splitlines()[1] not in view.content
    card.scroll_into_view_if_needed()
    screenshot(page, "rollout.png")
