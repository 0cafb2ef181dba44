"""GenICam buffer decoding and camera matching, without a camera."""

from __future__ import annotations

import numpy as np
import pytest

from device.station.camera.base import CameraError, CorruptFrame
from device.station.camera.genicam import resolve_device_id
from device.station.camera.genicam_pixels import decode_buffer


def test_mono8_stays_one_channel_for_capture_to_resize() -> None:
    raw = bytes(range(6))
    image = decode_buffer(raw, 3, 2, "Mono8")
    assert image.shape == (2, 3)
    assert image[1, 2] == 5


def test_mono12_is_scaled_to_eight_bits() -> None:
    raw = np.array([0, 4095, 2048, 16], dtype="<u2").tobytes()
    image = decode_buffer(raw, 2, 2, "Mono12")
    assert image.ravel().tolist() == [0, 255, 128, 1]


def test_rgb8_is_reordered_decode_buffer() -> None:
    image = decode_buffer(bytes([10, 20, 30]), 1, 1, "RGB8")
    assert image[0, 0].tolist() == [30, 20, 10]


def test_bayer_rg_red_patch_decodes_red() -> None:
    # RGGB mosaic of a pure red scene: R sites 200, G and B sites 0.
    mosaic = np.zeros((8, 8), np.uint8)
    mosaic[0::2, 0::2] = 200
    image = decode_buffer(mosaic.tobytes(), 8, 8, "BayerRG8")
    b, g, r = image[4, 4].tolist()
    assert r > 150 and g < 50 and b < 50


def test_short_buffer_is_a_corrupt_frame() -> None:
    with pytest.raises(CorruptFrame, match="needs 12"):
        decode_buffer(b"\x00" * 5, 4, 3, "Mono8")


def test_unknown_pixel_format_is_named() -> None:
    with pytest.raises(ValueError, match="YUV422"):
        decode_buffer(b"", 1, 1, "YUV422")


CAMERAS = [
    {"id": "Aravis-Fake-GV01", "serial": "GV01", "address": "127.0.0.1", "model": "Fake"},
    {"id": "Basler-123", "serial": "123", "address": "10.0.0.5", "model": "acA"},
]


@pytest.mark.parametrize("wanted", ["Basler-123", "123", "10.0.0.5"])
def test_camera_matched_by_id_serial_or_ip(wanted: str) -> None:
    assert resolve_device_id(wanted, CAMERAS) == "Basler-123"


def test_empty_picks_first_and_unknown_is_named() -> None:
    assert resolve_device_id("", CAMERAS) == "Aravis-Fake-GV01"
    with pytest.raises(CameraError, match="'nope' not found"):
        resolve_device_id("nope", CAMERAS)
    with pytest.raises(CameraError, match="no GenICam camera"):
        resolve_device_id("", [])


def test_camera_clock_uses_the_smallest_transport_gap() -> None:
    import time

    from device.station.camera.genicam_clock import CameraClock

    clock = CameraClock()
    assert clock.to_host(5) is None
    now_ns = time.time_ns()
    clock.observe(camera_ns=1_000_000_000, arrival_wall_ns=now_ns - 300_000_000)  # slow arrival
    clock.observe(camera_ns=1_100_000_000, arrival_wall_ns=now_ns - 210_000_000)  # 10 ms smaller gap wins
    mapped = clock.to_host(1_200_000_000)
    assert mapped is not None
    wall, mono = mapped
    expected = (now_ns - 210_000_000 - 1_100_000_000 + 1_200_000_000) / 1e9
    assert wall == pytest.approx(expected, abs=1e-6)
    assert mono <= time.monotonic()
    clock.reset()
    assert clock.to_host(5) is None


def test_trigger_watchdog_reports_no_parts() -> None:
    from device.station.camera.genicam import GenicamOptions, GenicamSource
    from device.station.camera_control import trigger_watchdog

    source = GenicamSource(GenicamOptions(device="x", trigger="hardware"))  # never opened: no camera needed
    assert trigger_watchdog(source, None) is None
    ok, _ = trigger_watchdog(source, 3600.0) or (None, "")
    assert ok is True
    source.last_part_mono -= 120
    ok, detail = trigger_watchdog(source, 60.0) or (None, "")
    assert ok is False and "no parts for 120 s" in detail
    free = GenicamSource(GenicamOptions(device="x"))
    free.last_part_mono -= 120
    assert trigger_watchdog(free, 60.0) is None  # free run: silence is a camera fault, not a missing part
