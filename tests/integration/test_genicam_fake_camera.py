"""The GenICam source against Aravis's real GigE Vision stack: arv-fake-gv-camera-0.8 on loopback.

No skip when Aravis or PyGObject is missing: `scripts/setup.sh --dev` installs them, so a missing
piece must fail here loudly.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from functools import partial

import pytest
from fake_gige_camera import start_fake_camera, stop_fake_camera, wait_for

from device.camera import open_source
from device.camera.genicam import GenicamOptions, GenicamSource, list_cameras, load_aravis
from device.capture import CaptureWorker, FrameQueue
from device.config import CameraSettings

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
            assert image.ndim == 3 and image.shape[2] == 3
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
