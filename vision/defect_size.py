"""Score against defect size: does the model still catch a defect a few pixels wide in the source image?

A defect shrinks with the frame when it is resized to the model's input; once it is much smaller than a patch
(`PATCH_STRIDE` px) the features average it away. The evaluation therefore reports, for every defective test
image with a mask, the defect's size in the source image and at the model's input, and detection per size
band, so "the model misses cracks" can be told apart from "the input is too coarse for these cracks".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vision.config import PATCH_STRIDE

# Size bands by equivalent diameter at the model's input, in pixels: below a quarter, half, one, two and
# four patches.
BAND_EDGES_PX = (PATCH_STRIDE / 4, PATCH_STRIDE / 2, PATCH_STRIDE, 2 * PATCH_STRIDE, 4 * PATCH_STRIDE)


@dataclass(frozen=True)
class DefectSize:
    """One defect mask's size: pixel area and equivalent diameter (a disc of the same area), in the source
    image and at the model's square input."""

    source_area_px: int
    source_diameter_px: float
    input_diameter_px: float


def measure(mask_path: str | Path, input_size: int) -> DefectSize | None:
    """Size of the marked pixels of a mask at its own resolution; None when the mask marks nothing."""
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"cannot read mask {mask_path}")
    area = int(np.count_nonzero(mask))
    if area == 0:
        return None
    height, width = mask.shape
    input_area = area * (input_size * input_size) / (height * width)
    return DefectSize(
        source_area_px=area,
        source_diameter_px=2.0 * math.sqrt(area / math.pi),
        input_diameter_px=2.0 * math.sqrt(input_area / math.pi),
    )


def band_label(index: int) -> str:
    """Human label of band `index` (0 = below the first edge)."""
    edges = BAND_EDGES_PX
    if index == 0:
        return f"< {edges[0]:g} px"
    if index == len(edges):
        return f">= {edges[-1]:g} px"
    return f"{edges[index - 1]:g}-{edges[index]:g} px"


def size_bands(
    sizes: Sequence[DefectSize], scores: Sequence[float], threshold: float
) -> list[dict[str, Any]]:
    """Per size band (equivalent diameter at the input): images, share detected at `threshold`, and the
    median score as a multiple of the threshold (> 1 is flagged). Empty bands are left out."""
    if len(sizes) != len(scores):
        raise ValueError(f"sizes and scores differ in length: {len(sizes)} vs {len(scores)}")
    diameters = np.array([s.input_diameter_px for s in sizes], dtype=np.float64)
    values = np.asarray(scores, dtype=np.float64)
    bands = np.searchsorted(np.array(BAND_EDGES_PX), diameters, side="right")
    rows = []
    for index in range(len(BAND_EDGES_PX) + 1):
        chosen = bands == index
        if not chosen.any():
            continue
        source = [s.source_diameter_px for s, c in zip(sizes, chosen, strict=True) if c]
        rows.append(
            {
                "band": band_label(index),
                "images": int(chosen.sum()),
                "detected_at_threshold": float((values[chosen] >= threshold).mean()),
                "median_score_over_threshold": float(np.median(values[chosen]) / threshold)
                if threshold > 0
                else None,
                "source_diameter_px_median": float(np.median(source)),
            }
        )
    return rows


def write_plot(
    sizes: Sequence[DefectSize], scores: Sequence[float], kinds: Sequence[str], threshold: float, path: Path
) -> Path:
    """Score / threshold against the defect's equivalent diameter at the input, one colour per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4.5))
    diameters = np.array([s.input_diameter_px for s in sizes])
    ratios = np.asarray(scores, dtype=np.float64) / threshold
    for kind in dict.fromkeys(kinds):
        chosen = np.array([k == kind for k in kinds])
        axis.scatter(diameters[chosen], ratios[chosen], s=18, alpha=0.75, label=kind)
    axis.axhline(1.0, color="black", linewidth=1, linestyle="--", label="threshold")
    patch = f"one patch ({PATCH_STRIDE} px)"
    axis.axvline(PATCH_STRIDE, color="grey", linewidth=1, linestyle=":", label=patch)
    axis.set_xscale("log")
    axis.set_xlabel("defect equivalent diameter at the model's input (px)")
    axis.set_ylabel("image score / threshold (>= 1: flagged)")
    axis.set_title("Score against defect size")
    axis.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
