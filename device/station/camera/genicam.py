"""GigE Vision / USB3 Vision cameras through Aravis (GenICam), behind the FrameSource contract.

`camera.source: genicam:<id|serial|ip>` (empty after the colon: the first camera found). Needs Aravis's
GObject bindings (`gi` + typelib Aravis-0.8); without them `open_source` says why instead of retrying.
The camera's own timestamp (ns) goes into the frame's `truth["camera_timestamp_ns"]`.

Transport and sensor settings (packet size and delay, trigger edge, sensor ROI) are written at every
(re)connect and read back; a camera that lacks the feature, or will not take the value, refuses to open
with a CameraError naming the `camera.genicam_*` setting, instead of streaming with something else.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from device.station.camera.base import CameraError, CorruptFrame, SourceConfigError, SourceRead
from device.station.camera.genicam_clock import CameraClock
from device.station.camera.genicam_pixels import SUPPORTED_PIXEL_FORMATS, decode_buffer

if TYPE_CHECKING:
    from device.config import CameraSettings

log = logging.getLogger(__name__)

TRIGGER_MODES = ("free_run", "software", "hardware")
TRIGGER_ACTIVATIONS = ("RisingEdge", "FallingEdge")
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
    trigger_activation: str = "RisingEdge"  # hardware trigger edge
    buffers: int = 8
    sensor_roi: tuple[int, int, int, int] | None = None  # x, y, width, height read out on the sensor
    packet_size: int | None = None  # GigE GevSCPSPacketSize (bytes); None: Aravis negotiates
    packet_delay: int | None = None  # GigE GevSCPD (timestamp ticks); None: the camera's own
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, device: str, settings: CameraSettings) -> GenicamOptions:
        """The options `camera.genicam_*` (and fps, timeout_s) describe, for the camera `device`."""
        roi = settings.genicam_sensor_roi
        return cls(
            device=device,
            pixel_format=settings.genicam_pixel_format,
            exposure_us=settings.genicam_exposure_us,
            gain_db=settings.genicam_gain_db,
            frame_rate=settings.fps,
            trigger=settings.genicam_trigger,
            trigger_line=settings.genicam_trigger_line,
            trigger_activation=settings.genicam_trigger_activation,
            buffers=settings.genicam_buffers,
            sensor_roi=None if roi is None else (roi.x, roi.y, roi.width, roi.height),
            packet_size=settings.genicam_packet_size,
            packet_delay=settings.genicam_packet_delay,
            timeout_s=settings.timeout_s,
        )


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
        if options.trigger_activation not in TRIGGER_ACTIVATIONS:
            raise SourceConfigError(
                f"camera.genicam_trigger_activation: {options.trigger_activation!r} not one of "
                f"{', '.join(TRIGGER_ACTIVATIONS)}"
            )
        roi = options.sensor_roi
        if roi is not None and (len(roi) != 4 or min(roi[:2]) < 0 or min(roi[2:]) <= 0):
            raise SourceConfigError(
                f"camera.genicam_sensor_roi: {roi!r} is not x >= 0, y >= 0, width > 0, height > 0"
            )
        for setting, value in (("packet_size", options.packet_size), ("packet_delay", options.packet_delay)):
            if value is not None and value < 0:
                raise SourceConfigError(f"camera.genicam_{setting}: {value} is negative")
        self._aravis = load_aravis()
        self.options = options
        self.name = f"genicam:{options.device or 'first'}"
        self._camera: Any = None
        self._stream: Any = None
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self._control_lost = threading.Event()  # Aravis's heartbeat gave up: the camera is gone
        self._lost_handler: tuple[Any, int] | None = None
        self.incomplete_frames = 0
        self.triggers_fired = 0
        self.clock = CameraClock()
        self.last_part_mono = time.monotonic()  # trigger watchdog: when a part (frame) last arrived

    def open(self) -> None:
        """Connect, apply settings, start acquisition; any failure is a CameraError so capture backs off."""
        self._interrupted.clear()
        self._control_lost.clear()
        self.clock.reset()  # a rebooted camera restarts its timestamp counter
        self.last_part_mono = time.monotonic()
        opts = self.options
        device: Any = None
        handler = 0
        try:
            device_id = resolve_device_id(opts.device, list_cameras())
            camera = self._aravis.Camera.new(device_id)
            device = camera.get_device()
            handler = device.connect("control-lost", self._on_control_lost)
            camera.set_pixel_format_from_string(opts.pixel_format)
            if opts.sensor_roi is not None:
                _set_sensor_roi(camera, opts.sensor_roi)
            if opts.exposure_us is not None:
                camera.set_exposure_time(float(opts.exposure_us))
            if opts.gain_db is not None:
                camera.set_gain(float(opts.gain_db))
            _configure_trigger(camera, opts)
            if opts.packet_size is not None:
                self._set_packet_size(camera, opts.packet_size)
            if opts.packet_delay is not None:
                _require_gige(camera, "genicam_packet_delay")
                _set_integer_feature(camera, "GevSCPD", opts.packet_delay, "genicam_packet_delay")
            camera.set_acquisition_mode(self._aravis.AcquisitionMode.CONTINUOUS)
            stream = camera.create_stream(None, None)
            payload = camera.get_payload()
            for _ in range(opts.buffers):
                stream.push_buffer(self._aravis.Buffer.new_allocate(payload))
            camera.start_acquisition()
        except Exception as exc:  # GLib.Error and friends, or a setting the camera refuses
            if handler:
                with contextlib.suppress(Exception):
                    device.disconnect(handler)
            raise CameraError(f"{self.name}: cannot open: {exc}") from exc
        with self._lock:
            self._camera, self._stream = camera, stream
            self._lost_handler = (device, handler)

    def _on_control_lost(self, *_: Any) -> None:  # called on Aravis's heartbeat thread
        self._control_lost.set()

    def _set_packet_size(self, camera: Any, size: int) -> None:
        """A fixed packet size: Aravis must not renegotiate it away when the stream starts."""
        setting = "genicam_packet_size"
        _require_gige(camera, setting)
        if _feature_available(camera, "GevSCPSPacketSize"):
            _check_integer(camera, "GevSCPSPacketSize", size, setting)
        camera.gv_set_packet_size_adjustment(self._aravis.GvPacketSizeAdjustment.NEVER)
        camera.gv_set_packet_size(size)
        got = int(camera.gv_get_packet_size())
        if got != size:
            raise CameraError(
                f"camera.{setting}: the camera took {got} instead of {size} (GevSCPSPacketSize)"
            )

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

    def set_trigger_mode(self, mode: str) -> str:
        """Switch free run / software / hardware trigger on the running camera (acquisition stops for the
        switch, as GenICam locks TriggerMode while streaming); a reconnect keeps the new mode."""
        if mode not in TRIGGER_MODES:
            raise CameraError(f"trigger mode {mode!r} not one of {', '.join(TRIGGER_MODES)}")
        camera = self._connected()
        options = replace(self.options, trigger=mode)
        try:
            camera.stop_acquisition()
            _configure_trigger(camera, options)
            camera.start_acquisition()
        except Exception as exc:
            raise CameraError(f"{self.name}: cannot switch to {mode} trigger: {exc}") from exc
        self.options = options
        self.last_part_mono = time.monotonic()  # the watchdog counts from the switch
        return mode

    def read(self) -> SourceRead:
        """Next complete frame; incomplete ones raise CorruptFrame, free-run silence raises CameraError.

        In trigger mode silence is normal (no part), so read keeps waiting until interrupted.
        """
        stream = self._stream
        if stream is None:
            raise CameraError(f"{self.name}: not open")
        waited_us = 0
        limit_us = int(self.options.timeout_s * 1_000_000)
        mode = self.options.trigger
        while True:
            if self.options.trigger != mode:  # switched while waiting: silence counts from the switch
                mode, waited_us = self.options.trigger, 0
            if self._interrupted.is_set():
                raise CameraError(f"{self.name}: interrupted")
            if self._control_lost.is_set():  # in a trigger mode silence alone never says the camera is gone
                raise CameraError(f"{self.name}: control lost (camera gone?)")
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
            image = decode_buffer(
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
            lost_handler, self._lost_handler = self._lost_handler, None
        if lost_handler is not None:
            with contextlib.suppress(Exception):
                lost_handler[0].disconnect(lost_handler[1])
        if camera is not None and not self._control_lost.is_set():  # a lost camera would only time out
            with contextlib.suppress(Exception):  # the camera may already be gone; closing must not raise
                camera.stop_acquisition()


def _configure_trigger(camera: Any, opts: GenicamOptions) -> None:
    """Free run at the set frame rate, or wait for a software or hardware (line, edge) trigger."""
    if opts.trigger == "software":
        camera.set_trigger("Software")
    elif opts.trigger == "hardware":
        camera.set_trigger(opts.trigger_line)  # Aravis sets RisingEdge here; the setting follows
        _set_trigger_activation(camera, opts.trigger_activation)
    else:
        camera.clear_triggers()
        if opts.frame_rate is not None:
            camera.set_frame_rate(float(opts.frame_rate))


def _feature_available(camera: Any, feature: str) -> bool:
    try:
        return bool(camera.is_feature_available(feature))
    except Exception:  # some cameras answer an unknown name with an error instead of False
        return False


def _require_gige(camera: Any, setting: str) -> None:
    if not camera.is_gv_device():
        raise CameraError(
            f"camera.{setting}: only GigE Vision cameras have it; leave it null for this camera"
        )


def _check_integer(camera: Any, feature: str, value: int, setting: str) -> None:
    """Refuse a value outside the camera's bounds or off its increment, before writing it."""
    low, high = (int(v) for v in camera.get_integer_bounds(feature))
    if not low <= value <= high:
        raise CameraError(f"camera.{setting}: {value} is outside this camera's {low}..{high} ({feature})")
    step = int(camera.get_integer_increment(feature))
    if step > 1 and (value - low) % step:
        raise CameraError(f"camera.{setting}: {value} is not {low} + a multiple of {step} ({feature})")


