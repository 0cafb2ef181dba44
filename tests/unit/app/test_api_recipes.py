"""Recipes through the API: who may do what, what the runtime is asked, refusals with reasons, the audit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from unit.app.api_helpers import headers
from unit.app.fake_runtime import FakeRuntime


def _recipe(runtime: FakeRuntime, name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "model_id": runtime.models.entries[0].id, **fields}


def test_an_engineer_saves_recipes_and_an_operator_switches(client: TestClient, runtime: FakeRuntime) -> None:
    roi = {"x": 4, "y": 4, "width": 100, "height": 90}
    for body in (_recipe(runtime, "bracket"), _recipe(runtime, "housing", threshold=0.61, roi=roi)):
        saved = client.post("/recipes", json=body, headers=headers("admin"))
        assert saved.status_code == 200, saved.text
    selected = client.post("/recipes/housing/select", headers=headers("operator"))
    assert selected.status_code == 200 and selected.json()["new_value"] == "housing"
    status = client.get("/status", headers=headers("viewer")).json()
    assert (status["recipe"], status["threshold"], status["roi"]) == ("housing", 0.61, roi)
    view = client.get("/recipes", headers=headers("viewer")).json()
    assert view["active"] == "housing" and [r["name"] for r in view["recipes"]] == ["bracket", "housing"]
    assert view["loaded_models"] == [runtime.models.entries[0].id]
    actions = [
        (e["action"], e["target"], e["ok"])
        for e in client.get("/audit", headers=headers("admin")).json()["items"]
    ]
    assert actions[0] == ("select_recipe", "POST /recipes/housing/select", True)
    assert [a[0] for a in actions[1:3]] == ["save_recipe", "save_recipe"]


def test_operators_may_not_edit_recipes_and_viewers_may_not_switch(
    client: TestClient, runtime: FakeRuntime
) -> None:
    assert client.post("/recipes", json=_recipe(runtime, "a"), headers=headers("operator")).status_code == 403
    client.post("/recipes", json=_recipe(runtime, "a"), headers=headers("admin"))
    assert client.post("/recipes/a/select", headers=headers("viewer")).status_code == 403
    assert client.delete("/recipes/a", headers=headers("operator")).status_code == 403
    assert runtime.recipes.active_name is None


def test_refusals_say_why_and_change_nothing(client: TestClient, runtime: FakeRuntime) -> None:
    unknown_model = client.post("/recipes", json={"name": "x", "model_id": "nope"}, headers=headers("admin"))
    assert unknown_model.status_code == 409 and "not in the registry" in unknown_model.json()["message"]
    unknown = client.post("/recipes/ghost/select", headers=headers("operator"))
    assert unknown.status_code == 409 and "unknown recipe 'ghost'" in unknown.json()["message"]
    bad_name = client.post("/recipes/bad%20name/select", headers=headers("operator"))
    assert bad_name.status_code == 422
    malformed = client.post(
        "/recipes", json={"name": "y", "model_id": "m", "gate_delay_ms": -1}, headers=headers("admin")
    )
    assert malformed.status_code == 422 and "gate_delay_ms" in malformed.text
    client.post("/recipes", json=_recipe(runtime, "a"), headers=headers("admin"))
    client.post("/recipes/a/select", headers=headers("operator"))
    active = client.delete("/recipes/a", headers=headers("admin"))
    assert active.status_code == 409 and "is active" in active.json()["message"]
    assert [r.name for r in runtime.recipes.list()] == ["a"]


def _advance_until(
    client: TestClient, runtime: FakeRuntime, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Feed frames until the capture's status satisfies `done` (its writer is a thread of its own)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get("/capture", headers=headers("viewer")).json()
        if done(status):
            return status
        runtime.advance()
        time.sleep(0.01)
    raise AssertionError(f"capture did not get there: {status}")


def test_an_operator_captures_a_new_product_and_strikes_a_bad_part(
    client: TestClient, runtime: FakeRuntime
) -> None:
    assert client.get("/capture", headers=headers("viewer")).json() is None
    started = client.post("/capture", json={"product": "housing", "count": 3}, headers=headers("operator"))
    assert started.status_code == 200, started.text
    again = client.post("/capture", json={"product": "other", "count": 3}, headers=headers("operator"))
    assert again.status_code == 409 and "is running" in again.json()["message"]
    status = _advance_until(client, runtime, lambda st: st["captured"] >= 1)
    first = status["images"][0]
    png = client.get(f"/capture/images/{first}", headers=headers("viewer"))
    assert (
        png.status_code == 200
        and png.headers["content-type"] == "image/png"
        and png.content[:4] == b"\x89PNG"
    )
    assert client.delete(f"/capture/images/{first}", headers=headers("viewer")).status_code == 403
    assert client.delete(f"/capture/images/{first}", headers=headers("operator")).status_code == 200
    assert client.get(f"/capture/images/{first}", headers=headers("viewer")).status_code == 404
    assert client.delete("/capture/images/..%2Fx.png", headers=headers("operator")).status_code in (404, 422)
    _advance_until(client, runtime, lambda st: st["state"] == "done")
    status = client.get("/capture", headers=headers("viewer")).json()
    assert (status["state"], status["kept"], status["struck"]) == ("done", 3, 1)
    assert first not in status["images"]
    actions = [e["action"] for e in client.get("/audit", headers=headers("admin")).json()["items"]]
    assert actions[:3] == ["strike_capture", "capture_product", "capture_product"]


def test_an_operator_builds_the_captured_product_and_sees_its_held_back_check(
    client: TestClient, runtime: FakeRuntime
) -> None:
    assert client.get("/capture/build", headers=headers("viewer")).json() is None
    too_few = client.post("/capture/build", json={"product": "housing"}, headers=headers("operator"))
    assert too_few.status_code == 409 and "at least 8" in too_few.json()["message"]
    client.post("/capture", json={"product": "housing", "count": 9}, headers=headers("operator"))
    _advance_until(client, runtime, lambda st: st["state"] == "done")
    assert (
        client.post("/capture/build", json={"product": "housing"}, headers=headers("viewer")).status_code
        == 403
    )
    bad = client.post("/capture/build", json={"product": "../x"}, headers=headers("operator"))
    assert bad.status_code == 422
    built = client.post("/capture/build", json={"product": "housing"}, headers=headers("operator"))
    assert built.status_code == 200, built.text
    status = client.get("/capture/build", headers=headers("viewer")).json()
    assert status["state"] == "done" and status["product"] == "housing"
    assert status["model_id"] in {m["id"] for m in client.get("/models", headers=headers("viewer")).json()}
    assert status["worst"][0]["image"] in client.get("/capture", headers=headers("viewer")).json()["images"]
    actions = [e["action"] for e in client.get("/audit", headers=headers("admin")).json()["items"]]
    assert actions[0] == "build_product"
