"""The one interface every camera source implements, and the frame it produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import numpy as np


class CameraError(RuntimeError):
    """The source cannot deliver frames now (unplugged, stream down); capture retries with backoff."""


class CorruptFrame(Exception):
    """One frame arrived broken (a JPEG that does not decode, a truncated part, a wrong shape).

    Deliberately not a CameraError: the source is still there, so capture counts it and reads on
    instead of tearing the connection down.
    """


class SourceConfigError(ValueError):
    """`camera.source` names something that can never work (unknown scheme, missing file, empty folder).

    Raised by `open_source` so a typo stops start-up with a clear message instead of retrying forever.
    """


@dataclass
class Frame:
    """One captured image. `image` is BGR uint8 (OpenCV order). `truth` is set only by the simulator
    (is_defect, defect_type, part_index, mask) so tests can check the alerts against what was on the belt;
    the mask has been through the same ROI crop and resize as the image. `recipe` is the product the
    station was set to when the frame was captured: the frame is judged under that recipe even when a
    switch lands while it waits in the queue."""

    frame_id: int
    captured_at: float  # time.time() at capture
    captured_mono: float  # time.monotonic() at capture, for latency
    image: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None


SourceRead = Union[np.ndarray, tuple[np.ndarray, dict[str, Any]], None]  # noqa: UP007 (runtime alias, py3.10)


class FrameSource(Protocol):
    """A camera. `read` blocks until the next frame; it raises CameraError when the source is gone,
    CorruptFrame for one broken frame, and returns None at the end of a finite source (a video file
    without looping). Sources may also offer `interrupt()`, callable from another thread, to cut a
    blocking `read` short when capture stops."""

    name: str

    def open(self) -> None: ...

    def read(self) -> SourceRead: ...

    def close(self) -> None: ...
