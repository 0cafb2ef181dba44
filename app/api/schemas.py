"""Request and response bodies of the API. Requests forbid unknown fields so a typo is a 422, not a no-op."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from device.config import ThresholdValue
from vision.teach import TeachReport
from vision.teach_defects import DefectTeachReport


def _integral_float_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Bounded ints that, like JSON Schema, take 256.0 as 256; booleans and strings stay refused. Written out
# (not built by a function) so type checkers see them as types. The bounds must come before the
# validator, or pydantic cannot show them in the OpenAPI schema.
_JSON_INT = BeforeValidator(_integral_float_to_int)
Coordinate = Annotated[int, Field(ge=0, le=100_000), _JSON_INT]
Extent = Annotated[int, Field(gt=0, le=100_000), _JSON_INT]
AreaPx = Annotated[int, Field(ge=0, le=1_000_000), _JSON_INT]
BoxCount = Annotated[int, Field(ge=1, le=100), _JSON_INT]
DelayMs = Annotated[int, Field(ge=0, le=60_000), _JSON_INT]


class _Request(BaseModel):
    # Strict: `false` is not a pixel count and "0.5" is not a threshold; say so instead of guessing.
    model_config = ConfigDict(extra="forbid", strict=True)


class ThresholdRequest(_Request):
    threshold: ThresholdValue


class RoiPreviewRequest(_Request):
    """A proposed region of interest, in the camera's raw pixels (`/status` `source_size`)."""

    x: Coordinate
    y: Coordinate
    width: Extent
    height: Extent


class RoiRequest(RoiPreviewRequest):
    force: bool = Field(
        False,
        description="Apply even though the ROI preview warns that the reject share would jump; without it "
        "such a region is refused (409, the preview figures in `details`).",
    )


class SensitivityRequest(_Request):
    min_defect_area_px: AreaPx = Field(..., description="Smaller anomaly blobs are ignored.")


class LineSpeedRequest(_Request):
    parts_per_minute: float = Field(..., gt=0, le=100_000, allow_inf_nan=False)


class InspectionPatch(_Request):
    threshold: ThresholdValue | None = None
    min_defect_area_px: AreaPx | None = None
    max_boxes: BoxCount | None = None


class RejectPatch(_Request):
    enabled: bool | None = None
    gate_delay_ms: DelayMs | None = None


class ConfigPatch(_Request):
    """The settings an operator may change while the line runs; everything else needs a restart.

    Absent or null fields are left as they are (an empty patch changes nothing); unknown fields are a 422.
    """

    inspection: InspectionPatch | None = None
    reject: RejectPatch | None = None

    def as_patch(self) -> dict[str, dict[str, Any]]:
        """Nested dict of the fields given (nulls dropped), e.g. {"inspection": {"threshold": 0.4}}."""
        return {section: values for section, values in self.model_dump(exclude_none=True).items() if values}


class ConfigChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ConfigPatchResult(BaseModel):
    changes: list[ConfigChange]


class WhoAmI(BaseModel):
    name: str
    role: str
    auth_enabled: bool


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[dict[str, Any]]
    next_before_id: str | None = Field(
        None,
        description="Pass as `before_id` for the next page (it holds still); null on the last page.",
    )


class AuditEntry(BaseModel):
    id: int
    ts: str
    actor: str
    role: str
    action: str
    target: str
    old_value: Any = None
    new_value: Any = None
    ok: bool
    message: str


class AuditPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AuditEntry]


class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    sha256: str
    size_bytes: int
    created_at: str
    active: bool
    rollback_target: bool = Field(
        False, description="`POST /models/rollback` would go back to this model (at most one is)."
    )
    teach: TeachReport | None = Field(None, description="A taught model's before/after figures.")
    teach_defects: DefectTeachReport | None = Field(
        None, description="A model taught the confirmed defects: its before/after figures."
    )


class ErrorBody(BaseModel):
    detail: Any