def _set_integer_feature(camera: Any, feature: str, value: int, setting: str) -> None:
    if not _feature_available(camera, feature):
        raise CameraError(f"camera.{setting}: this camera has no {feature}; leave it null")
    _check_integer(camera, feature, value, setting)
    camera.set_integer(feature, value)
    got = int(camera.get_integer(feature))
    if got != value:
        raise CameraError(f"camera.{setting}: the camera took {got} instead of {value} ({feature})")


def _set_trigger_activation(camera: Any, edge: str) -> None:
    setting = "genicam_trigger_activation"
    if not _feature_available(camera, "TriggerActivation"):
        if edge == "RisingEdge":  # the GenICam default edge; such cameras have no other
            log.warning("camera has no TriggerActivation; assuming it triggers on the rising edge")
            return
        raise CameraError(f"camera.{setting}: this camera has no TriggerActivation, so no {edge}")
    offered = [str(e) for e in camera.dup_available_enumerations_as_strings("TriggerActivation")]
    if edge not in offered:
        raise CameraError(
            f"camera.{setting}: {edge!r} not offered by this camera (TriggerActivation: {', '.join(offered)})"
        )
    camera.set_string("TriggerActivation", edge)
    got = str(camera.get_string("TriggerActivation"))
    if got != edge:
        raise CameraError(f"camera.{setting}: the camera kept {got!r} instead of {edge!r}")


