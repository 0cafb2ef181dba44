"""int8 for the file a line deploys: the backbone quantized, the threshold recalibrated on int8 scores.

On real parts the int8 backbone is the one compressed model on the accuracy-latency front (1.15-1.45x
faster by host, 0.1-0.9 points of image AUROC on the worst set, a fifth of the file; real/front.md). Its
scores differ a little from the float model's, so a threshold calibrated on the float scores would no
longer hold the target false-reject rate: it is recalibrated on the same held-back good images, as the
float one was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from compression.onnx_bench import onnx_outputs
from compression.quantize import quantize_int8
from vision.calibration import threshold_from_good_scores
from vision.config import ModelSettings
from vision.export import META_THRESHOLD


def quantize_deployed(path: str | Path, good_images: np.ndarray, target_false_reject_rate: float) -> Path:
    """Replace the ONNX file at `path` by its int8 version, calibrated on `good_images` (uint8 NHWC at
    the model's size, not used for fitting); the file is swapped in only once complete."""
    path = Path(path)
    staged = path.with_name(path.stem + ".int8-staging.onnx")
    try:
        quantize_int8(path, staged, good_images)
        _, scores = onnx_outputs(staged, good_images)
        threshold = threshold_from_good_scores(scores, target_false_reject_rate)
        model = onnx.load(str(staged))
        for prop in model.metadata_props:
            if prop.key == META_THRESHOLD:
                prop.value = repr(float(threshold))
        onnx.save(model, str(staged))
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return path


def finisher(settings: ModelSettings) -> Callable[[Path, np.ndarray], None] | None:
    """The `finish` step `vision.train.build_model_files` runs for these settings (None: float file)."""
    if not settings.int8:
        return None
    rate = settings.target_false_reject_rate

    def finish(path: Path, held_back: np.ndarray) -> None:
        quantize_deployed(path, held_back, rate)

    return finish
