"""GigE Vision / USB3 Vision cameras through Aravis (GenICam), behind the FrameSource contract.

`camera.source: genicam:<id|serial|ip>` (empty after the colon: the first camera found). Needs Aravis's
GObject bindings (`gi` + typelib Aravis-0.8); without them `open_source` says why instead of retrying.
The camera's own timestamp (ns) goes into the frame's `truth["camera_timestamp_ns"]`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from device.camera.base import CameraError, CorruptFrame, SourceConfigError, SourceRead
from device.camera.genicam_clock import CameraClock
from device.camera.genicam_pixels import SUPPORTED_PIXEL_FORMATS, to_bgr

TRIGGER_MODES = ("free_run", "software", "hardware")
_POP_SLICE_US = 200_000  # pop in short slices so interrupt() and close() are seen promptly


def load_aravis() -> Any:
    """Import Aravis through PyGObject, or raise SourceConfigError saying what is missing."""
    try:
        import gi  # type: ignore[import-untyped, import-not-found, unused-ignore]

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except (ImportError, ValueError) as exc:
        raise SourceConfigError(
            f"camera.source: GenICam unavailable ({exc}); install PyGObject and gir1.2-aravis-0.8 "
            "(bash scripts/setup.sh --station)"
        ) from exc
    return Aravis


@dataclass(frozen=True)
class GenicamOptions:
    """What to set on the camera at every (re)connect."""

    device: str = ""
    pixel_format: str = "Mono8"
    exposure_us: float | None = None
    gain_db: float | None = None
    frame_rate: float | None = None
    trigger: str = "free_run"
    trigger_line: str = "Line1"
    buffers: int = 8
    sensor_roi: tuple[int, int, int, int] | None = None  # x, y, width, height read out on the sensor
    timeout_s: float = 5.0


def list_cameras() -> list[dict[str, str]]:
    """Every GenICam camera Aravis sees now: id, serial, address, model."""
    aravis = load_aravis()
    aravis.update_device_list()
    return [
        {
            "id": str(aravis.get_device_id(i)),
            "serial": str(aravis.get_device_serial_nbr(i) or ""),
            "address": str(aravis.get_device_address(i) or ""),
            "model": str(aravis.get_device_model(i) or ""),
        }
        for i in range(aravis.get_n_devices())
    ]


def resolve_device_id(wanted: str, cameras: list[dict[str, str]]) -> str:
    """Match `wanted` against id, serial or IP address; empty picks the first camera."""
    if not cameras:
        raise CameraError("no GenICam camera found")
    if not wanted:
        return cameras[0]["id"]
    for cam in cameras:
        if wanted in (cam["id"], cam["serial"], cam["address"]):
            return cam["id"]
    raise CameraError(f"GenICam camera {wanted!r} not found (seen: {', '.join(c['id'] for c in cameras)})")


class GenicamSource:
    """One GenICam camera streaming into a bounded pool of `buffers` Aravis buffers."""

    def __init__(self, options: GenicamOptions) -> None:
        if options.pixel_format not in SUPPORTED_PIXEL_FORMATS:
            raise SourceConfigError(
                f"camera.genicam_pixel_format: {options.pixel_format!r} not one of "
                f"{', '.join(SUPPORTED_PIXEL_FORMATS)}"
            )
        if options.trigger not in TRIGGER_MODES:
            raise SourceConfigError(
                f"camera.genicam_trigger: {options.trigger!r} not one of {', '.join(TRIGGER_MODES)}"
            )
        self._aravis = load_aravis()
        self.options = options
        self.name = f"genicam:{options.device or 'first'}"
        self._camera: Any = None
        self._stream: Any = None
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self.incomplete_frames = 0
        self.triggers_fired = 0
        self.clock = CameraClock()
        self.last_part_mono = time.monotonic()  # trigger watchdog: when a part (frame) last arrived

    def open(self) -> None:
        """Connect, apply settings, start acquisition; any failure is a CameraError so capture backs off."""
        self._interrupted.clear()
        self.clock.reset()  # a rebooted camera restarts its timestamp counter
        self.last_part_mono = time.monotonic()
        opts = self.options
        try:
            device_id = resolve_device_id(opts.device, list_cameras())
            camera = self._aravis.Camera.new(device_id)
            camera.set_pixel_format_from_string(opts.pixel_format)
            if opts.sensor_roi is not None:
                camera.set_region(*opts.sensor_roi)
            if opts.exposure_us is not None:
                camera.set_exposure_time(float(opts.exposure_us))
            if opts.gain_db is not None:
                camera.set_gain(float(opts.gain_db))
            if opts.frame_rate is not None and opts.trigger == "free_run":
                camera.set_frame_rate(float(opts.frame_rate))
            if opts.trigger == "software":
                camera.set_trigger("Software")
            elif opts.trigger == "hardware":
                camera.set_trigger(opts.trigger_line)
            else:
                camera.clear_triggers()
            camera.set_acquisition_mode(self._aravis.AcquisitionMode.CONTINUOUS)
            stream = camera.create_stream(None, None)
            payload = camera.get_payload()
            for _ in range(opts.buffers):
                stream.push_buffer(self._aravis.Buffer.new_allocate(payload))
            camera.start_acquisition()
        except Exception as exc:  # GLib.Error and friends: the camera is not reachable now
            raise CameraError(f"{self.name}: cannot open: {exc}") from exc
        with self._lock:
            self._camera, self._stream = camera, stream

    def _connected(self) -> Any:
        with self._lock:
            camera = self._camera
        if camera is None:
            raise CameraError(f"{self.name}: not connected")
        return camera

    def software_trigger(self) -> int:
        """Fire one software trigger (the API / MQTT `camera_trigger` command); returns how many so far."""
        camera = self._connected()
        try:
            camera.software_trigger()
        except Exception as exc:
            raise CameraError(f"{self.name}: software trigger failed: {exc}") from exc
        self.triggers_fired += 1
        return self.triggers_fired

    def apply(self, *, exposure_us: float | None = None, gain_db: float | None = None) -> dict[str, float]:
        """Set exposure/gain on the running camera; returns what the camera reports back (it may round)."""
        camera = self._connected()
        try:
            if exposure_us is not None:
                camera.set_exposure_time(float(exposure_us))
            if gain_db is not None:
                camera.set_gain(float(gain_db))
            applied = {"exposure_us": float(camera.get_exposure_time()), "gain_db": float(camera.get_gain())}
        except Exception as exc:
            raise CameraError(f"{self.name}: cannot apply settings: {exc}") from exc
        self.options = replace(
            self.options,
            exposure_us=exposure_us if exposure_us is not None else self.options.exposure_us,
            gain_db=gain_db if gain_db is not None else self.options.gain_db,
        )
        return applied

    def read(self) -> SourceRead:
        """Next complete frame; incomplete ones raise CorruptFrame, free-run silence raises CameraError.

        In trigger mode silence is normal (no part), so read keeps waiting until interrupted.
        """
        stream = self._stream
        if stream is None:
            raise CameraError(f"{self.name}: not open")
        waited_us = 0
        limit_us = int(self.options.timeout_s * 1_000_000)
        while True:
            if self._interrupted.is_set():
                raise CameraError(f"{self.name}: interrupted")
            buffer = stream.timeout_pop_buffer(_POP_SLICE_US)
            if buffer is not None:
                break
            waited_us += _POP_SLICE_US
            if self.options.trigger == "free_run" and waited_us >= limit_us:
                raise CameraError(f"{self.name}: no frame for {self.options.timeout_s:g} s (camera gone?)")
        try:
            if buffer.get_status() != self._aravis.BufferStatus.SUCCESS:
                self.incomplete_frames += 1
                raise CorruptFrame(f"{self.name}: buffer status {buffer.get_status().value_nick}")
            image = to_bgr(
                bytes(buffer.get_data()),
                buffer.get_image_width(),
                buffer.get_image_height(),
                self.options.pixel_format,
            )
            camera_ns = int(buffer.get_timestamp())
            meta: dict[str, Any] = {
                "camera_timestamp_ns": camera_ns,
                "camera_frame_id": int(buffer.get_frame_id()),
            }
            if camera_ns > 0:
                self.clock.observe(camera_ns, int(buffer.get_system_timestamp()))
                mapped = self.clock.to_host(camera_ns)
                if mapped is not None:  # capture stamps the frame (and so the reject gate) with these
                    meta["part_time"], meta["part_mono"] = mapped
        finally:
            stream.push_buffer(buffer)
        self.last_part_mono = time.monotonic()
        return image, meta

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        with self._lock:
            camera, self._camera, self._stream = self._camera, None, None
        if camera is not None:
            with contextlib.suppress(Exception):  # the camera may already be gone; closing must not raise
                camera.stop_acquisition()
