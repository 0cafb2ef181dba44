"""Camera sources behind one interface, chosen from `CameraSettings.source` by `open_source`."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from device.config import CameraSettings
from device.station.camera.base import (
    CameraError,
    CorruptFrame,
    Frame,
    FrameSource,
    SourceConfigError,
    SourceRead,
)

__all__ = [
    "CameraError",
    "CorruptFrame",
    "Frame",
    "FrameSource",
    "SourceConfigError",
    "SourceRead",
    "describe_source",
    "open_source",
]

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".mjpg", ".ts"})
SIMULATOR_MIN_SIZE = 32  # LineSimulator renders parts at least this large; capture resizes down after
_DEVICE_PATH = re.compile(r"^/dev/video\d+$")


def describe_source(source: str) -> str:
    """What kind of source a `camera.source` string names, without opening anything."""
    text = source.strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if text == "simulator":
        return "simulator"
    if text.isdigit() or _DEVICE_PATH.match(text):
        return "v4l2"
    if text.startswith("gst:"):
        return "gstreamer"
    if text.startswith("genicam:"):
        return "genicam"
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "mjpeg"
    if scheme == "file":
        return describe_source(urlsplit(text).path)
    if scheme:
        return "unknown"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "video"
    return "missing"


def open_source(settings: CameraSettings) -> FrameSource:
    """Build the source `settings.source` names. It is not connected yet (the capture worker opens it and
    reconnects); anything that can never work raises SourceConfigError now, naming `camera.source`."""
    text = settings.source.strip()
    kind = describe_source(text)
    if text.lower().startswith("file://"):
        text = urlsplit(text).path
    if kind == "simulator":
        return _simulator(settings)
    if kind == "v4l2":
        return _v4l2(text, settings)
    if kind == "gstreamer":
        return _gstreamer(text, settings)
    if kind == "genicam":
        return _genicam(text, settings)
    if kind == "rtsp":
        return _rtsp(text, settings)
    if kind == "mjpeg":
        return _mjpeg(text, settings)
    if kind == "folder":
        return _folder(text, settings)
    if kind == "video":
        return _video(text, settings)
    if kind == "unknown":
        raise SourceConfigError(
            f"camera.source: unsupported scheme in {settings.source!r}; use simulator, a camera index (0), "
            "rtsp://, http(s):// (MJPEG), gst:<pipeline>, a video file or an image folder"
        )
    raise SourceConfigError(f"camera.source: no such file or folder: {settings.source!r}")


def _simulator(settings: CameraSettings) -> FrameSource:
    from device.station.camera.simulator import SimulatorSource

    try:
        from vision.data.synthetic import CATEGORIES
    except ImportError as exc:
        raise SourceConfigError(f"camera.source: simulator unavailable: {exc}") from exc
    if settings.category not in CATEGORIES:
        raise SourceConfigError(
            f"camera.category: unknown product {settings.category!r}; choose one of {', '.join(CATEGORIES)}"
        )
    try:
        return SimulatorSource(
            settings.category,
            seed=settings.seed,
            defect_rate=settings.defect_rate,
            image_size=max(settings.width, settings.height, SIMULATOR_MIN_SIZE),
            fps=settings.fps,
        )
    except ValueError as exc:
        raise SourceConfigError(f"camera: simulator cannot run with these settings: {exc}") from exc


def _v4l2(text: str, settings: CameraSettings) -> FrameSource:
    import cv2

    from device.station.camera.opencv_sources import LiveCaptureSource

    target: str | int = int(text) if text.isdigit() else text
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return LiveCaptureSource(target, backend, name=f"camera:{text}", timeout_s=settings.timeout_s)


def _gstreamer(text: str, settings: CameraSettings) -> FrameSource:
    import cv2

    from device.station.camera.opencv_sources import LiveCaptureSource, opencv_has_gstreamer

    pipeline = text[len("gst:") :].strip()
    if not pipeline:
        raise SourceConfigError("camera.source: empty GStreamer pipeline after 'gst:'")
    if "appsink" not in pipeline:
        raise SourceConfigError("camera.source: a GStreamer pipeline must end in an appsink (... ! appsink)")
    if not opencv_has_gstreamer():
        raise SourceConfigError(
            "camera.source: this OpenCV build has no GStreamer support (pip wheels lack it); "
            "install a GStreamer-enabled OpenCV or use rtsp:// instead"
        )
    return LiveCaptureSource(pipeline, cv2.CAP_GSTREAMER, name="gstreamer", timeout_s=settings.timeout_s)


def _genicam(text: str, settings: CameraSettings) -> FrameSource:
    from device.station.camera.genicam import GenicamOptions, GenicamSource

    return GenicamSource(GenicamOptions.from_settings(text[len("genicam:") :].strip(), settings))


def _rtsp(text: str, settings: CameraSettings) -> FrameSource:
    import cv2

    from device.station.camera.mjpeg import redact_url
    from device.station.camera.opencv_sources import LiveCaptureSource

    if not urlsplit(text).hostname:
        raise SourceConfigError(f"camera.source: RTSP URL has no host: {redact_url(text)!r}")
    return LiveCaptureSource(text, cv2.CAP_FFMPEG, name=redact_url(text), timeout_s=settings.timeout_s)


def _mjpeg(text: str, settings: CameraSettings) -> FrameSource:
    from device.station.camera.mjpeg import MjpegHttpSource, redact_url

    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise SourceConfigError(f"camera.source: malformed URL {redact_url(text)!r}: {exc}") from exc
    if not parts.hostname:
        raise SourceConfigError(f"camera.source: MJPEG URL has no host: {redact_url(text)!r}")
    return MjpegHttpSource(text, timeout_s=settings.timeout_s)


def _folder(text: str, settings: CameraSettings) -> FrameSource:
    from device.station.camera.image_folder import IMAGE_SUFFIXES, ImageFolderSource, list_images

    folder = Path(text).expanduser()
    if not list_images(folder):
        raise SourceConfigError(
            f"camera.source: folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return ImageFolderSource(folder, fps=settings.fps, loop=settings.loop)


def _video(text: str, settings: CameraSettings) -> FrameSource:
    from device.station.camera.opencv_sources import VideoFileSource

    path = Path(text).expanduser()
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceConfigError(
            f"camera.source: {str(path)!r} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}); "
            "for still images give their folder"
        )
    return VideoFileSource(str(path), fps=settings.fps, loop=settings.loop)
