"""The ROI preview before applying, and a region the preview warns about refused unless forced."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime

from device.config import RegionOfInterest
from device.station.commands import SetRegionOfInterest
from device.station.roi_preview import REBUILD_HINT, RoiPreview

WHOLE = {"x": 0, "y": 0, "width": 160, "height": 160}  # the fake camera's whole frame
TIGHT = {"x": 60, "y": 60, "width": 40, "height": 44}  # a zoomed view the model never learned


def audit_items(client: TestClient) -> list[dict]:
    return client.get("/audit", headers=headers("admin")).json()["items"]


@pytest.fixture
def zooming(runtime: FakeRuntime) -> FakeRuntime:
    runtime.preview_rejects = runtime.zooming_roi_rejects
    return runtime


def test_preview_shows_both_reject_shares_and_changes_nothing(
    client: TestClient, zooming: FakeRuntime
) -> None:
    response = client.post("/inspection/roi/preview", json=TIGHT, headers=headers("operator"))
    assert response.status_code == 200
    preview = RoiPreview.model_validate(response.json())
    assert preview.verdict == "warn" and preview.frames == 20
    assert (preview.reject_share_now, preview.reject_share_proposed) == (0.05, 0.9)
    assert preview.roi == TIGHT and preview.current_roi is None
    assert "reject share 5% now, 90% with this region, on 20 recent frames" in preview.reasons[0]
    assert not preview.rebuild_available and "edgeinspect train" in preview.rebuild_hint
    assert preview.rebuild_hint == REBUILD_HINT

    whole = client.post("/inspection/roi/preview", json=WHOLE, headers=headers("operator")).json()
    assert whole["verdict"] == "ok" and whole["reject_share_proposed"] == 0.05

    assert zooming.roi is None and zooming.commands == []  # a preview is not a change...
    assert audit_items(client) == []  # ...so nothing is audited


def test_a_warned_roi_is_refused_with_the_figures_unless_forced(
    client: TestClient, zooming: FakeRuntime
) -> None:
    refused = client.post("/inspection/roi", json=TIGHT, headers=headers("operator"))
    assert refused.status_code == 409
    body = refused.json()
    assert body["ok"] is False and "force" in body["message"] and "90% with this region" in body["message"]
    assert body["details"]["verdict"] == "warn" and body["details"]["reject_share_proposed"] == 0.9
    assert zooming.roi is None

    forced = client.post("/inspection/roi", json={**TIGHT, "force": True}, headers=headers("operator"))
    assert forced.status_code == 200 and zooming.roi == TIGHT
    command, _ = zooming.commands[-1]
    assert isinstance(command, SetRegionOfInterest) and command.force is True

    entries = audit_items(client)  # newest first, as any other command
    assert [(e["action"], e["target"], e["ok"]) for e in entries] == [
        ("set_roi", "POST /inspection/roi", True),
        ("set_roi", "POST /inspection/roi", False),
    ]
    assert "force" in entries[1]["message"]


def test_an_ok_roi_applies_without_force(client: TestClient, zooming: FakeRuntime) -> None:
    big = {"x": 0, "y": 0, "width": 160, "height": 100}
    assert client.post("/inspection/roi", json=big, headers=headers("operator")).status_code == 200
    assert zooming.roi == big


def test_preview_needs_the_operator_role_and_a_model(
    client: TestClient, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/inspection/roi/preview", json=TIGHT, headers=headers("viewer")).status_code == 403
    bad = client.post("/inspection/roi/preview", json={**TIGHT, "force": True}, headers=headers("operator"))
    assert bad.status_code == 422  # a preview has nothing to force

    def no_model(roi: RegionOfInterest | None) -> RoiPreview:
        raise ValueError("no model loaded")

    monkeypatch.setattr(runtime, "preview_roi", no_model)
    refused = client.post("/inspection/roi/preview", json=TIGHT, headers=headers("operator"))
    assert refused.status_code == 409 and refused.json()["detail"] == "no model loaded"
