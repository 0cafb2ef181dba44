"""Camera sources: choosing one from settings, the multipart reader, image folders, video files, simulator."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import CameraSettings
from device.station.camera import SourceConfigError, describe_source, open_source
from device.station.camera.base import CameraError, CorruptFrame, Frame
from device.station.camera.decode import decode_image
from device.station.camera.image_folder import ImageFolderSource
from device.station.camera.mjpeg import MjpegHttpSource, MultipartReader, redact_url
from device.station.camera.opencv_sources import LiveCaptureSource, VideoFileSource
from device.station.capture import CaptureWorker, FrameQueue


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def drain(queue: FrameQueue) -> list[Frame]:
    frames = []
    while (frame := queue.get(timeout=0)) is not None:
        frames.append(frame)
    return frames


def jpeg(value: int, size: tuple[int, int] = (24, 32)) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((*size, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def run_to_end(source, settings: CameraSettings, queue_size: int = 100) -> tuple[CaptureWorker, list[Frame]]:
    queue = FrameQueue(queue_size)
    worker = CaptureWorker(source, settings, queue)
    worker.start()
    try:
        assert wait_until(lambda: not worker.running), "finite source did not finish"
    finally:
        worker.stop(timeout=5)
    return worker, drain(queue)


# -- open_source -------------------------------------------------------------------------------------------


def test_open_source_picks_the_source_kind(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    video = tmp_path / "clip.avi"
    video.write_bytes(b"placeholder")
    assert describe_source("simulator") == "simulator"
    assert describe_source("0") == "v4l2" and describe_source("/dev/video2") == "v4l2"
    assert describe_source("rtsp://cam.local/stream") == "rtsp"
    assert describe_source("https://cam.local/mjpg") == "mjpeg"
    assert describe_source("gst:videotestsrc ! appsink") == "gstreamer"
    assert describe_source(str(tmp_path)) == "folder"
    assert describe_source(f"file://{video}") == "video"
    assert isinstance(open_source(CameraSettings(source="0")), LiveCaptureSource)
    assert isinstance(open_source(CameraSettings(source="rtsp://cam.local:8554/line")), LiveCaptureSource)
    assert isinstance(open_source(CameraSettings(source="http://u:secret@cam.local/mjpg")), MjpegHttpSource)
    assert isinstance(open_source(CameraSettings(source=str(tmp_path))), ImageFolderSource)
    assert isinstance(open_source(CameraSettings(source=str(video))), VideoFileSource)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("ftp://cam.local/x", "unsupported scheme"),
        ("/no/such/place", "no such file or folder"),
        ("gst:", "empty GStreamer pipeline"),
        ("gst:videotestsrc ! fakesink", "appsink"),
        ("http:///stream", "no host"),
        ("http://cam.local:notaport/", "malformed URL"),
        ("rtsp://", "no host"),
    ],
)
def test_open_source_rejects_invalid_sources(source: str, message: str) -> None:
    with pytest.raises(SourceConfigError, match=message) as info:
        open_source(CameraSettings(source=source))
    assert "camera.source" in str(info.value)


def test_open_source_rejects_empty_folder_and_non_video_file(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="holds no images"):
        open_source(CameraSettings(source=str(tmp_path)))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(SourceConfigError, match="not a video file"):
        open_source(CameraSettings(source=str(notes)))


def test_gstreamer_needs_a_gstreamer_build() -> None:
    from device.station.camera.opencv_sources import opencv_has_gstreamer

    if opencv_has_gstreamer():
        assert isinstance(open_source(CameraSettings(source="gst:videotestsrc ! appsink")), LiveCaptureSource)
    else:
        with pytest.raises(SourceConfigError, match="no GStreamer support"):
            open_source(CameraSettings(source="gst:videotestsrc ! appsink"))


def test_missing_camera_device_is_a_camera_error_not_a_crash() -> None:
    source = open_source(CameraSettings(source="/dev/video99"))
    with pytest.raises(CameraError, match="cannot open"):
        source.open()
    source.close()


def test_credentials_never_appear_in_the_source_name() -> None:
    source = open_source(CameraSettings(source="http://admin:hunter2@cam.local:8080/mjpg"))
    assert "hunter2" not in source.name
    assert redact_url("rtsp://u:p@h:554/s") == "rtsp://u:***@h:554/s"
    assert redact_url("http://h/s") == "http://h/s"


# -- decoding ------------------------------------------------------------------------------------------


def test_decode_rejects_truncated_jpeg_and_garbage() -> None:
    good = jpeg(128)
    assert decode_image(good).shape == (24, 32, 3)
    with pytest.raises(CorruptFrame, match="truncated JPEG"):
        decode_image(good[: len(good) // 2])
    with pytest.raises(CorruptFrame, match="not a decodable image"):
        decode_image(b"\x00garbage" * 40)
    with pytest.raises(CorruptFrame, match="empty"):
        decode_image(b"")


# -- multipart reader ----------------------------------------------------------------------------------


def chunked(data: bytes, size: int) -> Callable[[int], bytes]:
    """read1-like reader returning at most `size` bytes per call (boundaries split across reads)."""
    stream = io.BytesIO(data)
    return lambda n: stream.read(min(n, size))


def part(body: bytes, boundary: bytes = b"frame", length: bool = True) -> bytes:
    headers = b"Content-Type: image/jpeg\r\n"
    if length:
        headers += b"Content-Length: %d\r\n" % len(body)
    return b"--" + boundary + b"\r\n" + headers + b"\r\n" + body + b"\r\n"


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_multipart_reader_splits_parts_with_and_without_length(chunk: int) -> None:
    bodies = [jpeg(10), jpeg(20), jpeg(30)]
    stream = (
        b"preamble\r\n" + part(bodies[0]) + part(bodies[1], length=False) + part(bodies[2]) + b"--frame--\r\n"
    )
    reader = MultipartReader(chunked(stream, chunk), "frame")
    for body in bodies:
        content_type, got = reader.next_part()
        assert content_type == "image/jpeg"
        assert got == body
    with pytest.raises(CameraError, match="closing"):
        reader.next_part()


def test_multipart_reader_reports_stray_bytes_then_resyncs() -> None:
    stream = part(jpeg(10)) + b"\x13\x37 junk between parts \xff" + part(jpeg(20))
    reader = MultipartReader(chunked(stream, 5), "frame")
    assert reader.next_part()[1] == jpeg(10)
    with pytest.raises(CorruptFrame, match="stray bytes"):
        reader.next_part()
    assert reader.next_part()[1] == jpeg(20)
    with pytest.raises(CameraError, match="closed by the server"):
        reader.next_part()


def test_multipart_reader_accepts_dashed_boundary_parameter_and_glued_delimiter() -> None:
    # Some cameras declare `boundary=--myb`, write `----myb`, and glue it straight after the JPEG bytes.
    body1, body2 = jpeg(40), jpeg(50)
    stream = (
        b"----myb\r\nContent-Type: image/jpeg\r\n\r\n" + body1 + b"----myb\r\n\r\n" + body2 + b"\r\n----myb--"
    )
    reader = MultipartReader(chunked(stream, 3), "--myb")
    assert reader.next_part()[1] == body1
    assert reader.next_part()[1] == body2


def test_multipart_reader_bad_length_is_one_corrupt_frame() -> None:
    stream = b"--frame\r\nContent-Length: lots\r\n\r\n" + b"x" * 50 + b"\r\n" + part(jpeg(60))
    reader = MultipartReader(chunked(stream, 11), "frame")
    with pytest.raises(CorruptFrame, match="Content-Length"):
        reader.next_part()
    assert reader.next_part()[1] == jpeg(60)


def test_multipart_reader_gives_up_without_boundaries() -> None:
    reader = MultipartReader(chunked(b"x" * 5000, 512), "frame", max_part_bytes=1000)
    with pytest.raises(CameraError, match="lost sync"):
        reader.next_part()


def test_multipart_reader_turns_socket_errors_into_camera_errors() -> None:
    def timing_out(_: int) -> bytes:
        raise TimeoutError("timed out")

    with pytest.raises(CameraError, match="timed out"):
        MultipartReader(timing_out, "frame").next_part()


# -- image folder --------------------------------------------------------------------------------------


def write_folder(folder: Path, values: list[int]) -> None:
    folder.mkdir(exist_ok=True)
    for i, value in enumerate(values):
        cv2.imwrite(str(folder / f"part{i + 1}.png"), np.full((30, 40, 3), value, np.uint8))


def test_image_folder_plays_in_natural_order_and_skips_a_corrupt_file(tmp_path: Path) -> None:
    write_folder(tmp_path, [10 * (i + 1) for i in range(11)])  # part1 .. part11 (part10 after part9)
    good = jpeg(99)
    (tmp_path / "part5b.jpg").write_bytes(good[: len(good) // 2])  # truncated, between part5 and part6
    (tmp_path / "readme.txt").write_text("not an image")
    settings = CameraSettings(source=str(tmp_path), fps=200, loop=False, width=20, height=10)
    worker, frames = run_to_end(open_source(settings), settings)
    assert worker.finished
    assert worker.corrupt_frames == 1 and "truncated" in (worker.last_corrupt or "")
    assert [int(f.image[0, 0, 0]) for f in frames] == [10 * (i + 1) for i in range(11)]
    assert [f.frame_id for f in frames] == list(range(11))
    assert all(f.image.shape == (10, 20, 3) for f in frames)


def test_image_folder_loops(tmp_path: Path) -> None:
    write_folder(tmp_path, [5, 6])
    settings = CameraSettings(source=str(tmp_path), fps=200, loop=True, width=8, height=8)
    queue = FrameQueue(10)
    worker = CaptureWorker(open_source(settings), settings, queue)
    worker.start()
    try:
        assert wait_until(lambda: worker.frames >= 5)
    finally:
        assert worker.stop(timeout=5)
    values = [int(f.image[0, 0, 0]) for f in drain(queue)]
    assert values[:5] == [5, 6, 5, 6, 5]


def test_stop_interrupts_a_slowly_paced_folder(tmp_path: Path) -> None:
    write_folder(tmp_path, [1, 2])
    settings = CameraSettings(source=str(tmp_path), fps=0.01)  # one image per 100 s
    worker = CaptureWorker(open_source(settings), settings, FrameQueue(4))
    worker.start()
    assert wait_until(lambda: worker.frames == 1)
    assert worker.stop(timeout=5)


def test_image_folder_that_disappears_is_a_camera_error(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write_folder(folder, [1])
    source = ImageFolderSource(folder, fps=100, loop=True)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with pytest.raises(CameraError, match="gone"):
        source.open()


# -- video file ----------------------------------------------------------------------------------------


def write_video(path: Path, values: list[int], fps: float = 100.0, size: tuple[int, int] = (64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for value in values:
        writer.write(np.full((size[1], size[0], 3), value, np.uint8))
    writer.release()


def test_video_file_is_read_to_the_end(tmp_path: Path) -> None:
    values = [20, 60, 100, 140, 180, 220]
    video = tmp_path / "line.avi"
    write_video(video, values)
    settings = CameraSettings(source=str(video), loop=False, width=32, height=24)
    worker, frames = run_to_end(open_source(settings), settings)
    assert worker.finished and worker.corrupt_frames == 0
    assert [f.frame_id for f in frames] == list(range(len(values)))
    assert all(f.image.shape == (24, 32, 3) for f in frames)
    assert np.allclose([float(f.image.mean()) for f in frames], values, atol=4)


def test_video_file_loops(tmp_path: Path) -> None:
    video = tmp_path / "short.avi"
    write_video(video, [30, 200])
    settings = CameraSettings(source=str(video), loop=True, width=16, height=16)
    queue = FrameQueue(20)
    worker = CaptureWorker(open_source(settings), settings, queue)
    worker.start()
    try:
        assert wait_until(lambda: worker.frames >= 5)
    finally:
        assert worker.stop(timeout=5)
    means = [float(f.image.mean()) for f in drain(queue)][:5]
    assert np.allclose(means, [30, 200, 30, 200, 30], atol=4)
    assert not worker.finished


def test_unreadable_video_file_is_a_camera_error(tmp_path: Path) -> None:
    video = tmp_path / "broken.avi"
    video.write_bytes(b"RIFF" + b"\x00" * 100)
    source = open_source(CameraSettings(source=str(video)))
    with pytest.raises(CameraError):
        source.open()
        source.read()
    source.close()


# -- simulator -----------------------------------------------------------------------------------------


def test_simulator_delivers_paced_bgr_frames_with_truth() -> None:
    from vision.data.synthetic import LineSimulator

    settings = CameraSettings(
        source="simulator", category="pcb", fps=100, defect_rate=0.5, width=64, height=48
    )
    queue = FrameQueue(50)
    worker = CaptureWorker(open_source(settings), settings, queue)
    worker.start()
    try:
        assert wait_until(lambda: worker.frames >= 12)
    finally:
        assert worker.stop(timeout=5)
    frames = drain(queue)[:12]
    assert [f.frame_id for f in frames] == list(range(12))
    assert [f.truth["part_index"] for f in frames] == list(range(12))
    reference = LineSimulator("pcb", seed=0, defect_rate=0.5, image_size=64)
    for frame in frames:
        part = reference.next_part()
        assert frame.image.shape == (48, 64, 3)
        assert frame.truth["is_defect"] == (part.defect_type is not None)
        assert frame.truth["defect_type"] == part.defect_type
        assert frame.truth["mask"].shape == (48, 64)
        assert set(np.unique(frame.truth["mask"]).tolist()) <= {0, 255}
        assert (frame.truth["mask"].any()) == frame.truth["is_defect"]
        # BGR on the way out: the simulator's RGB, channel-swapped, then resized like the frame.
        expected = cv2.resize(part.image[:, :, ::-1], (64, 48), interpolation=cv2.INTER_AREA)
        assert np.abs(frame.image.astype(int) - expected.astype(int)).max() <= 1
    assert any(f.truth["is_defect"] for f in frames) and not all(f.truth["is_defect"] for f in frames)


def test_simulator_rejects_unknown_category() -> None:
    with pytest.raises(SourceConfigError, match=r"camera\.category"):
        open_source(CameraSettings(source="simulator", category="teapot"))
