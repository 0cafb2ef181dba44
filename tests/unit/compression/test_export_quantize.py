"""A compressed model exports to plain ONNX, matches PyTorch on ONNX Runtime, and quantizes to int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compression.factorize import apply_ranks
from compression.layers import CPConv2d, TTLinear
from compression.onnx_bench import measure_latency, onnx_outputs
from compression.quantize import quantize_int8
from vision.export import META_MODEL_VERSION, META_THRESHOLD, export_onnx

from .conftest import ToyAnomalyModel, toy_images

METADATA = {
    META_THRESHOLD: "1.5",
    "edgeinspect.model_name": "toy",
    META_MODEL_VERSION: "1",
    "edgeinspect.train_data_sha256": "0" * 64,
}
RANKS = {"backbone.0": 8, "backbone.2": 16, "backbone.6": 8, "backbone.8": 12, "memory_bank.similarity": 16}
METHODS = {
    "backbone.0": "tucker2",
    "backbone.2": "cp",
    "backbone.6": "svd",
    "backbone.8": "tt",
    "memory_bank.similarity": "svd",
}


@pytest.fixture(scope="module")
def exported(toy_model, tmp_path_factory) -> tuple[nn.Module, Path]:
    compressed = apply_ranks(toy_model, RANKS, METHODS)
    path = export_onnx(compressed, tmp_path_factory.mktemp("onnx") / "model.onnx", METADATA, 32)
    return compressed, path


def test_compressed_model_uses_factorized_layers_and_leaves_original(toy_model, exported) -> None:
    compressed, _ = exported
    assert isinstance(compressed.backbone[2], CPConv2d) and isinstance(compressed.backbone[8], TTLinear)
    assert isinstance(toy_model.backbone[2], nn.Conv2d)


def test_onnx_matches_pytorch_with_plain_ops(exported) -> None:
    compressed, path = exported
    images = toy_images(4, seed=9)
    maps, scores = onnx_outputs(path, images)
    with torch.no_grad():
        ref_maps, ref_scores = compressed(torch.from_numpy(images))
    np.testing.assert_allclose(maps, ref_maps[:, 0].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-3, atol=1e-3)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and "MatMul" in ops and "Einsum" not in ops


def test_int8_is_smaller_runnable_and_keeps_metadata(tmp_path) -> None:
    torch.manual_seed(0)
    model = ToyAnomalyModel(bank_size=2048).eval()  # weights must outweigh the QDQ bookkeeping
    with torch.no_grad():
        patches = model.extract_features(torch.from_numpy(toy_images(16, seed=1)))
        patches = patches.permute(0, 2, 3, 1).reshape(-1, 48)
        model.memory_bank.set_bank(patches[torch.randint(len(patches), (2048,))])
    path = export_onnx(model, tmp_path / "model.onnx", METADATA, 32)
    int8_path = quantize_int8(path, tmp_path / "model.int8.onnx", toy_images(8, seed=2))
    assert int8_path.stat().st_size < 0.5 * path.stat().st_size
    props = {p.key: p.value for p in onnx.load(str(int8_path)).metadata_props}
    assert props[META_THRESHOLD] == "1.5" and props[META_MODEL_VERSION] == "1-int8"
    assert props["edgeinspect.input_format"] == "uint8 NHWC RGB"
    images = toy_images(4, seed=9)
    maps, scores = onnx_outputs(int8_path, images)
    _, ref_scores = onnx_outputs(path, images)
    assert maps.shape == (4, 32, 32) and np.all(np.isfinite(scores))
    assert np.corrcoef(scores, ref_scores)[0, 1] > 0.5 or np.allclose(scores, ref_scores, rtol=0.2)
    timing = measure_latency(int8_path, images[0], threads=1, warmup=1, runs=3)
    assert timing["p50_ms"] > 0 and timing["p99_ms"] >= timing["p50_ms"]


def test_int8_without_calibration_images_is_refused(exported, tmp_path) -> None:
    _, path = exported
    with pytest.raises(ValueError, match="at least one good image"):
        quantize_int8(path, tmp_path / "x.onnx", np.zeros((0, 32, 32, 3), dtype=np.uint8))
