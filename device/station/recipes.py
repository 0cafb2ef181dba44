"""Recipes (products): per-product model, ROI, threshold and reject timing, persisted under data_dir.

A line changes product several times a shift; each recipe names everything a product needs so the PLC
can switch with one name. This module only keeps and validates recipes and the choice of the active one;
applying a recipe to the pipeline between two frames is the runtime's job (through `EdgeRuntime.execute`).

A recipe may also carry a GenICam camera's exposure and gain; `RecipeStore` persists whatever `Recipe`
holds, so adding a field needs no change here beyond the field itself.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.config import RegionOfInterest, ThresholdValue

RECIPE_NAME_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"


class RecipeError(ValueError):
    """A recipe request that cannot be honoured; the message says why (API answers 422/404 with it)."""


class UnknownRecipeError(RecipeError, KeyError):
    """The named recipe does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Recipe(BaseModel):
    """One product's settings. `threshold` None means the model's calibrated threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=RECIPE_NAME_PATTERN)
    model_id: str = Field(..., min_length=1, description="A model id in the station's registry.")
    roi: RegionOfInterest | None = None
    threshold: ThresholdValue | None = None
    gate_delay_ms: int = Field(0, ge=0, le=60_000, description="Reject gate delay for this product.")
    exposure_us: float | None = Field(
        None, gt=0, le=10_000_000, allow_inf_nan=False, description="GenICam exposure for this product."
    )
    gain_db: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False, description="GenICam gain for this product."
    )


class _StoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipes: list[Recipe] = Field(default_factory=list)
    active: str | None = None


class RecipeStore:
    """The station's recipes and which one is active, in one JSON file written atomically.

    `model_exists` is asked for every model a recipe names, so a recipe never points at a model the
    station does not hold (the model registry's `get` raising KeyError is the usual check).
    """

    def __init__(self, path: str | Path, model_exists: Callable[[str], bool]) -> None:
        self._path = Path(path)
        self._model_exists = model_exists
        self._lock = threading.Lock()
        self._recipes: dict[str, Recipe] = {}
        self._active: str | None = None
        self._load()

    # ---- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        if not self._path.exists():
            return
        try:
            data = _StoreFile.model_validate_json(self._path.read_text())
        except ValidationError as exc:
            raise RecipeError(f"{self._path}: not a valid recipe file: {exc}") from exc
        self._recipes = {r.name: r for r in data.recipes}
        self._active = data.active if data.active in self._recipes else None

    def _save(self) -> None:
        data = _StoreFile(recipes=list(self._recipes.values()), active=self._active)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data.model_dump(mode="json"), indent=2))
        os.replace(tmp, self._path)

    # ---- queries -----------------------------------------------------------------------------
    @property
    def active_name(self) -> str | None:
        return self._active

    def active(self) -> Recipe | None:
        with self._lock:
            return self._recipes.get(self._active) if self._active else None

    def get(self, name: str) -> Recipe:
        with self._lock:
            return self._get(name)

    def list(self) -> list[Recipe]:
        with self._lock:
            return sorted(self._recipes.values(), key=lambda r: r.name)

    def _get(self, name: str) -> Recipe:
        try:
            return self._recipes[name]
        except KeyError:
            raise UnknownRecipeError(f"unknown recipe {name!r}; known: {sorted(self._recipes)}") from None

    # ---- changes -----------------------------------------------------------------------------
    def _check_model(self, recipe: Recipe) -> None:
        if not self._model_exists(recipe.model_id):
            raise RecipeError(f"recipe {recipe.name!r}: model {recipe.model_id!r} is not in the registry")

    def create(self, recipe: Recipe) -> Recipe:
        self._check_model(recipe)
        with self._lock:
            if recipe.name in self._recipes:
                raise RecipeError(f"recipe {recipe.name!r} already exists")
            self._recipes[recipe.name] = recipe
            self._save()
        return recipe

    def update(self, recipe: Recipe) -> Recipe:
        """Replaces a recipe whole; the runtime re-applies it when it is the active one."""
        self._check_model(recipe)
        with self._lock:
            self._get(recipe.name)
            self._recipes[recipe.name] = recipe
            self._save()
        return recipe

    def delete(self, name: str) -> None:
        with self._lock:
            self._get(name)
            if name == self._active:
                raise RecipeError(f"recipe {name!r} is active; select another before deleting it")
            del self._recipes[name]
            self._save()

    def select(self, name: str) -> Recipe:
        """Marks `name` active (persisted, so a restart restores it) and returns it."""
        with self._lock:
            recipe = self._get(name)
            self._active = name
            self._save()
            return recipe


S = TypeVar("S")


class PreparedModels(Generic[S]):
    """Loaded inference sessions by model id, at most `capacity`, least recently used evicted first.

    PrepareRecipe loads a recipe's model here so the later SelectRecipe only swaps a reference; the
    bound keeps memory on a small box predictable. `pinned` (the active model) is never evicted.
    """

    def __init__(self, load: Callable[[str], S], capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._load = load
        self._capacity = capacity
        self._sessions: OrderedDict[str, S] = OrderedDict()
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def is_loaded(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._sessions

    def get(self, model_id: str, pinned: str | None = None) -> S:
        """The session for `model_id`, loading it (outside the lock: loading takes seconds) if needed."""
        with self._lock:
            session = self._sessions.get(model_id)
            if session is not None:
                self._sessions.move_to_end(model_id)
                return session
        loaded = self._load(model_id)
        with self._lock:
            session = self._sessions.setdefault(model_id, loaded)
            self._sessions.move_to_end(model_id)
            self._evict(keep={model_id, pinned})
            return session

    def _evict(self, keep: set[str | None]) -> None:
        for candidate in list(self._sessions):
            if len(self._sessions) <= self._capacity:
                return
            if candidate not in keep:
                del self._sessions[candidate]


class RecipesView(BaseModel):
    """What the API and panel show: every recipe, the active one, and which models are loaded (a recipe
    whose model is loaded switches without a load)."""

    active: str | None
    recipes: list[Recipe]
    loaded_models: list[str] = Field(default_factory=list)
