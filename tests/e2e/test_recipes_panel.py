"""The Recipes screen in a real Chromium against a real uvicorn around the FakeRuntime (its real
RecipeStore): an admin saves two recipes through the form, prepares and switches to the second, sees it
active in the table and in the live view, and a refusal (deleting the active recipe) is shown in the card
with the runtime's reason. An operator switches but has no form and no Delete.
"""

from __future__ import annotations

import hashlib

import pytest
from e2e.panel_helpers import FakePanel, confirm, open_screen, screenshot, sign_in
from playwright.sync_api import Page, expect
from unit.app.api_helpers import KEYS
from unit.app.fake_runtime import fake_model_bytes

from device.station.recipes import Recipe

pytestmark = pytest.mark.e2e


def save_recipe(page: Page, name: str, model_id: str, threshold: str, gate_delay_ms: int) -> None:
    page.get_by_test_id("recipe-form-name").fill(name)
    page.get_by_test_id("recipe-form-model").select_option(value=model_id)
    page.get_by_test_id("recipe-form-threshold").fill(threshold)
    page.get_by_test_id("recipe-form-gate-delay").fill(str(gate_delay_ms))
    page.get_by_test_id("recipe-form-save").click()


def test_admin_saves_two_recipes_switches_and_is_refused_deleting_the_active_one(
    page: Page, panel: FakePanel
) -> None:
    runtime = panel.runtime
    first_model = runtime.models.entries[0].id
    data = fake_model_bytes("fake", "2")
    second_model = runtime.models.register(data, "x.onnx", hashlib.sha256(data).hexdigest()).id

    sign_in(page, panel.base_url, KEYS["admin"], "admin")
    expect(page.get_by_test_id("recipe-name")).to_have_text("none")  # live view, System card
    open_screen(page, "recipes")
    expect(page.get_by_test_id("recipes-empty")).to_be_visible()
    expect(page.get_by_test_id("recipes-active")).to_have_text("none")
    expect(page.get_by_test_id("recipe-form-model").locator("option")).to_have_count(2)  # from GET /models

    rows = page.get_by_test_id("recipe-row")
    message = page.get_by_test_id("recipes-message")
    save_recipe(page, "bracket_A", first_model, "", 40)
    expect(message).to_contain_text("Recipe bracket_A saved")
    expect(rows).to_have_count(1)
    save_recipe(page, "bracket_B", second_model, "0.7", 120)
    expect(message).to_contain_text("Recipe bracket_B saved")
    expect(rows).to_have_count(2)
    assert runtime.recipes.get("bracket_B") == Recipe(
        name="bracket_B", model_id=second_model, threshold=0.7, gate_delay_ms=120
    )

    row_a = page.locator("[data-testid=recipe-row][data-recipe=bracket_A]")
    row_b = page.locator("[data-testid=recipe-row][data-recipe=bracket_B]")
    expect(row_a.get_by_test_id("recipe-threshold")).to_have_text("calibrated")
    expect(row_a.get_by_test_id("recipe-roi")).to_have_text("whole frame")
    expect(row_b.get_by_test_id("recipe-threshold")).to_have_text("0.7")
    expect(row_b.get_by_test_id("recipe-model")).to_have_text("fake 2")
    expect(row_b.get_by_test_id("recipe-loaded")).to_have_text("not loaded")

    # Edit fills the form; saving under the same name replaces the recipe whole.
    row_a.get_by_test_id("recipe-edit").click()
    expect(page.get_by_test_id("recipe-form-name")).to_have_value("bracket_A")
    expect(page.get_by_test_id("recipe-form-model")).to_have_value(first_model)
    expect(page.get_by_test_id("recipe-form-gate-delay")).to_have_value("40")
    expect(page.get_by_test_id("recipe-form-roi")).to_have_value("keep")
    page.get_by_test_id("recipe-form-gate-delay").fill("45")
    page.get_by_test_id("recipe-form-save").click()
    expect(message).to_contain_text("Recipe bracket_A replaced")
    expect(row_a.get_by_test_id("recipe-gate-delay")).to_have_text("45 ms")
    expect(rows).to_have_count(2)

    row_b.get_by_test_id("recipe-prepare").click()
    expect(message).to_contain_text("bracket_B prepared")
    expect(row_b.get_by_test_id("recipe-loaded")).to_have_text("loaded")
    assert runtime.recipes.active_name is None  # preparing does not switch

    row_b.get_by_test_id("recipe-select").click()
    confirm(page, "bracket_B")
    expect(message).to_contain_text("Switched to recipe bracket_B")
    expect(row_b.get_by_test_id("recipe-active")).to_be_visible()
    expect(row_b).to_have_attribute("data-active", "true")
    expect(row_b.get_by_test_id("recipe-select")).to_have_count(0)
    expect(row_a.get_by_test_id("recipe-active")).to_have_count(0)
    expect(page.get_by_test_id("recipes-active")).to_have_text("bracket_B")
    assert runtime.recipes.active_name == "bracket_B"
    screenshot(page, "recipes.png")

    # The active recipe cannot be deleted: the runtime's reason, in the card, and the recipe stays.
    row_b.get_by_test_id("recipe-delete").click()
    confirm(page, "bracket_B")
    expect(message).to_contain_text("Refused")
    expect(message).to_contain_text("select another before deleting it")
    expect(message).to_have_class("message bad")
    expect(rows).to_have_count(2)
    assert runtime.recipes.active_name == "bracket_B"

    row_a.get_by_test_id("recipe-delete").click()
    confirm(page, "bracket_A")
    expect(message).to_contain_text("Recipe bracket_A deleted")
    expect(rows).to_have_count(1)

    open_screen(page, "live")
    expect(page.get_by_test_id("recipe-name")).to_have_text("bracket_B")


def test_an_operator_prepares_and_switches_but_cannot_save_or_delete(page: Page, panel: FakePanel) -> None:
    runtime = panel.runtime
    model_id = runtime.models.entries[0].id
    for name in ("line_1", "line_2"):
        runtime.recipes.create(Recipe(name=name, model_id=model_id))

    sign_in(page, panel.base_url, KEYS["operator"], "operator")
    open_screen(page, "recipes")
    expect(page.get_by_test_id("recipe-row")).to_have_count(2)
    expect(page.get_by_test_id("recipe-form-card")).to_be_hidden()
    expect(page.get_by_test_id("recipe-delete")).to_have_count(0)

    row = page.locator("[data-testid=recipe-row][data-recipe=line_2]")
    row.get_by_test_id("recipe-select").click()
    confirm(page, "line_2")
    expect(row.get_by_test_id("recipe-active")).to_be_visible()
    assert runtime.recipes.active_name == "line_2"
