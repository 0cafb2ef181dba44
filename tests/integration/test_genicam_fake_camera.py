"""The GenICam source against Aravis's real GigE Vision stack: arv-fake-gv-camera-0.8 on loopback.

No skip when Aravis or PyGObject is missing: `scripts/setup.sh --dev` installs them, so a missing
piece must fail here loudly.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial

import numpy as np
import pytest
from fake_gige_camera import start_fake_camera, stop_fake_camera, wait_for

from device.config import CameraSettings
from device.station.camera import CameraError, open_source
from device.station.camera.genicam import GenicamOptions, GenicamSource, list_cameras, load_aravis
from device.station.capture import CaptureWorker, FrameQueue

SERIAL = "GVTEST"
_wait_for = wait_for
_start_camera = partial(start_fake_camera, SERIAL)
_stop_camera = stop_fake_camera


@pytest.fixture
def fake_camera() -> Iterator[subprocess.Popen[bytes]]:
    load_aravis()  # fails loudly when PyGObject / Aravis typelib is absent
    process = _start_camera()
    yield process
    if process.poll() is None:
        _stop_camera(process)


def test_cameras_are_listed_with_serial_and_ip(fake_camera: subprocess.Popen[bytes]) -> None:
    found = [c for c in list_cameras() if c["serial"] == SERIAL]
    assert found and found[0]["address"] == "127.0.0.1"


def test_free_run_streams_frames_with_camera_timestamps(fake_camera: subprocess.Popen[bytes]) -> None:
    settings = CameraSettings(source=f"genicam:{SERIAL}", fps=30)
    source = open_source(settings)
    source.open()
    try:
        stamps = []
        for _ in range(5):
            result = source.read()
            assert isinstance(result, tuple)
            image, meta = result
            assert image.dtype == np.uint8 and image.ndim == 2  # Mono8 stays mono until capture resizes it
            stamps.append(meta["camera_timestamp_ns"])
            assert meta["part_mono"] <= time.monotonic()  # the camera's time, mapped onto this box's clock
            assert abs(meta["part_time"] - time.time()) < 60
    finally:
        source.close()
    assert all(b > a for a, b in itertools.pairwise(stamps)), stamps


def test_software_trigger_gives_one_frame_per_trigger(fake_camera: subprocess.Popen[bytes]) -> None:
    source = GenicamSource(GenicamOptions(device="127.0.0.1", trigger="software", exposure_us=2000.0))
    source.open()
    try:
        frame_ids = []
        for _ in range(3):
            source.software_trigger()
            result = source.read()
            assert isinstance(result, tuple)
            frame_ids.append(result[1]["camera_frame_id"])
        assert len(set(frame_ids)) == 3
        assert source._camera.get_exposure_time() == pytest.approx(2000.0)
    finally:
        source.close()


def test_trigger_mode_switches_on_the_running_camera(fake_camera: subprocess.Popen[bytes]) -> None:
    """Free run -> software trigger -> free run without reopening: in software mode the camera sends
    exactly one frame per trigger and nothing else; back in free run it streams again."""
    source = GenicamSource(GenicamOptions(device="127.0.0.1", frame_rate=20.0))
    source.open()
    frame_ids: list[int] = []
    stopped: list[BaseException] = []

    def reader() -> None:
        try:
            while True:
                result = source.read()
                assert isinstance(result, tuple)
                frame_ids.append(result[1]["camera_frame_id"])
        except CameraError as exc:  # interrupted at the end of the test
            stopped.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: len(frame_ids) >= 5, 20), "free run never streamed"
        assert source.set_trigger_mode("software") == "software"
        assert source._camera.get_trigger_source() == "Software"
        # Frames taken before the switch may still drain in; once they have, the camera stays silent.
        time.sleep(1.0)
        before = len(frame_ids)
        assert not _wait_for(lambda: len(frame_ids) > before, 2.0), "still free-running after the switch"
        for n in range(1, 4):
            source.software_trigger()
            assert _wait_for(lambda n=n: len(frame_ids) == before + n, 10)  # type: ignore[misc]
        assert not _wait_for(lambda: len(frame_ids) > before + 3, 2.0), "a trigger gave more than one frame"

        source.set_trigger_mode("free_run")
        assert _wait_for(lambda: len(frame_ids) >= before + 13, 20), "free run did not come back"
        with pytest.raises(CameraError, match="not one of"):
            source.set_trigger_mode("sometimes")
    finally:
        source.interrupt()
        thread.join(timeout=10)
        source.close()
    assert stopped and "interrupted" in str(stopped[0])  # the reader never saw a camera fault


def test_capture_reconnects_after_camera_restart(fake_camera: subprocess.Popen[bytes]) -> None:
    settings = CameraSettings(
        source=f"genicam:{SERIAL}", fps=30, timeout_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=1.0
    )
    worker = CaptureWorker(open_source(settings), settings, FrameQueue(4))
    worker.start()
    restarted: subprocess.Popen[bytes] | None = None
    try:
        assert _wait_for(lambda: worker.frames >= 5), worker.last_error
        _stop_camera(fake_camera)
        assert _wait_for(lambda: not worker.connected), "capture never noticed the camera was gone"
        assert worker.last_error
        restarted = _start_camera()
        before = worker.frames
        assert _wait_for(lambda: worker.connected and worker.frames > before + 5), worker.last_error
        assert worker.reconnects >= 1
    finally:
        worker.stop()
        if restarted is not None:
            _stop_camera(restarted)


def _frame_size(source: GenicamSource) -> tuple[int, int]:
    result = source.read()
    assert isinstance(result, tuple)
    height, width = result[0].shape[:2]
    return width, height


def test_sensor_roi_and_packet_settings_are_applied(fake_camera: subprocess.Popen[bytes]) -> None:
    settings = CameraSettings.model_validate(
        {
            "source": f"genicam:{SERIAL}",
            "fps": 30,
            "genicam_sensor_roi": {"x": 16, "y": 8, "width": 320, "height": 240},
            "genicam_packet_size": 1000,  # not the fake's default (1400), and a valid step from its 220
            "genicam_packet_delay": 10,
        }
    )
    source = GenicamSource(GenicamOptions.from_settings(SERIAL, settings))
    source.open()
    try:
        assert [_frame_size(source) for _ in range(3)] == [(320, 240)] * 3
        camera = source._camera
        assert camera.get_integer("GevSCPSPacketSize") == 1000  # read back from the camera itself
        assert camera.gv_get_packet_size() == 1000  # and Aravis did not renegotiate it away
        assert camera.get_integer("GevSCPD") == 10
        assert tuple(camera.get_region()) == (16, 8, 320, 240)
    finally:
        source.close()


def test_settings_the_camera_refuses_name_the_setting(fake_camera: subprocess.Popen[bytes]) -> None:
    refused = {
        "genicam_trigger_activation": GenicamOptions(  # the fake camera offers RisingEdge only
            device=SERIAL, trigger="hardware", trigger_line="Line0", trigger_activation="FallingEdge"
        ),
        "genicam_packet_size": GenicamOptions(device=SERIAL, packet_size=20_000),  # fake: 220..16404
        "genicam_sensor_roi": GenicamOptions(device=SERIAL, sensor_roi=(0, 0, 4096, 64)),  # 2048 sensor
    }
    for setting, options in refused.items():
        source = GenicamSource(options)
        with pytest.raises(CameraError, match=f"camera.{setting}"):
            source.open()
        source.close()
    # A refusal leaves nothing behind: the same camera opens with good settings right after.
    source = GenicamSource(
        GenicamOptions(
            device=SERIAL, trigger="hardware", trigger_line="Line0", trigger_activation="RisingEdge"
        )
    )
    source.open()
    try:
        assert source._camera.get_string("TriggerActivation") == "RisingEdge"
        assert source._camera.get_string("TriggerSource") == "Line0"
    finally:
        source.close()


def test_trigger_mode_capture_notices_a_killed_camera_and_comes_back(
    fake_camera: subprocess.Popen[bytes],
) -> None:
    """In a trigger mode silence is normal: only Aravis's lost control connection says the camera is gone."""
    settings = CameraSettings(
        source=f"genicam:{SERIAL}",
        genicam_trigger="software",
        timeout_s=1.0,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
    )
    source = GenicamSource(GenicamOptions.from_settings(SERIAL, settings))
    worker = CaptureWorker(source, settings, FrameQueue(4))
    worker.start()
    restarted: subprocess.Popen[bytes] | None = None

    def triggered_frames_flow(target: int) -> bool:
        if worker.connected:
            with contextlib.suppress(CameraError):
                source.software_trigger()
        return worker.frames >= target

    try:
        assert _wait_for(lambda: triggered_frames_flow(2)), worker.last_error
        fake_camera.kill()  # no goodbye: the heartbeat has to find out
        fake_camera.wait(timeout=10)
        assert _wait_for(lambda: not worker.connected, 60), "capture never noticed the camera was gone"
        assert worker.last_error
        restarted = _start_camera()
        before = worker.frames
        assert _wait_for(lambda: triggered_frames_flow(before + 3), 60), worker.last_error
        assert worker.connected and worker.reconnects >= 1
    finally:
        worker.stop()
        if restarted is not None:
            _stop_camera(restarted)


def test_cli_lists_the_fake_camera(fake_camera: subprocess.Popen[bytes]) -> None:
    import json
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "cameras", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cameras = json.loads(out.stdout)
    assert any(c["serial"] == SERIAL and c["address"] == "127.0.0.1" for c in cameras), out.stdout
