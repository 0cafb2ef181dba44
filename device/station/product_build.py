"""Build a captured product's model on the station while the line keeps judging (no torch).

The job reads `<data_dir>/datasets/<product>/train/good` (what a capture wrote), fits it with the build
template (`vision.station_build`: ONNX Runtime features, numpy fits) and registers the file in the model
registry, where it can be shadowed, put in a recipe or activated like any uploaded model.

Guarantees: the build runs in a process of its own at the lowest CPU priority (`vision.build_process`:
Linux's idle class, one BLAS and one ONNX Runtime thread, no share of the line's interpreter lock), so
the inspection thread keeps its rate (benchmarks/recipes/build_bench.py measures the frames the line
drops during a build); a model reaches the registry whole and checked, or not at all; a failed build
says why and leaves the registry as it was; stopping the station stops the build. One build at a time.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from device.station.recipes import RECIPE_NAME_PATTERN
from vision.station_build import StationBuildError

log = logging.getLogger(__name__)

BuildState = Literal["running", "done", "failed"]
REPO = Path(__file__).resolve().parents[1]  # where `python -m vision.build_process` is found
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
    stage: str = Field(
        ...,
        description="loading | features | fit | comparing heads: <head> (near the head boundary) "
        "| calibration | int8 (`model.int8` only) | registering | done",
    )
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
        template_dir: Path,
        datasets: Path,
        product: str,
        out_dir: Path,
        register: Callable[[Path], str],
    ) -> None:
        folder = datasets / product / "train" / "good"
        count = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
        if count < MIN_IMAGES:
            raise ValueError(f"{folder} holds {count} good images; a build needs at least {MIN_IMAGES}")
        if not any(template_dir.glob("*.onnx")):  # its content is checked by the build itself
            raise StationBuildError(
                f"no build template in {template_dir}: export one at the plant with `edgeinspect template`"
            )
        self.product = product
        out_dir.mkdir(parents=True, exist_ok=True)
        self._out = out_dir / f"{product}.onnx"
        self._register = register
        self._lock = threading.Lock()
        self._status = BuildStatus(product=product, state="running", stage="loading", total=count)
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vision.build_process",
                "--template",
                str(template_dir),
                "--data",
                str(datasets),
                "--category",
                product,
                "--out",
                str(self._out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self._thread = threading.Thread(target=self._follow, name=f"build-{product}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Stop the build (the station is stopping); nothing is registered."""
        if self._process.poll() is None:
            self._process.terminate()

    def status(self) -> BuildStatus:
        with self._lock:
            return self._status.model_copy(update={"seconds": round(time.monotonic() - self._started, 1)})

    def _update(self, **fields: object) -> None:
        with self._lock:
            self._status = self._status.model_copy(update=fields)

    def _follow(self) -> None:
        """Read the build's progress lines; register its model when it ends well."""
        result: dict[str, Any] | None = None
        error: str | None = None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "stage" in record:
                self._update(stage=record["stage"], done=record["done"], total=record["total"])
            result, error = record.get("result", result), record.get("error", error)
        code = self._process.wait()
        try:
            if result is None:
                stderr = self._process.stderr.read() if self._process.stderr else ""
                reason = error or f"the build process ended with code {code}: {stderr.strip()[-500:]}"
                log.warning("build of %s failed: %s", self.product, reason)
                self._update(state="failed", error=reason)
                return
            self._update(stage="registering")
            model_id = self._register(self._out)
        except (ValueError, OSError) as exc:  # a file the registry refuses, a full disk
            self._update(state="failed", error=str(exc))
            return
        finally:
            self._out.unlink(missing_ok=True)  # the registry keeps its own copy
        self._update(state="done", stage="done", model_id=model_id, **_check(result))
        log.info("built %s for %s in %.1f s", model_id, self.product, result["seconds"])


def _check(result: dict[str, Any]) -> dict[str, object]:
    """The built model on the held-back captures: false-reject rate, scores, worst images."""
    scores, threshold = list(result["held_back_scores"]), float(result["threshold"])
    held = sorted(zip(scores, result["held_back_images"], strict=True), reverse=True)
    return {
        "threshold": threshold,
        "head_choice": result["head_choice"],
        "fit_images": result["fit_images"],
        "held_back_scores": scores,
        "false_reject_rate": sum(s > threshold for s in scores) / len(scores),
        "worst": [HeldBackImage(image=name, score=score) for score, name in held[:WORST_SHOWN]],
    }
