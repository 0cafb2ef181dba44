"""Fleet rollout as this station sees it (viewer): releases handled, their outcomes, the keys it trusts.

Releases arrive signed over MQTT (`device.station.rollout`, docs/FLEET_ROLLOUT.md); nothing here changes them.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AUTH_RESPONSES, RuntimeDep, Viewer
from device.station.rollout.view import RolloutView

router = APIRouter(prefix="/fleet", tags=["fleet"], responses=AUTH_RESPONSES)


@router.get("/rollout", response_model=RolloutView)
def rollout(runtime: RuntimeDep, _: Viewer) -> RolloutView:
    """`enabled` false when `rollout.enabled` is off; keys appear only as sha256 fingerprints."""
    return runtime.rollout_view()
