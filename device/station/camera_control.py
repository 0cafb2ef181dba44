"""Runtime commands on the camera itself (software trigger, exposure, gain, trigger mode), for GenICam
sources only.

The runtime hands in whatever source capture runs; anything but a GenICam camera is refused with a reason
(ValueError), which the one command door turns into an audited refusal.
"""

from __future__ import annotations

import time
from typing import Any

from device.config import CameraSettings
from device.station.camera.base import CameraError, FrameSource
from device.station.commands import SetCameraSettings

Change = tuple[Any, Any, str]


def _genicam(source: FrameSource | None) -> Any:
    from device.station.camera.genicam import GenicamSource

    if source is None:
        raise ValueError("the line is stopped: no camera is open")
    if not isinstance(source, GenicamSource):
        raise ValueError(f"camera {source.name!r} is not a GenICam camera")
    return source


def trigger(source: FrameSource | None) -> Change:
    """One software trigger; refused unless the camera runs in software-trigger mode."""
    camera = _genicam(source)
    if camera.options.trigger != "software":
        raise ValueError(f"camera trigger mode is {camera.options.trigger!r}, not 'software'")
    try:
        count = camera.software_trigger()
    except CameraError as exc:
        raise ValueError(str(exc)) from exc
    return None, count, "software trigger fired"


def apply_settings(
    source: FrameSource | None, settings: CameraSettings, command: SetCameraSettings
) -> Change:
    """Set exposure, gain and/or trigger mode on the live camera and in `settings`, so a reconnect keeps
    them."""
    camera = _genicam(source)
    if command.exposure_us is None and command.gain_db is None and command.trigger is None:
        raise ValueError("give exposure_us, gain_db and/or trigger")
    old = {
        "exposure_us": settings.genicam_exposure_us,
        "gain_db": settings.genicam_gain_db,
        "trigger": settings.genicam_trigger,
    }
    try:
        if command.trigger is not None:
            camera.set_trigger_mode(command.trigger)
            settings.genicam_trigger = command.trigger
        applied = camera.apply(exposure_us=command.exposure_us, gain_db=command.gain_db)
    except CameraError as exc:
        raise ValueError(str(exc)) from exc
    if command.exposure_us is not None:
        settings.genicam_exposure_us = command.exposure_us
    if command.gain_db is not None:
        settings.genicam_gain_db = command.gain_db
    return old, {**applied, "trigger": camera.options.trigger}, "camera settings changed"


def trigger_watchdog(source: FrameSource | None, limit_s: float | None) -> tuple[bool, str] | None:
    """(ok, detail) for health in a trigger mode: "no parts for N s" instead of waiting silently.

    None when it does not apply (watchdog off, not a GenICam camera, or free run).
    """
    from device.station.camera.genicam import GenicamSource

    if limit_s is None or not isinstance(source, GenicamSource) or source.options.trigger == "free_run":
        return None
    idle = time.monotonic() - source.last_part_mono
    if idle > limit_s:
        return False, f"no parts for {idle:.0f} s ({source.options.trigger} trigger; limit {limit_s:g} s)"
    return True, f"last part {idle:.0f} s ago"
