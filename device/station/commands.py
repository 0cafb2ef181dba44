"""Every change to a running line enters through one door: a typed command handled by the runtime.

The API, the panel and the MQTT command topic all build one of these models and call
`EdgeRuntime.execute(command, actor)`; the runtime applies it on its own terms and answers a
`CommandResult`. Nothing outside the runtime touches its threads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from device.config import ThresholdValue
from device.station.recipes import RECIPE_NAME_PATTERN, Recipe


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, max_length=128, description="Echoed in the response.")


class StartLine(_Command):
    command: Literal["start"] = "start"


class StopLine(_Command):
    command: Literal["stop"] = "stop"


class PauseInspection(_Command):
    """Capture continues; frames are not judged and no alerts are raised."""

    command: Literal["pause"] = "pause"


class ResumeInspection(_Command):
    command: Literal["resume"] = "resume"


class SetThreshold(_Command):
    command: Literal["set_threshold"] = "set_threshold"
    threshold: ThresholdValue


class ResetThreshold(_Command):
    """Go back to the threshold calibrated with the model."""

    command: Literal["reset_threshold"] = "reset_threshold"


class SetRegionOfInterest(_Command):
    command: Literal["set_roi"] = "set_roi"
    x: int = Field(..., ge=0, le=100_000)
    y: int = Field(..., ge=0, le=100_000)
    width: int = Field(..., gt=0, le=100_000)
    height: int = Field(..., gt=0, le=100_000)
    force: bool = Field(
        False,
        description="Apply even when the ROI preview warns that the reject share would jump "
        "(refused otherwise, with the preview in `details`).",
    )


class ClearRegionOfInterest(_Command):
    command: Literal["clear_roi"] = "clear_roi"


class RequestLineSpeed(_Command):
    """Forwarded to the PLC on the line-speed topic; the PLC decides."""

    command: Literal["line_speed"] = "line_speed"
    parts_per_minute: float = Field(..., gt=0, le=100_000, allow_inf_nan=False)


class AcknowledgeReject(_Command):
    """The PLC confirms that the reject gate fired for this part."""

    command: Literal["reject_ack"] = "reject_ack"
    frame_id: int = Field(..., ge=0)


class ActivateModel(_Command):
    """Hot-swap to a registered model; the old one keeps running until the new one is loaded."""

    command: Literal["activate_model"] = "activate_model"
    model_id: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")


class RollbackModel(_Command):
    command: Literal["rollback_model"] = "rollback_model"


class TriggerCamera(_Command):
    """Fire one software trigger on a GenICam camera in software-trigger mode (the panel's test button)."""

    command: Literal["camera_trigger"] = "camera_trigger"


class SetCameraSettings(_Command):
    """Change a GenICam camera's exposure, gain and/or trigger mode while it runs; omitted fields stay as
    they are."""

    command: Literal["camera_settings"] = "camera_settings"
    exposure_us: float | None = Field(None, gt=0, le=10_000_000, allow_inf_nan=False)
    gain_db: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    trigger: Literal["free_run", "software", "hardware"] | None = Field(
        None, description="free_run, software (the test trigger / camera_trigger) or hardware (line, edge)."
    )


class SaveRecipe(_Command):
    """Create a recipe or replace one whole; saving the active recipe applies it from the next frame."""

    command: Literal["save_recipe"] = "save_recipe"
    recipe: Recipe


class DeleteRecipe(_Command):
    """Refused for the active recipe (select another first)."""

    command: Literal["delete_recipe"] = "delete_recipe"
    name: str = Field(..., pattern=RECIPE_NAME_PATTERN)


class PrepareRecipe(_Command):
    """Load a recipe's model ahead of the switch (OPC 40100 `PrepareRecipe`), so `select_recipe` is a swap."""

    command: Literal["prepare_recipe"] = "prepare_recipe"
    name: str = Field(..., pattern=RECIPE_NAME_PATTERN)


class SelectRecipe(_Command):
    """Switch product between two frames: every frame captured after the switch is cropped with the
    recipe's ROI and judged by its model and threshold; frames already captured finish under the old one."""

    command: Literal["select_recipe"] = "select_recipe"
    name: str = Field(..., pattern=RECIPE_NAME_PATTERN)


class CaptureProduct(_Command):
    """Learn a new product: keep every `every_n`-th frame the camera delivers until `count` good parts
    are saved, in the MVTec layout under `<data_dir>/datasets/<product>/train/good`."""

    command: Literal["capture_product"] = "capture_product"
    product: str = Field(..., pattern=RECIPE_NAME_PATTERN)
    count: int = Field(100, ge=2, le=5000)
    every_n: int = Field(1, ge=1, le=1000, description="Keep one frame in this many (parts spaced out).")


class CancelCapture(_Command):
    command: Literal["cancel_capture"] = "cancel_capture"


class StrikeCapture(_Command):
    """Delete one captured image (the contact sheet's strike-out); a running capture keeps one more."""

    command: Literal["strike_capture"] = "strike_capture"
    image: str = Field(..., pattern=r"^[0-9]{4,6}\.png$")


class BuildProduct(_Command):
    """Build a model from a product's captured good parts on the station (ONNX Runtime and numpy, at low
    priority while the line keeps judging); the model is registered, ready to shadow or put in a recipe."""

    command: Literal["build_product"] = "build_product"
    product: str = Field(..., pattern=RECIPE_NAME_PATTERN)


class StartShadow(_Command):
    """Run a registered model in the shadow of the active one for `parts` judged parts: it judges the
    same parts and the differences are shown, but it decides nothing."""

    command: Literal["start_shadow"] = "start_shadow"
    model_id: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    parts: int = Field(200, ge=1, le=100_000)


class StopShadow(_Command):
    command: Literal["stop_shadow"] = "stop_shadow"


Command = Annotated[
    StartLine
    | StopLine
    | PauseInspection
    | ResumeInspection
    | SetThreshold
    | ResetThreshold
    | SetRegionOfInterest
    | ClearRegionOfInterest
    | RequestLineSpeed
    | AcknowledgeReject
    | ActivateModel
    | RollbackModel
    | TriggerCamera
    | SetCameraSettings
    | SaveRecipe
    | DeleteRecipe
    | PrepareRecipe
    | SelectRecipe
    | CaptureProduct
    | CancelCapture
    | StrikeCapture
    | BuildProduct
    | StartShadow
    | StopShadow,
    Field(discriminator="command"),
]
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)


class CommandResult(BaseModel):
    """The runtime's answer; also published on the MQTT response topic."""

    ok: bool
    command: str
    request_id: str | None = None
    message: str = ""
    old_value: Any = None
    new_value: Any = None
    details: dict[str, Any] | None = Field(
        None, description="Figures behind a refusal, when there are any (set_roi: the ROI preview)."
    )
