"""The one interface every camera source implements, and the frame it produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class CameraError(RuntimeError):
    """The source cannot deliver frames now (unplugged, stream down); capture retries with backoff."""


@dataclass
class Frame:
    """One captured image. `image` is BGR uint8 (OpenCV order). `truth` is set only by the simulator
    (is_defect, defect_type, mask) so tests can check the alerts against what was on the belt."""

    frame_id: int
    captured_at: float  # time.time() at capture
    captured_mono: float  # time.monotonic() at capture, for latency
    image: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)


class FrameSource(Protocol):
    """A camera. `read` blocks until the next frame; it raises CameraError when the source is gone,
    and returns None at the end of a finite source (a video file without looping)."""

    name: str

    def open(self) -> None: ...

    def read(self) -> np.ndarray | tuple[np.ndarray, dict[str, Any]] | None: ...

    def close(self) -> None: ...
