"""The operator's outcome through the real main job (`edgeinspect run`: simulated camera, ONNX model built
on whole frames, broker, API): a region that zooms the model in is previewed as a warning and is not applied
without force; the whole frame previews ok."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import EdgeStack
from fixtures_mqtt import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def status(client: httpx.Client, stack: EdgeStack) -> dict[str, Any]:
    response = client.get("/status", headers=stack.headers("viewer"))
    response.raise_for_status()
    return response.json()


def test_a_zooming_roi_warns_and_needs_force_and_the_whole_frame_is_ok(edge_stack: EdgeStack) -> None:
    with httpx.Client(base_url=edge_stack.base_url, timeout=60) as client:
        wait_until(lambda: status(client, edge_stack)["frames"] >= 12, 60)
        width, height = status(client, edge_stack)["source_size"]
        operator = edge_stack.headers("operator")

        whole = {"x": 0, "y": 0, "width": width, "height": height}
        ok = client.post("/inspection/roi/preview", json=whole, headers=operator)
        assert ok.status_code == 200, ok.text
        assert ok.json()["verdict"] == "ok" and ok.json()["frames"] >= 12
        assert ok.json()["reject_share_proposed"] == ok.json()["reject_share_now"]

        # A small region in the middle: the crop is blown up to the model's input, a view it never saw.
        tight = {
            "x": width // 2 - width // 10,
            "y": height // 2 - height // 10,
            "width": width // 5,
            "height": height // 5,
        }
        warned = client.post("/inspection/roi/preview", json=tight, headers=operator).json()
        assert warned["verdict"] == "warn", warned
        assert warned["reject_share_proposed"] > warned["reject_share_now"]
        assert warned["rebuild_available"] is False and "edgeinspect train" in warned["rebuild_hint"]

        refused = client.post("/inspection/roi", json=tight, headers=operator)
        assert refused.status_code == 409 and "force" in refused.json()["message"]
        assert refused.json()["details"]["verdict"] == "warn"
        assert status(client, edge_stack)["roi"] is None  # not applied

        forced = client.post("/inspection/roi", json={**tight, "force": True}, headers=operator)
        assert forced.status_code == 200, forced.text
        assert "applied with force" in forced.json()["message"]
        assert status(client, edge_stack)["roi"] == tight

        # Back to the whole frame from the tight region: fewer rejects, no force needed.
        assert client.post("/inspection/roi", json=whole, headers=operator).status_code == 200
        assert status(client, edge_stack)["roi"] == whole

        audit = client.get("/audit", headers=edge_stack.headers("admin")).json()["items"]
        roi_entries = [(e["action"], e["ok"]) for e in audit if e["action"] == "set_roi"]
        assert roi_entries == [("set_roi", True), ("set_roi", True), ("set_roi", False)]
