"""The simulated camera: parts from `vision.data.synthetic.LineSimulator`, at the configured line rate."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from device.station.camera.base import CameraError
from device.station.camera.pacing import Pacer


class SimulatorSource:
    """Delivers one synthetic part per frame, paced at `fps`, with the ground truth attached so an
    end-to-end test can compare alerts with what was really on the belt."""

    def __init__(self, category: str, seed: int, defect_rate: float, image_size: int, fps: float) -> None:
        self.name = f"simulator:{category}"
        self._pacer = Pacer(fps)
        # Imported here so the rest of `device` does not pay for the simulator unless it is used. Built
        # now (a bad category or size fails at configuration time) and kept across reconnects, so the
        # part sequence continues instead of replaying from the start.
        from vision.data.synthetic import LineSimulator

        self._simulator = LineSimulator(category, seed=seed, defect_rate=defect_rate, image_size=image_size)

    def open(self) -> None:
        self._pacer.reset()

    def read(self) -> tuple[np.ndarray, dict[str, Any]]:
        if not self._pacer.wait():
            raise CameraError(f"{self.name}: interrupted")
        part = self._simulator.next_part()
        image = cv2.cvtColor(np.ascontiguousarray(part.image), cv2.COLOR_RGB2BGR)
        truth = {
            "is_defect": part.defect_type is not None,
            "defect_type": part.defect_type,
            "part_index": int(part.index),
            "mask": part.mask,
        }
        return image, truth

    def interrupt(self) -> None:
        self._pacer.interrupt()

    def close(self) -> None:
        self._pacer.interrupt()
