"""Recipe store: validation, persistence across a restart, the active recipe; the bounded model cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from device.config import RegionOfInterest
from device.station.recipes import PreparedModels, Recipe, RecipeError, RecipeStore, UnknownRecipeError

MODELS = {"m-a", "m-b"}


def _store(path: Path) -> RecipeStore:
    return RecipeStore(path / "recipes.json", model_exists=MODELS.__contains__)


def _recipe(name: str = "bottle", model_id: str = "m-a", **fields: object) -> Recipe:
    return Recipe.model_validate({"name": name, "model_id": model_id, **fields})


def test_recipes_and_active_survive_a_restart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    roi = RegionOfInterest(x=4, y=8, width=100, height=50)
    store.create(_recipe("bottle", roi=roi, threshold=1.5, gate_delay_ms=120))
    store.create(_recipe("cap", model_id="m-b"))
    store.select("cap")

    reopened = _store(tmp_path)
    assert [r.name for r in reopened.list()] == ["bottle", "cap"]
    assert reopened.get("bottle").roi == roi
    assert reopened.get("bottle").threshold == 1.5
    assert reopened.get("bottle").gate_delay_ms == 120
    assert reopened.active_name == "cap"
    active = reopened.active()
    assert active is not None and active.model_id == "m-b"


def test_unknown_model_is_refused_with_its_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(RecipeError, match="'m-zzz' is not in the registry"):
        store.create(_recipe(model_id="m-zzz"))
    assert store.list() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "has space"), ("threshold", -1.0), ("threshold", float("nan")), ("gate_delay_ms", -5)],
)
def test_bad_fields_fail_validation_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        _recipe(**{field: value})  # type: ignore[arg-type]


def test_duplicate_update_delete_rules(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create(_recipe("bottle"))
    with pytest.raises(RecipeError, match="already exists"):
        store.create(_recipe("bottle"))
    with pytest.raises(UnknownRecipeError, match="unknown recipe 'nope'"):
        store.update(_recipe("nope"))
    store.update(_recipe("bottle", threshold=2.0))
    assert store.get("bottle").threshold == 2.0
    store.select("bottle")
    with pytest.raises(RecipeError, match="is active"):
        store.delete("bottle")
    store.create(_recipe("cap"))
    store.delete("cap")
    assert [r.name for r in _store(tmp_path).list()] == ["bottle"]


def test_corrupt_file_fails_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "recipes.json").write_text('{"recipes": [{"name": "x"}]}')
    with pytest.raises(RecipeError, match=r"recipes\.json"):
        _store(tmp_path)


def test_prepared_models_are_bounded_and_keep_the_pinned_one() -> None:
    loads: list[str] = []

    def load(model_id: str) -> str:
        loads.append(model_id)
        return f"session:{model_id}"

    cache: PreparedModels[str] = PreparedModels(load, capacity=2)
    assert cache.get("a") == "session:a"
    assert cache.get("a") == "session:a"
    assert loads == ["a"]  # the second get reused the loaded session
    cache.get("b", pinned="a")
    cache.get("c", pinned="a")  # evicts b (least recently used that is not pinned), keeps a
    assert sorted(cache.ids()) == ["a", "c"]
    assert not cache.is_loaded("b")
    with pytest.raises(ValueError, match="capacity"):
        PreparedModels(load, capacity=0)
