"""Export build templates: what a station needs to build models from its own good parts without torch
(`vision.station_build`).

A template is an ordinary exported model (`vision.export`, the deployed file's graph) with its head left
unfitted and threshold infinity, so it can never judge a part (the inspector refuses it); one per head, in
one folder (`gaussian.onnx`, `bank.onnx`). The station reads the raw patch embeddings off the graph itself,
fits in numpy (`vision.head_fit`, `vision.bank_fit`) and writes the numbers into the graph
(`vision.template_graph`). The template carries the settings it was exported for, so the station fits
with the same shrinkage, components, bank size and seed as the plant would.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vision.config import ModelSettings
from vision.export import (
    META_BUILD_SETTINGS,
    META_BUILD_TEMPLATE,
    META_FEATURE_GROUPS,
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_THRESHOLD,
    META_TRAIN_DATA_SHA256,
    export_onnx,
)
from vision.models import AnomalyModel

TEMPLATE_VERSION = "1"


def check_template_settings(settings: ModelSettings) -> None:
    """The settings a station can build from: a Gaussian head (or auto, decided on the station, which
    then builds only parts that come out aligned) on whitened features; float or int8 (`model.int8`:
    the station quantizes the fitted file as the plant does, `vision.int8_export`), never tensor-compressed
    (healing needs torch)."""
    if settings.head == "bank":
        raise ValueError(
            "model.head: a station builds the Gaussian head only; bank models are built at the plant"
        )
    if settings.feature_norm != "whiten":
        raise ValueError(
            f"model.feature_norm: a station build fits whitened features, got {settings.feature_norm!r}"
        )
    if settings.compression_budget:
        raise ValueError(
            "model.compression_budget: a station build cannot heal a tensor-compressed model (no torch); "
            "build compressed models at the plant"
        )


def export_build_template(settings: ModelSettings, out_dir: str | Path) -> list[Path]:
    """Write the templates for `settings` into `out_dir`: `gaussian.onnx` and `bank.onnx` for `head: auto`
    (decided on the station from the captured parts), else the one head's. Returns the paths."""
    check_template_settings(settings)
    heads = ("gaussian", "bank") if settings.head == "auto" else (settings.head,)
    out_dir = Path(out_dir)
    return [_export_head(settings, head, out_dir / f"{head}.onnx") for head in heads]


@torch.inference_mode()
def _export_head(settings: ModelSettings, head: str, out_path: Path) -> Path:
    from vision.train import model_config

    torch.manual_seed(settings.seed)
    model = AnomalyModel(model_config(settings.model_copy(update={"head": head})), pretrained=True)
    metadata = {
        META_THRESHOLD: "inf",
        META_MODEL_NAME: f"build-template-{head}-{settings.backbone}",
        META_MODEL_VERSION: TEMPLATE_VERSION,
        META_TRAIN_DATA_SHA256: "none (unfitted)",
        META_BUILD_TEMPLATE: TEMPLATE_VERSION,
        META_BUILD_SETTINGS: settings.model_dump_json(),
        META_FEATURE_GROUPS: ",".join(str(c) for c in model.backbone.channels),
    }
    return export_onnx(model.eval(), out_path, metadata, settings.image_size)
