"""Is a freshly activated model sane? It must load, judge real frames with finite scores, and not call
most of them defective (a model that rejects everything would stop the line as surely as a crash)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vision.inspector import Inspector, ModelFileError

FALLBACK_FRAME = np.full((256, 256, 3), 128, dtype=np.uint8)


def check_model(path: Path, sha256: str, frames: list[np.ndarray], max_defect_share: float) -> str | None:
    """None when the model passes; otherwise the reason it fails. Without frames (line stopped) only
    loading and a finite score on a plain grey frame are checked."""
    try:
        inspector = Inspector(path, threads=1, expected_sha256=sha256)
    except ModelFileError as exc:
        return f"model does not load: {exc}"
    samples = frames or [FALLBACK_FRAME]
    defects = 0
    for index, frame in enumerate(samples):
        try:
            result = inspector.inspect(frame)
        except Exception as exc:  # any failure to judge is a failed check, not a crash of the station
            return f"inspecting frame {index} failed: {type(exc).__name__}: {exc}"
        if not math.isfinite(result.score):
            return f"frame {index} scored {result.score}: the model gives non-finite scores"
        defects += int(result.is_defect)
    if frames and defects / len(frames) > max_defect_share:
        return (
            f"the model judged {defects} of {len(frames)} recent frames defective "
            f"(more than the {max_defect_share:.0%} allowed by rollout.health_max_defect_share)"
        )
    return None
