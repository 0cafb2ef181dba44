"""Changes through the API reach the runtime, show in /status, and land in the audit log."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime, fake_model_bytes


def audit_items(client: TestClient) -> list[dict]:
    return client.get("/audit", headers=headers("admin")).json()["items"]


def test_threshold_change_shows_in_status_and_audit(client: TestClient, runtime: FakeRuntime) -> None:
    response = client.post("/inspection/threshold", json={"threshold": 0.73}, headers=headers("operator"))
    assert response.status_code == 200
    assert response.json()["new_value"] == 0.73
    assert client.get("/status", headers=headers("viewer")).json()["threshold"] == 0.73
    command, actor = runtime.commands[-1]
    assert command.command == "set_threshold" and actor == "operator (operator)"
    entry = audit_items(client)[0]
    assert entry["actor"] == "operator" and entry["role"] == "operator"
    assert entry["action"] == "set_threshold" and entry["target"] == "POST /inspection/threshold"
    assert (entry["old_value"], entry["new_value"], entry["ok"]) == (0.5, 0.73, True)

    client.post("/inspection/threshold/reset", headers=headers("operator"))
    assert client.get("/status", headers=headers("viewer")).json()["threshold"] == 0.5


def test_line_commands_and_refusal_are_audited(client: TestClient, runtime: FakeRuntime) -> None:
    assert client.post("/line/stop", headers=headers("operator")).json()["new_value"] == "stopped"
    refused = client.post("/line/resume", headers=headers("operator"))
    assert refused.status_code == 409
    assert "start it first" in refused.json()["message"]
    assert runtime.state == "stopped"
    assert client.post("/line/start", headers=headers("operator")).status_code == 200
    entries = audit_items(client)
    assert [(e["action"], e["ok"]) for e in entries] == [("start", True), ("resume", False), ("stop", True)]
    assert "start it first" in entries[1]["message"]


def test_roi_speed_and_sensitivity(client: TestClient, runtime: FakeRuntime) -> None:
    roi = {"x": 5, "y": 6, "width": 100, "height": 80}
    assert client.post("/inspection/roi", json=roi, headers=headers("operator")).status_code == 200
    assert client.get("/status", headers=headers("viewer")).json()["roi"] == roi
    assert client.delete("/inspection/roi", headers=headers("operator")).status_code == 200
    assert runtime.roi is None
    client.post("/line/speed", json={"parts_per_minute": 42.5}, headers=headers("operator"))
    assert client.get("/status", headers=headers("viewer")).json()["line_speed_request_ppm"] == 42.5
    response = client.post(
        "/inspection/sensitivity", json={"min_defect_area_px": 40}, headers=headers("operator")
    )
    assert response.json() == {"changes": [{"field": "inspection.min_defect_area_px", "old": 16, "new": 40}]}


def test_config_patch_and_runtime_refusal(client: TestClient, runtime: FakeRuntime) -> None:
    response = client.patch(
        "/config", json={"reject": {"gate_delay_ms": 250, "enabled": False}}, headers=headers("admin")
    )
    assert response.status_code == 200
    assert runtime.patches[-1][0] == {"reject": {"gate_delay_ms": 250, "enabled": False}}
    assert client.get("/config", headers=headers("viewer")).json()["reject"] == {
        "enabled": False,
        "gate_delay_ms": 250,
    }
    targets = {e["target"] for e in audit_items(client)}
    assert {"PATCH /config reject.gate_delay_ms", "PATCH /config reject.enabled"} <= targets

    def refuse(patch: dict, actor: str) -> list:
        raise ValueError("inspection.max_boxes: the runtime refuses this value")

    runtime.patch_config = refuse  # type: ignore[method-assign]
    refused = client.patch("/config", json={"inspection": {"max_boxes": 7}}, headers=headers("admin"))
    assert refused.status_code == 422
    assert "inspection.max_boxes" in refused.json()["detail"]
    entry = audit_items(client)[0]
    assert entry["ok"] is False and "refuses" in entry["message"]


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/inspection/threshold", {"threshold": 0.5, "extra": 1}, "extra_forbidden"),
        ("/inspection/threshold", {"threshold": -1}, "greater_than"),
        ("/inspection/threshold", {"threshold": "0.5"}, "float_type"),
        ("/inspection/roi", {"x": False, "y": 0, "width": 5, "height": 5}, "int_type"),
        ("/inspection/roi", {"x": 0, "y": 0, "width": 0, "height": 5}, "greater_than"),
        ("/line/speed", {}, "missing"),
    ],
)
def test_bad_payloads_get_422_with_the_reason(
    client: TestClient, runtime: FakeRuntime, path: str, body: dict, reason: str
) -> None:
    response = client.post(path, json=body, headers=headers("operator"))
    assert response.status_code == 422
    assert reason in {item["type"] for item in response.json()["detail"]}
    assert runtime.commands == []


def test_config_patch_rejects_unknown_fields_and_ignores_empty(
    client: TestClient, runtime: FakeRuntime
) -> None:
    unknown = client.patch("/config", json={"mqtt": {"url": "mqtt://evil:1883"}}, headers=headers("admin"))
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "mqtt"]
    typo = client.patch("/config", json={"inspection": {"treshold": 0.3}}, headers=headers("admin"))
    assert typo.status_code == 422 and typo.json()["detail"][0]["type"] == "extra_forbidden"
    empty = client.patch(
        "/config", json={"inspection": {"threshold": None}, "reject": {}}, headers=headers("admin")
    )
    assert empty.status_code == 200 and empty.json() == {"changes": []}
    assert runtime.patches == []


def test_model_upload_activate_and_rollback(client: TestClient, runtime: FakeRuntime) -> None:
    data = fake_model_bytes("pcb", "7")
    digest = hashlib.sha256(data).hexdigest()
    response = client.post(
        "/models",
        files={"file": ("../../pcb.onnx", data)},
        data={"sha256": digest.upper()},
        headers=headers("admin"),
    )
    assert response.status_code == 201, response.text
    model = response.json()
    assert (model["sha256"], model["active"]) == (digest, False)
    assert any(m["id"] == model["id"] for m in client.get("/models", headers=headers("viewer")).json())

    assert client.post(f"/models/{model['id']}/activate", headers=headers("admin")).status_code == 200
    assert client.get("/status", headers=headers("viewer")).json()["model"]["id"] == model["id"]
    assert client.post("/models/rollback", headers=headers("admin")).json()["old_value"] == model["id"]
    assert client.post("/models/rollback", headers=headers("admin")).status_code == 409
    unknown = client.post("/models/nope/activate", headers=headers("admin"))
    assert unknown.status_code == 409 and "unknown model" in unknown.json()["message"]
    upload = next(e for e in audit_items(client) if e["action"] == "upload_model")
    assert (
        upload["ok"]
        and upload["target"] == "POST /models pcb.onnx"
        and upload["new_value"]["sha256"] == digest
    )


def test_models_name_the_one_a_rollback_would_go_back_to(client: TestClient, runtime: FakeRuntime) -> None:
    def targets() -> dict[str, bool]:
        return {
            m["id"]: m["rollback_target"] for m in client.get("/models", headers=headers("viewer")).json()
        }

    first = runtime.models.active_id
    assert targets() == {first: False}  # one model: nothing to roll back to
    data = fake_model_bytes("pcb", "9")
    upload = client.post(
        "/models",
        files={"file": ("pcb.onnx", data)},
        data={"sha256": hashlib.sha256(data).hexdigest()},
        headers=headers("admin"),
    )
    assert upload.status_code == 201 and upload.json()["rollback_target"] is False
    second = upload.json()["id"]
    assert targets() == {first: False, second: False}  # registered, never active: still nothing

    assert client.post(f"/models/{second}/activate", headers=headers("admin")).json()["ok"]
    assert targets() == {first: True, second: False}
    rolled = client.post("/models/rollback", headers=headers("admin")).json()
    assert rolled["new_value"] == first
    assert targets() == {first: False, second: False}
    assert client.post("/models/rollback", headers=headers("admin")).status_code == 409


def test_model_upload_with_wrong_sha256_or_bad_file_keeps_the_running_model(
    client: TestClient, runtime: FakeRuntime
) -> None:
    before = client.get("/status", headers=headers("viewer")).json()["model"]
    data = fake_model_bytes("pcb", "8")
    mismatch = client.post(
        "/models", files={"file": ("m.onnx", data)}, data={"sha256": "0" * 64}, headers=headers("admin")
    )
    assert mismatch.status_code == 400
    assert "sha256 mismatch" in mismatch.json()["detail"] and "unchanged" in mismatch.json()["detail"]

    junk = b"this is not a model"
    bad = client.post(
        "/models",
        files={"file": ("junk.onnx", junk)},
        data={"sha256": hashlib.sha256(junk).hexdigest()},
        headers=headers("admin"),
    )
    assert bad.status_code == 422
    assert "model file rejected" in bad.json()["detail"]

    malformed = client.post(
        "/models", files={"file": ("m.onnx", data)}, data={"sha256": "xyz"}, headers=headers("admin")
    )
    assert malformed.status_code == 422
    assert client.get("/status", headers=headers("viewer")).json()["model"] == before
    assert len(client.get("/models", headers=headers("viewer")).json()) == 1
    failed = [e for e in audit_items(client) if e["action"] == "upload_model"]
    assert [e["ok"] for e in failed] == [False, False]
