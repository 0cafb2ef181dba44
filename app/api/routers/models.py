"""Model management (admin): upload a checked ONNX file, activate it, roll back.

An upload is only registered; it runs after `activate`. A file that fails its sha256 or the ONNX contract
is refused with the reason, and the running model is not touched.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Path, UploadFile

from app.api.control import REFUSED_RESPONSE, CommandResponse, execute_command, record_action
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, RuntimeDep, Viewer
from app.api.schemas import ErrorBody, ModelOut
from device.station.commands import ActivateModel, CommandResult, RollbackModel
from device.station.model_registry import ModelEntry
from vision.inspector import ModelFileError

router = APIRouter(prefix="/models", tags=["models"], responses=AUTH_RESPONSES)

ModelId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _activate_link(model_id: str) -> dict[str, dict[str, object]]:
    """OpenAPI link to activation, so clients (and stateful fuzzers) know where a model id comes from."""
    return {
        "ActivateModel": {
            "operationRef": "#/paths/~1models~1{model_id}~1activate/post",
            "parameters": {"model_id": model_id},
            "description": "Activate this model (hot swap).",
        }
    }


@router.get(
    "",
    response_model=list[ModelOut],
    responses={200: {"links": _activate_link("$response.body#/0/id")}},
)
def list_models(runtime: RuntimeDep, _: Viewer) -> list[ModelOut]:
    """Every model on the box; `rollback_target` marks the one a rollback would go back to (none: nothing
    to roll back to)."""
    previous = runtime.models.previous_id()
    return [_model_out(entry, previous) for entry in runtime.models.list()]


def _model_out(entry: ModelEntry, previous_id: str | None) -> ModelOut:
    return ModelOut.model_validate({**entry.model_dump(), "rollback_target": entry.id == previous_id})


@router.post(
    "",
    status_code=201,
    response_model=ModelOut,
    responses={
        **CONTROL_RESPONSES,
        201: {"links": _activate_link("$response.body#/id")},
        400: {"model": ErrorBody, "description": "sha256 of the upload does not match the `sha256` field."},
        422: {"model": ErrorBody, "description": "Not a valid EdgeInspect ONNX model, or a bad form."},
    },
)
def upload_model(
    runtime: RuntimeDep,
    audit: AuditDep,
    principal: Admin,
    file: Annotated[UploadFile, File(description="The ONNX model file.")],
    sha256: Annotated[
        str, Form(pattern=r"^[0-9a-fA-F]{64}$", description="Expected sha256 (hex) of the file.")
    ],
) -> ModelOut:
    filename = PurePath(file.filename or "upload.onnx").name[:200] or "upload.onnx"
    data = file.file.read()
    target = f"POST /models {filename}"

    def refuse(status: int, reason: str) -> HTTPException:
        asked = {"sha256": sha256.lower(), "size_bytes": len(data)}
        record_action(audit, principal, "upload_model", target, ok=False, new_value=asked, message=reason)
        return HTTPException(status, detail=f"{reason}; the running model is unchanged")

    try:
        entry = runtime.models.register(data, filename, sha256.lower())
    except ModelFileError as exc:
        raise refuse(422, f"model file rejected: {exc}") from exc
    except ValueError as exc:
        raise refuse(400, str(exc)) from exc
    model = _model_out(entry, runtime.models.previous_id())
    stored = {"id": model.id, "sha256": model.sha256, "size_bytes": model.size_bytes}
    record_action(audit, principal, "upload_model", target, ok=True, new_value=stored)
    return model


@router.post("/rollback", response_model=CommandResult, responses={**CONTROL_RESPONSES, **REFUSED_RESPONSE})
def rollback(runtime: RuntimeDep, audit: AuditDep, principal: Admin) -> CommandResponse:
    """Back to the previously active model."""
    return execute_command(runtime, audit, principal, RollbackModel(), "POST /models/rollback")


@router.post(
    "/{model_id}/activate", response_model=CommandResult, responses={**CONTROL_RESPONSES, **REFUSED_RESPONSE}
)
def activate(model_id: ModelId, runtime: RuntimeDep, audit: AuditDep, principal: Admin) -> CommandResponse:
    """Hot swap: the current model keeps judging until the new one has loaded."""
    command = ActivateModel(model_id=model_id)
    return execute_command(runtime, audit, principal, command, f"POST /models/{model_id}/activate")
