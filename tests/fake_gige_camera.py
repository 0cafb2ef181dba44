"""Aravis's GigE Vision simulator (arv-fake-gv-camera-0.8) on loopback, for the GenICam tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

from device.station.camera.genicam import list_cameras

FAKE_CAMERA = "arv-fake-gv-camera-0.8"


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll a condition generously; the caller asserts the result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start_fake_camera(serial: str) -> subprocess.Popen[bytes]:
    """Serve a fake GigE camera with `serial` on 127.0.0.1 and wait until Aravis discovers it."""
    binary = shutil.which(FAKE_CAMERA)
    assert binary, f"{FAKE_CAMERA} missing: install aravis-tools (bash scripts/setup.sh --dev)"
    process = subprocess.Popen([binary, "-i", "127.0.0.1", "-s", serial], stdout=subprocess.DEVNULL)
    found = wait_for(lambda: any(c["serial"] == serial for c in list_cameras()))
    if not found:
        stop_fake_camera(process)
    assert found, "fake GigE camera never appeared on 127.0.0.1"
    return process


def stop_fake_camera(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)