def _set_sensor_roi(camera: Any, roi: tuple[int, int, int, int]) -> None:
    """Read out only `roi` of the sensor; refused if it does not fit or the camera would round it."""
    setting = "genicam_sensor_roi"
    x, y, width, height = roi
    sensor_w, sensor_h = (int(v) for v in camera.get_sensor_size())
    if sensor_w > 0 and sensor_h > 0 and (x + width > sensor_w or y + height > sensor_h):
        raise CameraError(
            f"camera.{setting}: {width}x{height} at ({x}, {y}) does not fit the {sensor_w}x{sensor_h} sensor"
        )
    if (x or y) and not camera.is_region_offset_available():
        raise CameraError(f"camera.{setting}: this camera has no OffsetX/OffsetY; use x = y = 0")
    checks = (
        ("width", width, camera.get_width_bounds(), camera.get_width_increment()),
        ("height", height, camera.get_height_bounds(), camera.get_height_increment()),
    )
    for name, value, (low, high), step in checks:
        if not int(low) <= value <= int(high):
            raise CameraError(f"camera.{setting}: {name} {value} is outside this camera's {low}..{high}")
        if int(step) > 1 and (value - int(low)) % int(step):
            raise CameraError(f"camera.{setting}: {name} {value} is not {low} + a multiple of {step}")
    if x or y:
        for name, value, step in (
            ("x", x, camera.get_x_offset_increment()),
            ("y", y, camera.get_y_offset_increment()),
        ):
            if int(step) > 1 and value % int(step):
                raise CameraError(f"camera.{setting}: {name} {value} is not a multiple of {step}")
    camera.set_region(x, y, width, height)
    got = tuple(int(v) for v in camera.get_region())
    if got != roi:
        raise CameraError(f"camera.{setting}: the camera made {got} of {roi} (x, y, width, height)")
