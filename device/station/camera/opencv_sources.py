"""Sources read through `cv2.VideoCapture`: USB/V4L2 cameras, RTSP, GStreamer pipelines, video files."""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

from device.station.camera.base import CameraError
from device.station.camera.pacing import Pacer


@functools.lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    """pip's opencv wheels are built without GStreamer; a `gst:` source needs a distro/custom build."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class LiveCaptureSource:
    """A live camera or stream through OpenCV. A failed read means the device or stream is gone (unplugged,
    network down), so it raises CameraError and capture reconnects with backoff."""

    def __init__(self, target: str | int, api_preference: int, name: str, timeout_s: float) -> None:
        self.name = name
        self._target = target
        self._api = api_preference
        self._timeout_ms = int(timeout_s * 1000)
        self._capture: cv2.VideoCapture | None = None
        self._lock = threading.Lock()

    def _params(self) -> list[int]:
        # Only FFmpeg honours these; other backends refuse to open when given properties they do not know.
        if self._api == cv2.CAP_FFMPEG:
            ms = self._timeout_ms
            return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        return []

    def open(self) -> None:
        self.close()
        try:
            capture = cv2.VideoCapture(self._target, self._api, self._params())
        except cv2.error as exc:
            raise CameraError(f"{self.name}: cannot open: {exc}") from exc
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"{self.name}: cannot open (device absent, busy, or stream unreachable)")
        with self._lock:
            self._capture = capture

    def read(self) -> np.ndarray:
        capture = self._capture
        if capture is None:
            raise CameraError(f"{self.name}: not open")
        ok, image = capture.read()
        if not ok or image is None:
            raise CameraError(f"{self.name}: no frame (device or stream lost)")
        return image

    def close(self) -> None:
        with self._lock:
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class VideoFileSource:
    """A recorded video played as a camera, at the file's own frame rate (falling back to `fps`), so a
    replay feeds the line at the speed it was filmed. At the end it loops or reports the end (None)."""

    def __init__(self, path: str, fps: float, loop: bool) -> None:
        self.path = path
        self.name = f"video:{path}"
        self.loop = loop
        self._fallback_fps = fps
        self._capture: cv2.VideoCapture | None = None
        self._pacer = Pacer(fps)
        self._frames_this_pass = 0

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.path, cv2.CAP_ANY)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"{self.name}: cannot open (missing file or unsupported codec)")
        return capture

    def open(self) -> None:
        self.close()
        self._capture = self._open_capture()
        native_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._pacer = Pacer(native_fps if 0.0 < native_fps <= 240.0 else self._fallback_fps)
        self._frames_this_pass = 0

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise CameraError(f"{self.name}: not open")
        ok, image = self._capture.read()
        if not ok:
            if self._frames_this_pass == 0:
                raise CameraError(f"{self.name}: no decodable frames")
            if not self.loop:
                return None
            self._capture.release()
            self._capture = self._open_capture()
            self._frames_this_pass = 0
            ok, image = self._capture.read()
            if not ok:
                raise CameraError(f"{self.name}: no frame after rewinding")
        self._frames_this_pass += 1
        if not self._pacer.wait():
            raise CameraError(f"{self.name}: interrupted")
        return image

    def interrupt(self) -> None:
        self._pacer.interrupt()

    def close(self) -> None:
        self._pacer.interrupt()
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
