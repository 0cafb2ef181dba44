"""Learn a new product from the live camera: keep N good parts as they pass, in the MVTec AD layout.

A capture keeps every `every_n`-th frame the camera delivers (after the ROI crop and resize, so the images
are what a model for this view will see), judged or not, until `count` are kept. The images go to
`<data_dir>/datasets/<product>/train/good/<NNN>.png`, the folder `edgeinspect train --data
<data_dir>/datasets --category <product>` reads. An operator looks at the contact sheet and strikes out bad
captures (a part that was not good, a hand in the view); a struck image is deleted from the folder. One
capture at a time; starting another replaces a finished one, never a running one.

Guarantees: a frame is written whole or not at all (written to a temporary name, then renamed); the
inspection thread only hands a frame over (a bounded queue, dropped and counted when the writer lags), so
capturing never slows judging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field

from device.station.camera.base import Frame
from device.station.recipes import RECIPE_NAME_PATTERN

log = logging.getLogger(__name__)

CaptureState = Literal["running", "done", "cancelled", "failed"]
PENDING_FRAMES = 8  # frames waiting for the writer; more are dropped (counted), judging never waits


class CaptureStatus(BaseModel):
    """What the panel's progress bar and contact sheet show."""

    product: str = Field(..., pattern=RECIPE_NAME_PATTERN)
    state: CaptureState
    target: int
    kept: int = Field(..., description="Images in the folder now (struck ones are gone).")
    captured: int = Field(..., description="Images written since the start, struck ones included.")
    struck: int = 0
    skipped_frames: int = Field(0, description="Frames the writer could not keep up with (not saved).")
    folder: str
    images: list[str] = Field(default_factory=list, description="File names in the folder, in order.")
    error: str | None = None


class ProductCapture:
    """One capture job: `offer(frame)` from the inspection thread, a writer thread saves to disk."""

    def __init__(self, datasets: Path, product: str, count: int, every_n: int) -> None:
        if count < 1 or every_n < 1:
            raise ValueError("count and every_n must be at least 1")
        self.product = product
        self.folder = datasets / product / "train" / "good"
        if self.folder.exists() and any(self.folder.iterdir()):
            raise ValueError(f"{self.folder} already holds images; strike them or pick another product name")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.target = count
        self._every_n = every_n
        self._seen = 0
        self._captured = 0
        self._struck = 0
        self._skipped = 0
        self._state: CaptureState = "running"
        self._error: str | None = None
        self._lock = threading.Lock()
        self._pending: queue.Queue[np.ndarray | None] = queue.Queue(PENDING_FRAMES)
        self._writer = threading.Thread(target=self._write_loop, name="product-capture", daemon=True)
        self._writer.start()

    # ---- from the inspection thread ----------------------------------------------------------
    def offer(self, frame: Frame) -> None:
        """Hand a frame over; never blocks."""
        with self._lock:
            if self._state != "running":
                return
            self._seen += 1
            if (self._seen - 1) % self._every_n:
                return
        try:
            self._pending.put_nowait(frame.image.copy())
        except queue.Full:
            with self._lock:
                self._skipped += 1

    # ---- control -----------------------------------------------------------------------------
    def cancel(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "cancelled"
        self._stop_writer()

    def strike(self, image_name: str) -> None:
        """Delete one captured image (a bad capture on the contact sheet); a running capture then keeps
        one more frame to reach its target."""
        try:
            path = self.image_path(image_name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        path.unlink()
        with self._lock:
            self._struck += 1

    def image_path(self, image_name: str) -> Path:
        path = self.folder / image_name
        if path.parent != self.folder or path.suffix != ".png" or not path.is_file():
            raise KeyError(f"no captured image {image_name!r} for {self.product!r}")
        return path

    def status(self) -> CaptureStatus:
        images = sorted(p.name for p in self.folder.glob("*.png"))
        with self._lock:
            return CaptureStatus(
                product=self.product,
                state=self._state,
                target=self.target,
                kept=len(images),
                captured=self._captured,
                struck=self._struck,
                skipped_frames=self._skipped,
                folder=str(self.folder),
                images=images,
                error=self._error,
            )

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state == "running"

    def wait(self, timeout_s: float) -> bool:
        """True when the writer has finished (done, cancelled or failed) within `timeout_s`."""
        self._writer.join(timeout_s)
        return not self._writer.is_alive()

    # ---- the writer thread -------------------------------------------------------------------
    def _stop_writer(self) -> None:
        with contextlib.suppress(queue.Full):  # the writer checks the state after each frame anyway
            self._pending.put_nowait(None)

    def _write_loop(self) -> None:
        while True:
            image = self._pending.get()
            with self._lock:
                if image is None or self._state != "running":
                    return
                index = self._captured
            try:
                self._write(image, index)
            except OSError as exc:
                log.exception("product capture for %s failed", self.product)
                with self._lock:
                    self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
                return
            with self._lock:
                self._captured += 1
                kept = self._captured - self._struck
                if kept >= self.target:
                    self._state = "done"
                    return

    def _write(self, image: np.ndarray, index: int) -> None:
        final = self.folder / f"{index:04d}.png"
        partial = self.folder / f".{index:04d}.png.partial"
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"could not encode frame {index} as PNG")
        with open(partial, "wb") as handle:
            handle.write(encoded.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, final)
