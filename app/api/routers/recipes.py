"""Recipes (products): what a line switches between when it changes product.

Saving and deleting a recipe is the line engineer's (admin); preparing and selecting one is the operator's
or the PLC's. Every change goes through the runtime's one command door and the audit log; the same
commands arrive on the MQTT command topic and as OPC UA methods.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, Operator, RuntimeDep, Viewer
from device.station.commands import CommandResult, DeleteRecipe, PrepareRecipe, SaveRecipe, SelectRecipe
from device.station.recipes import RECIPE_NAME_PATTERN, Recipe, RecipesView

router = APIRouter(prefix="/recipes", tags=["recipes"], responses=AUTH_RESPONSES)
CONTROL = {**CONTROL_RESPONSES, **REFUSED_RESPONSE}

RecipeName = Annotated[str, Path(pattern=RECIPE_NAME_PATTERN)]


@router.get("", response_model=RecipesView)
def list_recipes(runtime: RuntimeDep, _: Viewer) -> RecipesView:
    """Every recipe, the active one, and the models loaded (a loaded recipe switches without a load)."""
    return runtime.recipes_view()


@router.post("", response_model=CommandResult, responses=CONTROL)
def save_recipe(body: Recipe, runtime: RuntimeDep, audit: AuditDep, principal: Admin) -> CommandResponse:
    """Create a recipe or replace it whole (its model must be on the station); the active recipe applies
    from the next frame."""
    return execute_command(runtime, audit, principal, SaveRecipe(recipe=body), "POST /recipes")


@router.delete("/{name}", response_model=CommandResult, responses=CONTROL)
def delete_recipe(
    name: RecipeName, runtime: RuntimeDep, audit: AuditDep, principal: Admin
) -> CommandResponse:
    """Refused (409) for the active recipe or an unknown name."""
    return execute_command(runtime, audit, principal, DeleteRecipe(name=name), f"DELETE /recipes/{name}")


@router.post("/{name}/prepare", response_model=CommandResult, responses=CONTROL)
def prepare_recipe(
    name: RecipeName, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Load the recipe's model now, so the switch later is a swap between two frames."""
    command = PrepareRecipe(name=name)
    return execute_command(runtime, audit, principal, command, f"POST /recipes/{name}/prepare")


@router.post("/{name}/select", response_model=CommandResult, responses=CONTROL)
def select_recipe(
    name: RecipeName, runtime: RuntimeDep, audit: AuditDep, principal: Operator
) -> CommandResponse:
    """Switch product: frames captured from now on are cropped, judged and named under this recipe."""
    command = SelectRecipe(name=name)
    return execute_command(runtime, audit, principal, command, f"POST /recipes/{name}/select")
