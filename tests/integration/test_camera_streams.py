"""A real MJPEG camera server on loopback: frames, corrupt parts, a dropped connection, the server going away
and coming back. The capture worker must count, reconnect with backoff and keep frame ids increasing."""

from __future__ import annotations

import base64
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from device.config import CameraSettings
from device.station.camera import open_source
from device.station.camera.base import Frame
from device.station.capture import CaptureWorker, FrameQueue

pytestmark = pytest.mark.integration

BOUNDARY = "edgeinspectframe"


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def jpeg(value: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    return data.tobytes()


class MjpegCameraServer:
    """An MJPEG camera whose every byte the test scripts: `send_frame`, `send_raw`, `drop` (close the
    current connection). `stop()` takes the whole server away; `start()` brings it back on the same port."""

    def __init__(self, port: int = 0, content_type: str | None = None, status: int = 200) -> None:
        self.port = port
        self.content_type = content_type or f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        self.status = status
        self.required_auth: str | None = None
        self.connections = 0
        self._actions: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                camera.connections += 1
                if camera.required_auth and self.headers.get("Authorization") != camera.required_auth:
                    self.send_error(401)
                    return
                self.send_response(camera.status)
                self.send_header("Content-Type", camera.content_type)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                if camera.status != 200:
                    return
                camera._serve(self)

        self._closing.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        while not self._closing.is_set():
            try:
                action, payload = self._actions.get(timeout=0.05)
            except queue.Empty:
                continue
            if action == "drop":
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                handler.wfile.write(payload)
                handler.wfile.flush()
            except OSError:
                return

    def send_frame(self, body: bytes, with_length: bool = True) -> None:
        headers = b"Content-Type: image/jpeg\r\n"
        if with_length:
            headers += b"Content-Length: %d\r\n" % len(body)
        self._actions.put(("write", b"--" + BOUNDARY.encode() + b"\r\n" + headers + b"\r\n" + body + b"\r\n"))

    def send_raw(self, data: bytes) -> None:
        self._actions.put(("write", data))

    def drop(self) -> None:
        self._actions.put(("drop", b""))

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._actions = queue.Queue()


@pytest.fixture
def camera_server() -> Iterator[MjpegCameraServer]:
    server = MjpegCameraServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_worker(url: str, **camera: object) -> tuple[CaptureWorker, FrameQueue]:
    options: dict[str, object] = {
        "width": 32,
        "height": 24,
        "queue_size": 200,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.4,
        "timeout_s": 3.0,
    }
    settings = CameraSettings(source=url, **{**options, **camera})
    frames = FrameQueue(settings.queue_size)
    worker = CaptureWorker(open_source(settings), settings, frames)
    worker.start()
    return worker, frames


def drain(frames: FrameQueue) -> list[Frame]:
    out = []
    while (frame := frames.get(timeout=0)) is not None:
        out.append(frame)
    return out


def test_mjpeg_stream_survives_corrupt_parts_drops_and_server_restarts(
    camera_server: MjpegCameraServer,
) -> None:
    worker, frames = start_worker(camera_server.url)
    received: list[Frame] = []
    try:
        # 1. Frames flow.
        for value in (10, 20, 30):
            camera_server.send_frame(jpeg(value))
        assert wait_until(lambda: worker.frames == 3)
        assert worker.connected

        # 2. A truncated JPEG, a garbage part, a garbage part without length, and stray bytes between parts
        #    are each counted once; the good frames around them still arrive.
        good = jpeg(40)
        camera_server.send_frame(good[: len(good) // 2])
        camera_server.send_frame(bytes(range(256)) * 8)
        camera_server.send_raw(b"\xde\xad\xbe\xef random bytes on the wire\r\n")
        camera_server.send_frame(b"\x00\x01 not a jpeg \xfe" * 30, with_length=False)
        camera_server.send_frame(jpeg(50), with_length=False)
        camera_server.send_frame(jpeg(60))
        assert wait_until(lambda: worker.frames == 5 and worker.corrupt_frames == 4)
        assert worker.connected and worker.reconnects == 0
        received += drain(frames)

        # 3. The server drops the connection but stays up: the worker reconnects by itself.
        camera_server.drop()
        assert wait_until(lambda: worker.reconnects == 1 and camera_server.connections == 2)
        assert "closed" in (worker.last_error or "")
        camera_server.send_frame(jpeg(70))
        assert wait_until(lambda: worker.frames == 6)

        # 4. The server goes away: the worker reports disconnected and keeps retrying with backoff.
        camera_server.drop()
        camera_server.stop()
        assert wait_until(lambda: not worker.connected)
        assert wait_until(lambda: "cannot connect" in (worker.last_error or ""))
        time.sleep(0.5)  # a few refused attempts while it is down
        assert not worker.connected and worker.reconnects == 1

        # 5. It comes back on the same port: capture resumes, ids keep increasing.
        camera_server.start()
        assert wait_until(lambda: worker.connected and worker.reconnects == 2)
        for value in (80, 90):
            camera_server.send_frame(jpeg(value))
        assert wait_until(lambda: worker.frames == 8)
        assert worker.corrupt_frames == 4
    finally:
        assert worker.stop(timeout=5)
    received += drain(frames)
    ids = [f.frame_id for f in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 8
    values = [round(float(f.image.mean())) for f in received]
    assert np.allclose(values, [10, 20, 30, 50, 60, 70, 80, 90], atol=3)
    assert all(f.image.shape == (24, 32, 3) for f in received)
    assert all(a.captured_mono <= b.captured_mono for a, b in itertools.pairwise(received))


def test_stop_returns_while_the_stream_is_silent(camera_server: MjpegCameraServer) -> None:
    worker, _ = start_worker(camera_server.url, fps=1.0)
    camera_server.send_frame(jpeg(10))
    assert wait_until(lambda: worker.frames == 1)
    assert worker.stop(timeout=2), "stop must cut a blocking socket read short"


def test_silent_stream_times_out_and_reconnects(camera_server: MjpegCameraServer) -> None:
    worker, _ = start_worker(camera_server.url, timeout_s=0.3)
    try:
        camera_server.send_frame(jpeg(10))
        assert wait_until(lambda: worker.frames == 1)
        assert wait_until(lambda: worker.reconnects >= 1), "a stream silent past timeout_s is a disconnect"
        assert "timed out" in (worker.last_error or "")
    finally:
        assert worker.stop(timeout=5)


@pytest.mark.parametrize(
    ("content_type", "status", "message"),
    [("text/html", 200, "not an MJPEG stream"), (None, 503, "HTTP 503")],
)
def test_wrong_answers_are_reported(content_type: str | None, status: int, message: str) -> None:
    server = MjpegCameraServer(content_type=content_type, status=status)
    server.start()
    worker, _ = start_worker(server.url)
    try:
        assert wait_until(lambda: message in (worker.last_error or ""))
        assert not worker.connected and worker.frames == 0
    finally:
        assert worker.stop(timeout=5)
        server.stop()


def test_basic_auth_from_the_url(camera_server: MjpegCameraServer) -> None:
    camera_server.required_auth = "Basic " + base64.b64encode(b"op:s3cret").decode()
    url = camera_server.url.replace("http://", "http://op:s3cret@")
    worker, _ = start_worker(url)
    try:
        camera_server.send_frame(jpeg(10))
        assert wait_until(lambda: worker.frames == 1)
        assert "s3cret" not in worker.source.name
    finally:
        assert worker.stop(timeout=5)


def test_opencv_ffmpeg_live_source_reads_and_reports_loss(camera_server: MjpegCameraServer) -> None:
    """The VideoCapture path used for RTSP/USB cameras, driven by FFmpeg against the same loopback camera."""
    import cv2

    from device.station.camera.base import CameraError
    from device.station.camera.opencv_sources import LiveCaptureSource

    for value in (30, 60, 90, 120, 150, 180):
        camera_server.send_frame(jpeg(value))
    source = LiveCaptureSource(camera_server.url, cv2.CAP_FFMPEG, name="ffmpeg-test", timeout_s=2.0)
    source.open()
    try:
        first = source.read()
        assert first.shape == (48, 64, 3)
        camera_server.drop()
        with pytest.raises(CameraError, match="lost"):
            for _ in range(10):
                source.read()
    finally:
        source.close()
