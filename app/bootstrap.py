"""First run: make sure a model exists before the line starts.

When `model.path` is missing and `model.auto_build` is on, build one from the simulator's good parts (the
same generator the simulated camera draws from), calibrate it on held-back good parts and export ONNX to
`model.path`. Needs the `train` extra (torch); the edge box with a shipped model never does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import ConfigError, Settings
from vision.config import ModelSettings

if TYPE_CHECKING:  # the train extra; only imported when a model is built
    import numpy as np
    from torch import nn

    from vision.models import AnomalyModel

log = logging.getLogger("edgeinspect")


def ensure_model(settings: Settings, progress: bool = True) -> Path:
    path = Path(settings.model.path)
    if path.exists():
        return path
    if not settings.model.auto_build:
        raise ConfigError(f"model.path: {path} does not exist and model.auto_build is false")
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"model.path: {path} does not exist, and building one needs the training extra "
            "(pip install -e '.[train]') or a model file copied to that path"
        ) from exc
    log.info(
        "no model at %s: building one from simulated good %r parts (first run only)",
        path,
        settings.camera.category,
    )
    started = time.monotonic()
    built = build_default_model(settings.camera.category, settings.model, path, progress=progress)
    log.info("model built in %.0f s: %s", time.monotonic() - started, built)
    return built


def ensure_build_template(settings: Settings) -> Path | None:
    """Write the station's build template (`model.build_template`) where models are built on first run
    (`model.auto_build`, torch installed) and none is there yet, so captured products build on this box;
    None when it is not written here (a station without torch gets it from the plant)."""
    path = Path(settings.model.build_template)
    if any(path.glob("*.onnx")):
        return path
    if not settings.model.auto_build:
        return None
    try:
        from vision.build_template import check_template_settings, export_build_template
    except ImportError:
        log.info("no build template at %s: export one on the plant (`edgeinspect template`)", path)
        return None
    # What the station builds: either head (auto: decided per product), int8 where the line's model is.
    model = settings.model.model_copy(update={"head": "auto", "compression_budget": None})
    try:
        check_template_settings(model)
    except ValueError as exc:
        log.info("no build template: %s", exc)
        return None
    export_build_template(model, path)
    log.info("build template written to %s (captured products build on this box)", path)
    return path


def build_default_model(category: str, model: ModelSettings, out_path: Path, progress: bool = True) -> Path:
    from tqdm import tqdm

    from vision.data.synthetic import LineSimulator
    from vision.train import build_model_files

    compact: Callable[[AnomalyModel, np.ndarray], nn.Module] | None = None
    if model.compression_budget:
        from compression.budget import parse_budget
        from compression.pipeline import check_deploy_methods, compress_for_deploy

        budget, heal_steps = model.compression_budget, model.heal_steps
        parse_budget(budget)  # a bad budget fails before minutes of work
        methods = model.compression_methods
        check_deploy_methods(methods, model)  # so does a bad layer name or method

        def compress(dense: AnomalyModel, fit_images: np.ndarray) -> nn.Module:
            return compress_for_deploy(
                dense, fit_images, budget=budget, heal_steps=heal_steps, progress=progress, methods=methods
            )

        compact = compress

    # A different seed from the camera's: the model must generalise to parts it has never seen.
    simulator = LineSimulator(category, seed=model.seed + 7919, defect_rate=0.0, image_size=model.image_size)
    images = [
        simulator.next_part().image
        for _ in tqdm(range(model.train_images), desc="simulating good parts", disable=not progress)
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return build_model_files(
        images,
        out_path,
        model,
        model_name=f"default-{category}",
        progress=progress,
        compact=compact,
        compact_note=f"{model.compression_budget}, healed {model.heal_steps} steps" if compact else "",
    )
