"""Runs an exported anomaly model on ONNX Runtime and turns its map into a decision and boxes.

The edge box imports only this (no torch): a model file is refused up front, with a message saying why,
if it is missing, not ONNX, tampered with, or breaks the input/output/metadata contract of `vision.export`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from vision.export import (
    INPUT_FORMAT,
    INPUT_NAME,
    META_BUILD_TEMPLATE,
    META_INPUT_FORMAT,
    META_INPUT_SIZE,
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_THRESHOLD,
    OUTPUT_NAMES,
    REQUIRED_METADATA,
    sha256_file,
)
from vision.ort_session import cpu_session_options
from vision.types import Box, InspectionResult, ModelInfo


class ModelFileError(RuntimeError):
    """The model file cannot be used; the message says which check failed."""


def resize_to_input(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to the model's square input; the same interpolation is used in training and inference."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def validate_frame(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is a non-empty uint8 HxWx3 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"frame is empty, shape {image.shape}")


def find_boxes(anomaly_map: np.ndarray, threshold: float, min_area: int, max_boxes: int) -> list[Box]:
    """Connected regions of `anomaly_map >= threshold`, largest score first; a box's score is its max.

    Each kept region's peak is read inside its own bounding box, so the cost follows the regions' size; a
    scatter over every pixel above threshold (`np.maximum.at`) took 10 ms on a 256 x 256 map that is all
    above it (a lens cap, a wrong product), a third of a 30 fps frame."""
    mask = (anomaly_map >= threshold).astype(np.uint8)
    if not mask.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    for label in range(1, count):
        x, y, width, height, area = (int(v) for v in stats[label])
        if area >= min_area:
            window = (slice(y, y + height), slice(x, x + width))
            peak = float(anomaly_map[window][labels[window] == label].max())
            boxes.append(Box(x=x, y=y, width=width, height=height, score=peak))
    boxes.sort(key=lambda box: box.score, reverse=True)
    return boxes[:max_boxes]


class Inspector:
    """One ONNX Runtime session for one worker thread; `inspect` serialises calls with a lock."""

    def __init__(self, path: str | Path, threads: int = 2, expected_sha256: str | None = None) -> None:
        self.path = Path(path)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not self.path.is_file():
            raise ModelFileError(f"model file not found: {self.path}")
        sha256 = sha256_file(self.path)
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise ModelFileError(
                f"model file {self.path} has sha256 {sha256}, expected {expected_sha256}: "
                "the file was changed or corrupted"
            )
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=cpu_session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelFileError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._input_size = self._check_contract()
        self._info = ModelInfo(
            name=self._metadata[META_MODEL_NAME],
            version=self._metadata[META_MODEL_VERSION],
            sha256=sha256,
            threshold=float(self._metadata[META_THRESHOLD]),
            input_size=self._input_size,
            metadata=dict(self._metadata),
        )
        self._lock = threading.Lock()

    def _check_contract(self) -> int:
        """Check metadata, input and outputs against `vision.export`; return the input size."""
        if META_BUILD_TEMPLATE in self._metadata:
            raise ModelFileError(
                f"{self.path} is a build template (unfitted, it judges nothing): build a model from it with "
                "`edgeinspect build`"
            )
        missing = [key for key in REQUIRED_METADATA if key not in self._metadata]
        if missing:
            raise ModelFileError(
                f"{self.path} lacks EdgeInspect metadata {missing}; export it with vision.export"
            )
        if self._metadata[META_INPUT_FORMAT] != INPUT_FORMAT:
            raise ModelFileError(
                f"{self.path} input format is {self._metadata[META_INPUT_FORMAT]!r}, "
                f"expected {INPUT_FORMAT!r}"
            )
        try:
            threshold = float(self._metadata[META_THRESHOLD])
            size = int(self._metadata[META_INPUT_SIZE])
        except ValueError as exc:
            raise ModelFileError(f"{self.path} has malformed threshold/input_size metadata: {exc}") from exc
        if not np.isfinite(threshold) or size <= 0:
            raise ModelFileError(f"{self.path} has threshold {threshold} / input size {size}: out of range")
        inputs = self._session.get_inputs()
        expected_shape = [1, size, size, 3]
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT_NAME
            or inputs[0].type != "tensor(uint8)"
            or list(inputs[0].shape) != expected_shape
        ):
            found = [(i.name, i.type, i.shape) for i in inputs]
            raise ModelFileError(
                f"{self.path} input must be {INPUT_NAME!r} uint8 {expected_shape}, found {found}"
            )
        outputs = {o.name: o for o in self._session.get_outputs()}
        for name in OUTPUT_NAMES:
            if name not in outputs or outputs[name].type != "tensor(float)":
                found = [(o.name, o.type) for o in outputs.values()]
                raise ModelFileError(f"{self.path} needs float output {name!r}, found {found}")
        map_shape = list(outputs["anomaly_map"].shape)
        if map_shape != [1, 1, size, size]:
            raise ModelFileError(
                f"{self.path} anomaly_map shape {map_shape}, expected [1, 1, {size}, {size}]"
            )
        return size

    @property
    def info(self) -> ModelInfo:
        return self._info

    def inspect(
        self,
        image_bgr: np.ndarray,
        threshold: float | None = None,
        min_area: int = 16,
        max_boxes: int = 10,
    ) -> InspectionResult:
        """Judge one BGR frame; `threshold` overrides the calibrated one, the map has the frame's size."""
        validate_frame(image_bgr)
        limit = self._info.threshold if threshold is None else float(threshold)
        if not np.isfinite(limit):
            raise ValueError(f"threshold must be finite, got {threshold}")
        height, width = image_bgr.shape[:2]
        rgb = cv2.cvtColor(resize_to_input(image_bgr, self._input_size), cv2.COLOR_BGR2RGB)
        batch = np.ascontiguousarray(rgb[None])
        with self._lock:
            start = time.perf_counter()
            anomaly_map, score = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
            inference_ms = (time.perf_counter() - start) * 1000.0
        heat = anomaly_map[0, 0]
        if heat.shape != (height, width):
            heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
        image_score = float(score[0])
        boxes = find_boxes(heat, limit, min_area, max_boxes)
        return InspectionResult(
            score=image_score,
            threshold=limit,
            is_defect=image_score >= limit,
            boxes=boxes,
            anomaly_map=heat,
            inference_ms=inference_ms,
        )
