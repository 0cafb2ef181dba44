"""A folder of still images played as a camera: replaying captured parts on a bench, or a test line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from device.station.camera.base import CameraError, CorruptFrame
from device.station.camera.decode import decode_image
from device.station.camera.pacing import Pacer

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def _natural_key(path: Path) -> list[int | str]:
    # "part2.png" before "part10.png", as a person numbering files expects.
    return [int(chunk) if chunk.isdigit() else chunk.lower() for chunk in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """The folder's image files in natural name order (hidden files skipped)."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )


class ImageFolderSource:
    """Plays the images in name order at `fps`; starts again at the end when `loop` is set.

    The folder is listed again at every pass, so images added while the line runs are picked up.
    """

    def __init__(self, folder: str | Path, fps: float, loop: bool) -> None:
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        self.loop = loop
        self._pacer = Pacer(fps)
        self._pending: list[Path] = []
        self._passes = 0

    def _relist(self) -> list[Path]:
        try:
            return list_images(self.folder)
        except OSError as exc:
            raise CameraError(f"{self.name}: cannot list folder: {exc}") from exc

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"{self.name}: folder is gone")
        if self._passes == 0:
            # Only the first open lists; a reconnect carries on where the pass left off.
            self._pending = self._relist()
            if not self._pending:
                raise CameraError(f"{self.name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self._passes = 1
        self._pacer.reset()

    def read(self) -> np.ndarray | None:
        if not self._pending:
            if not self.loop:
                return None
            self._pending = self._relist()
            self._passes += 1
            if not self._pending:
                raise CameraError(f"{self.name}: no images left in the folder")
        if not self._pacer.wait():
            raise CameraError(f"{self.name}: interrupted")
        path = self._pending.pop(0)
        try:
            data = path.read_bytes()
        except OSError as exc:
            # One file vanished or is unreadable: skip it, the folder itself is still there.
            raise CorruptFrame(f"{path.name}: cannot read: {exc}") from exc
        return decode_image(data, path.name)

    def interrupt(self) -> None:
        self._pacer.interrupt()

    def close(self) -> None:
        self._pacer.interrupt()
