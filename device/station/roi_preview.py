"""What a proposed region of interest would do to judging, before it is applied.

The model was built on whole frames; capture crops a frame to the ROI and resizes the crop to the model's
input, so a small ROI shows the model a zoomed view it never learned, and it may call almost every part a
defect. The preview scores the same recent raw frames twice with the active model and the live decision
knobs, once under the current ROI and once under the proposed one, through the crop capture itself uses
(`device.station.camera.transform.roi_view`), and says `warn` when the reject share would jump.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from device.config import RegionOfInterest
from device.station.camera.transform import roi_view
from vision.types import InspectionResult

PREVIEW_FRAMES = 32
"""Raw frames (before the crop) the runtime keeps and the preview scores: at most 2 x this many inferences
per preview, on the same model session as the line."""

WARN_REJECT_SHARE_POINTS = 0.05
"""Warn when the reject share under the proposed ROI exceeds the current one by more than this, absolute
(shares are 0..1, so 0.05 is 5 percentage points)."""

WARN_REJECT_SHARE_RATIO = 2.0
"""Warn, too, when the proposed reject share is at least this many times the current (non-zero) one..."""

WARN_MIN_EXTRA_REJECTS = 2
"""...and at least this many more of the scored frames are rejected, so that one frame more out of a few
(1 -> 2 rejects is already 2x) is not called a jump."""

REBUILD_ON_STATION = False
"""Whether this station can build a model for a region itself. It cannot: the first-run build
(`app.bootstrap`) needs the training extra and the simulator's whole frames, and teach jobs extend the
active model with examples rather than retrain it for another view."""

REBUILD_HINT = (
    "This station cannot build a model for a region. Build one for it elsewhere: collect good parts "
    "cropped to this region (once it is applied, the image archive keeps frames as judged, i.e. cropped; "
    "pause inspection meanwhile or apply with force), export them from the Archive screen (MVTec layout), "
    "run `edgeinspect train --data <export folder> --category <name>` on a machine with the training "
    "extra, then upload and activate the model on the Models screen. Or keep the whole frame."
)

Verdict = Literal["ok", "warn", "unknown"]


class ScoreSummary(BaseModel):
    """Anomaly scores of the scored frames."""

    min: float
    median: float
    p95: float
    max: float


class RoiPreview(BaseModel):
    """The figures an operator sees before applying an ROI (`POST /inspection/roi/preview`)."""

    roi: dict[str, int] | None = Field(description="The proposed ROI (None: the whole frame).")
    current_roi: dict[str, int] | None = Field(description="The ROI in use now (None: the whole frame).")
    frames: int = Field(description="Recent raw frames scored under both settings.")
    model_id: str | None = None
    threshold: float = Field(description="The live threshold both settings were judged with.")
    rejects_now: int
    rejects_proposed: int
    reject_share_now: float = Field(description="Share (0..1) of the frames judged NG with the current ROI.")
    reject_share_proposed: float = Field(description="Share (0..1) judged NG with the proposed ROI.")
    scores_now: ScoreSummary | None = None
    scores_proposed: ScoreSummary | None = None
    verdict: Verdict = Field(
        description="`ok`; `warn`: the reject share would jump (applying needs `force`); `unknown`: no "
        "recent frames to score."
    )
    reasons: list[str] = Field(default_factory=list)
    rebuild_available: bool = Field(description="Whether this station can build a model for this region.")
    rebuild_hint: str = Field(description="What to do for a model that fits this region.")


class RoiWarning(ValueError):
    """Applying this ROI without `force` is refused: its preview says `warn`."""

    def __init__(self, preview: RoiPreview) -> None:
        super().__init__(
            "this region would change judging: "
            + "; ".join(preview.reasons)
            + ". Preview it, build a model for it, or apply it with force"
        )
        self.preview = preview


def summarize(scores: Sequence[float]) -> ScoreSummary | None:
    if not scores:
        return None
    values = np.asarray(scores, dtype=np.float64)
    return ScoreSummary(
        min=float(values.min()),
        median=float(np.median(values)),
        p95=float(np.percentile(values, 95)),
        max=float(values.max()),
    )


def judge_verdict(frames: int, rejects_now: int, rejects_proposed: int) -> tuple[Verdict, list[str]]:
    """`warn` with the reasons when the reject share would jump (see the WARN_* constants)."""
    if frames == 0:
        return "unknown", ["no recent camera frames to score it on (start the line first)"]
    now, proposed = rejects_now / frames, rejects_proposed / frames
    figures = f"reject share {now:.0%} now, {proposed:.0%} with this region, on {frames} recent frames"
    reasons = []
    if round(proposed - now, 9) > WARN_REJECT_SHARE_POINTS:  # rounded: 0.08 - 0.03 is not above 0.05
        reasons.append(f"{figures} (+{(proposed - now) * 100:.0f} points)")
    elif (
        now > 0
        and proposed >= WARN_REJECT_SHARE_RATIO * now
        and rejects_proposed - rejects_now >= WARN_MIN_EXTRA_REJECTS
    ):
        reasons.append(f"{figures} ({proposed / now:.1f}x)")
    if reasons:
        reasons.append("the model was built on whole frames and sees a zoomed view under this region")
        return "warn", reasons
    return "ok", [figures]


def preview_roi(
    raw_frames: Sequence[np.ndarray],
    current: RegionOfInterest | None,
    proposed: RegionOfInterest | None,
    judge: Callable[[np.ndarray], InspectionResult],
    size: tuple[int, int],
    *,
    threshold: float,
    model_id: str | None = None,
) -> RoiPreview:
    """Score `raw_frames` under `current` and `proposed` with `judge` (the active model with the live
    knobs), each frame cropped and resized to `size` (width, height) the way capture does it."""
    width, height = size
    now = [judge(roi_view(image, current, width, height)) for image in raw_frames]
    then = [judge(roi_view(image, proposed, width, height)) for image in raw_frames]
    frames = len(raw_frames)
    rejects_now = sum(r.is_defect for r in now)
    rejects_proposed = sum(r.is_defect for r in then)
    verdict, reasons = judge_verdict(frames, rejects_now, rejects_proposed)
    return RoiPreview(
        roi=proposed.model_dump() if proposed else None,
        current_roi=current.model_dump() if current else None,
        frames=frames,
        model_id=model_id,
        threshold=threshold,
        rejects_now=rejects_now,
        rejects_proposed=rejects_proposed,
        reject_share_now=rejects_now / frames if frames else 0.0,
        reject_share_proposed=rejects_proposed / frames if frames else 0.0,
        scores_now=summarize([float(r.score) for r in now]),
        scores_proposed=summarize([float(r.score) for r in then]),
        verdict=verdict,
        reasons=reasons,
        rebuild_available=REBUILD_ON_STATION,
        rebuild_hint=REBUILD_HINT,
    )
