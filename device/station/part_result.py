"""The verdict on one part, for every part (not only defects): what a PLC keeps in its FIFO of decisions.

Built once per judged frame and handed to the optional per-part outputs (the MQTT `result` topic, the OPC UA
`LastResult` object and event), so they name a part and its defect alike, and like the alert does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from device.station.alerts import classify_defect, iso_utc
from device.station.camera.base import Frame
from vision.types import InspectionResult

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PartResult:
    """The verdict on one part, as the OPC UA `LastResult` object and `ResultReady` event carry it."""

    frame_id: int
    captured_at: float  # time.time() at capture
    score: float
    threshold: float
    is_defect: bool
    defect_class: str = ""  # empty for good parts; else linear | spot | area | anomaly
    decided_by: str = "edge"  # edge | verifier | fallback (device.station.escalation)
    recipe: str | None = None  # the product the frame was captured under

    def __post_init__(self) -> None:
        if self.frame_id < 0:
            raise ValueError(f"frame_id must be >= 0, got {self.frame_id}")
        if self.is_defect != bool(self.defect_class):
            raise ValueError("defect_class is set exactly when is_defect is true")

    @property
    def verdict(self) -> Literal["OK", "NG"]:
        return "NG" if self.is_defect else "OK"

    @classmethod
    def from_inspection(cls, frame: Frame, result: InspectionResult, decided_by: str = "edge") -> PartResult:
        """Build it the way the alert payload does, so OPC UA and MQTT name a defect alike."""
        height, width = frame.image.shape[:2]
        defect_class = classify_defect(result.boxes, width, height) if result.is_defect else ""
        return cls(
            frame_id=frame.frame_id,
            captured_at=frame.captured_at,
            score=float(result.score),
            threshold=float(result.threshold),
            is_defect=bool(result.is_defect),
            defect_class=defect_class,
            decided_by=decided_by,
            recipe=frame.recipe,
        )

    def to_payload(self, line_id: str, station_id: str, encoder_position: int | None) -> dict[str, Any]:
        """The MQTT `result` message (`schema_version` 1; fields are only ever added)."""
        payload: dict[str, Any] = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "line_id": line_id,
            "station_id": station_id,
            "frame_id": self.frame_id,
            "ts": iso_utc(self.captured_at),
            "verdict": self.verdict,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "defect_class": self.defect_class or None,
            "decided_by": self.decided_by,
            "recipe": self.recipe,
        }
        if encoder_position is not None:
            payload["encoder_position"] = encoder_position
        return payload
