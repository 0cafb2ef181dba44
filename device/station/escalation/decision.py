"""Who decided a part: the edge alone, a plant verifier, or the edge after escalation failed (fallback).

Kept apart from the MQTT client so the inspection worker and the alert builder can name a decision
without importing the network side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from device.wire.escalation import VerifyResponse

DecidedBy = Literal["edge", "verifier", "fallback"]


@dataclass(frozen=True)
class Decision:
    """Who decided a part, and what the verifier said when it was asked."""

    decided_by: DecidedBy = "edge"
    fallback_reason: str | None = None
    edge_is_defect: bool | None = None
    verifier: VerifyResponse | None = None
    held_ms: float | None = None  # how long the line held the decision (escalated parts)

    def alert_fields(self) -> dict[str, Any]:
        """Fields added to the alert payload (schema_version 1 only ever gains fields)."""
        fields: dict[str, Any] = {"decided_by": self.decided_by}
        if self.edge_is_defect is not None:
            fields["edge_is_defect"] = self.edge_is_defect
        if self.fallback_reason is not None:
            fields["fallback_reason"] = self.fallback_reason
        if self.held_ms is not None:
            fields["held_ms"] = round(self.held_ms, 3)
        answer = self.verifier
        if answer is not None and answer.ok:
            fields["verifier"] = {
                "verifier_id": answer.verifier_id,
                "model_version": answer.model_version,
                "score": answer.score,
                "threshold": answer.threshold,
                "is_defect": answer.is_defect,
                "verifier_ms": answer.verifier_ms,
                "summary": answer.summary.model_dump() if answer.summary else None,
            }
        return fields


EDGE_DECISION = Decision()
