"""Build a captured product's model on the station while the line keeps judging (no torch).

The job reads `<data_dir>/datasets/<product>/train/good` (what a capture wrote), fits it with the build
template (`vision.station_build`: ONNX Runtime features, numpy fits) and registers the file in the model
registry, where it can be shadowed, put in a recipe or activated like any uploaded model.

Guarantees: the build runs on its own thread at the lowest CPU priority (nice 19, one ONNX Runtime
thread), so the inspection thread keeps its rate (benchmarks/recipes/build_bench.py measures the frames
the line drops during a build); a model reaches the registry whole and checked, or not at all; a failed
build says why and leaves the registry as it was. One build at a time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from device.recipes import RECIPE_NAME_PATTERN
from vision.build_inputs import load_good_images
from vision.station_build import StationBuild, build_on_station, load_kit

log = logging.getLogger(__name__)

BuildState = Literal["running", "done", "failed"]
LOWEST_PRIORITY = 19
MIN_IMAGES = 8  # fewer good images cannot hold some back for the threshold and still fit a Gaussian
WORST_SHOWN = 8


class HeldBackImage(BaseModel):
    image: str = Field(..., description="File name in the product's capture folder.")
    score: float


class BuildStatus(BaseModel):
    """What the panel shows while a product's model is built, and the check of the built model on the
    captures held back from fitting."""

    product: str = Field(..., pattern=RECIPE_NAME_PATTERN)
    state: BuildState
    stage: str = Field(..., description="loading | features | fit | calibration | registering | done")
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    model_id: str | None = None
    threshold: float | None = None
    head_choice: str | None = None
    fit_images: int = 0
    held_back_scores: list[float] = Field(
        default_factory=list, description="Scores of the held-back good captures (the histogram)."
    )
    false_reject_rate: float | None = Field(
        None, description="Share of the held-back good captures the built model would reject."
    )
    worst: list[HeldBackImage] = Field(
        default_factory=list, description="The held-back captures the model finds least normal, worst first."
    )
    error: str | None = None


class ProductBuild:
    """One build job; `register(path) -> model_id` adopts the finished file into the model registry."""

    def __init__(
        self,
        template_path: Path,
        datasets: Path,
        product: str,
        out_dir: Path,
        register: Callable[[Path], str],
    ) -> None:
        folder = datasets / product / "train" / "good"
        count = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
        if count < MIN_IMAGES:
            raise ValueError(f"{folder} holds {count} good images; a build needs at least {MIN_IMAGES}")
        self.kit = load_kit(template_path)  # a missing or wrong template fails here, named
        self.product = product
        self._datasets, self._out = datasets, out_dir / f"{product}.onnx"
        self._register = register
        self._lock = threading.Lock()
        self._status = BuildStatus(product=product, state="running", stage="loading", total=count)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"build-{product}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def status(self) -> BuildStatus:
        with self._lock:
            return self._status.model_copy(update={"seconds": round(time.monotonic() - self._started, 1)})

    def _update(self, **fields: object) -> None:
        with self._lock:
            self._status = self._status.model_copy(update=fields)

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._update(stage=stage, done=done, total=total)

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)  # this thread only
        except OSError as exc:  # not Linux, or not permitted: build at normal priority
            log.warning("build of %s runs at normal priority: %s", self.product, exc)
        try:
            size = next(iter(self.kit.values())).settings.image_size
            images, paths, sha256 = load_good_images(self._datasets, self.product, size, progress=False)
            built = build_on_station(
                self.kit,
                images,
                self._out,
                self.product,
                train_data_sha256=sha256,
                threads=1,
                progress=self._progress,
            )
            self._update(stage="registering")
            model_id = self._register(built.path)
        except Exception as exc:
            log.warning("build of %s failed: %s", self.product, exc)
            self._update(state="failed", error=str(exc))
            return
        finally:
            self._out.unlink(missing_ok=True)  # the registry keeps its own copy
        self._update(state="done", stage="done", model_id=model_id, **_check(built, paths))
        log.info("built %s for %s in %.1f s", model_id, self.product, built.seconds)


def _check(built: StationBuild, paths: list[Path]) -> dict[str, object]:
    """The built model on the held-back captures: false-reject rate, scores, worst images."""
    scores = list(built.held_back_scores)
    held = sorted(zip(scores, built.held_back, strict=True), reverse=True)
    return {
        "threshold": built.threshold,
        "head_choice": built.head_choice.reason if built.head_choice is not None else None,
        "fit_images": built.fit_images,
        "held_back_scores": scores,
        "false_reject_rate": sum(s > built.threshold for s in scores) / len(scores),
        "worst": [HeldBackImage(image=paths[i].name, score=s) for s, i in held[:WORST_SHOWN]],
    }
