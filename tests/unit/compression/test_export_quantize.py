"""A compressed model exports to plain ONNX, matches PyTorch on ONNX Runtime, and quantizes to int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compression.evaluation import relative_error
from compression.factorize import apply_ranks
from compression.layers import CPConv2d, TTLinear
from compression.onnx_bench import interleaved_times, measure_latency, onnx_outputs, sessions_peak_mib
from compression.op_profile import profile_by_class
from compression.quantize import (
    Int8Check,
    quantize_int8,
    quantize_int8_measured,
    weights_fold_at_load,
)
from vision.config import ModelSettings
from vision.data.synthetic import LineSimulator
from vision.export import META_MODEL_VERSION, META_THRESHOLD, export_onnx
from vision.int8_weights import weight_only_int8
from vision.metrics import image_auroc
from vision.train import fit_model

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


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


@pytest.fixture(scope="module")
def bank_model(tmp_path_factory) -> Path:
    """The toy model with a bank big enough that its weights outweigh the QDQ bookkeeping."""
    torch.manual_seed(0)
    model = ToyAnomalyModel(bank_size=2048).eval()
    with torch.no_grad():
        patches = model.extract_features(torch.from_numpy(toy_images(16, seed=1)))
        patches = patches.permute(0, 2, 3, 1).reshape(-1, 48)
        model.memory_bank.set_bank(patches[torch.randint(len(patches), (2048,))])
    return export_onnx(model, tmp_path_factory.mktemp("bank") / "model.onnx", METADATA, 32)


MIXED = np.concatenate([toy_images(10, seed=11), toy_images(10, seed=12, defect=True)])
LABELS = np.repeat([0, 1], 10)


def test_int8_scores_rank_correlate_with_fp32(bank_model, tmp_path) -> None:
    int8_path = quantize_int8(bank_model, tmp_path / "model.int8.onnx", toy_images(8, seed=2))
    _, scores = onnx_outputs(int8_path, MIXED)
    _, reference = onnx_outputs(bank_model, MIXED)
    assert _spearman(scores, reference) > 0.9
    assert image_auroc(LABELS, scores) >= image_auroc(LABELS, reference) - 0.01


def _float_path_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The bank's distance product and everything downstream of it (norms, sqrt, smoothing, max)."""
    start = next(n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and "memory_bank" in n.name)
    reached, frontier = [start], list(start.output)
    while frontier:
        tensor = frontier.pop()
        for node in model.graph.node:
            if tensor in node.input and node not in reached:
                reached.append(node)
                frontier.extend(node.output)
    return reached


def _parts(count: int, seed: int, defect_rate: float) -> np.ndarray:
    simulator = LineSimulator("pcb", seed=seed, defect_rate=defect_rate, image_size=64)
    return np.stack([simulator.next_part().image for _ in range(count)])


@pytest.fixture(scope="module")
def patchcore(tmp_path_factory) -> Path:
    """A real (small) PatchCore model: EfficientNet-Lite0 features, bank, position normalisation, blur."""
    settings = ModelSettings(head="bank", neighbourhood=1, image_size=64, memory_bank_size=64, train_images=8)
    model = fit_model(list(_parts(8, seed=1, defect_rate=0.0)), settings, progress=False)
    return export_onnx(model, tmp_path_factory.mktemp("patchcore") / "model.onnx", METADATA, 64)


def test_int8_of_a_real_model_tracks_fp32(patchcore, tmp_path) -> None:
    int8_path = quantize_int8(patchcore, tmp_path / "model.int8.onnx", _parts(6, seed=2, defect_rate=0.0))
    parts = _parts(40, seed=3, defect_rate=0.5)
    _, scores = onnx_outputs(int8_path, parts)
    _, reference = onnx_outputs(patchcore, parts)
    assert _spearman(scores, reference) > 0.8  # 0.90 measured here; tiny 64 px scores lie close


def test_int8_keeps_the_distance_smoothing_and_max_in_float(patchcore, tmp_path) -> None:
    calibration = _parts(4, seed=2, defect_rate=0.0)
    model = onnx.load(str(quantize_int8(patchcore, tmp_path / "model.int8.onnx", calibration)))
    producers = {output: node for node in model.graph.node for output in node.output}
    quantized_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger"}
    assert any(n.op_type == "QuantizeLinear" and "backbone" in n.name for n in model.graph.node)
    after = _float_path_nodes(model)
    assert {"ReduceMax", "Sqrt", "MatMul"} <= {n.op_type for n in after}
    for node in after:
        assert node.op_type not in quantized_ops, node.name
        for name in node.input:
            producer = producers.get(name)
            assert producer is None or producer.op_type not in quantized_ops, (node.name, producer.name)
    blur = [n for n in model.graph.node if n.op_type == "MatMul" and n.name.startswith("/blur/")]
    initializers = {init.name for init in model.graph.initializer}
    # The upsampling-and-blur matrices stay float constants (rows @ grid @ columns^T).
    assert len(blur) == 2 and all(any(i in initializers for i in n.input) for n in blur)
    bank = [n for n in after if n.op_type in ("MatMul", "Gemm") and "memory_bank" in n.name]
    scaled = {n.output[0]: n for n in model.graph.node if n.op_type == "Mul"}
    assert bank and all(n.input[1] in scaled for n in bank)  # the bank is stored as int8 weights


def test_every_factorization_quantizes_and_stays_faithful(exported, tmp_path) -> None:
    _, path = exported  # Tucker-2, CP, SVD and TT layers and a factorized bank
    int8_path = quantize_int8(path, tmp_path / "model.int8.onnx", toy_images(8, seed=2))
    maps, _ = onnx_outputs(int8_path, MIXED)
    reference, _ = onnx_outputs(path, MIXED)
    assert np.all(np.isfinite(maps)) and relative_error(maps, reference) < 0.05


def test_measured_int8_decides_each_op_group_and_holds_the_metric(bank_model, tmp_path) -> None:
    def metric(candidate: Path) -> float:
        return image_auroc(LABELS, onnx_outputs(candidate, MIXED, threads=1)[1])

    check = Int8Check(MIXED[0], metric, threads=1, runs=5, max_drop=0.01)
    result = quantize_int8_measured(
        bank_model, tmp_path / "model.int8.onnx", toy_images(8, seed=2), check=check
    )
    groups = [d.group for d in result.decisions]
    assert groups == ["pointwise conv", "spatial conv", "depthwise conv", "activations"]
    assert all(d.mode in ("int8", "int8 weights", "float") and d.reason for d in result.decisions)
    assert result.fp32_metric is not None and metric(result.path) >= result.fp32_metric - 0.01
    assert result.path.stat().st_size < 0.5 * bank_model.stat().st_size
    assert result.fp32_p50_ms and result.int8_p50_ms
    assert weights_fold_at_load(result.path)
    version = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}[META_MODEL_VERSION]
    assert version == "1-int8"


def test_int8_weights_only_fold_to_float_at_load_and_keep_outputs(patchcore, tmp_path) -> None:
    model = onnx.load(str(patchcore))
    backbone = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/backbone/")]
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    conv_weights = sum(sizes.get(n.input[1], 0) for n in backbone)
    assert weight_only_int8(model, [n.name for n in backbone], distance_bias=False) == len(backbone)
    path = tmp_path / "weights.onnx"
    onnx.save(model, str(path))
    # Every backbone conv weight went from 4 bytes to 1 (scales and zero points cost a little back).
    assert patchcore.stat().st_size - path.stat().st_size > 0.95 * 3 * conv_weights
    assert weights_fold_at_load(path)  # no per-frame dequantization: same kernels as fp32
    parts = _parts(6, seed=4, defect_rate=0.5)
    assert relative_error(onnx_outputs(path, parts)[0], onnx_outputs(patchcore, parts)[0]) < 0.02


def test_int8_stores_the_gaussian_heads_precision_factors_as_int8_and_keeps_its_scores(tmp_path) -> None:
    """The per-position Gaussian's [positions, K, K] Cholesky factors are most of its file: their lower
    triangles as int8 with one scale per position and column, unpacked to float at load, so the file
    shrinks about 8x there and the scores hold."""
    settings = ModelSettings(head="gaussian", image_size=64, train_images=8, gaussian_components=16)
    model = fit_model(list(_parts(8, seed=1, defect_rate=0.0)), settings, progress=False)
    path = export_onnx(model, tmp_path / "model.onnx", METADATA, 64)
    int8_path = quantize_int8(path, tmp_path / "model.int8.onnx", _parts(4, seed=2, defect_rate=0.0))
    head = model.position_gaussian
    stored = {init.name: tuple(init.dims) for init in onnx.load(str(int8_path)).graph.initializer}
    positions, k, _ = head.factor.shape
    # Cholesky factors: only each position's lower triangle is stored (and one zero the upper half reads).
    int8_factors = [dims for name, dims in stored.items() if name.endswith("_int8") and dims[0] == positions]
    assert int8_factors == [(positions, k * (k + 1) // 2 + 1)]
    assert not [n for n, dims in stored.items() if dims == tuple(head.factor.shape)]  # no float copy left
    assert weights_fold_at_load(int8_path)
    # The head alone as int8 weights (the backbone float) keeps the float model's maps.
    float_backbone = onnx.load(str(path))
    head_nodes = [n.name for n in float_backbone.graph.node if n.name.startswith("/position_gaussian/")]
    assert weight_only_int8(float_backbone, head_nodes, distance_bias=False) == 2  # projection and factors
    head_only = tmp_path / "head.int8.onnx"
    onnx.save(float_backbone, str(head_only))
    assert path.stat().st_size - head_only.stat().st_size > 0.85 * 3.5 * head.factor.numel()
    parts = _parts(6, seed=4, defect_rate=0.5)
    assert relative_error(onnx_outputs(head_only, parts)[0], onnx_outputs(path, parts)[0]) < 0.02


def test_int8_of_a_truncated_gaussian_head_stores_its_factors_whole_and_keeps_its_scores(tmp_path) -> None:
    """A head that keeps each position's strongest directions has [positions, K, rank] factors, not
    triangles: they are stored whole as int8, and the scores hold."""
    settings = ModelSettings(
        head="gaussian", image_size=64, train_images=8, gaussian_components=16, gaussian_rank=4
    )
    model = fit_model(list(_parts(8, seed=1, defect_rate=0.0)), settings, progress=False)
    assert tuple(model.position_gaussian.factor.shape)[1:] == (16, 4)
    path = export_onnx(model, tmp_path / "model.onnx", METADATA, 64)
    float_model = onnx.load(str(path))
    head_nodes = [n.name for n in float_model.graph.node if n.name.startswith("/position_gaussian/")]
    assert weight_only_int8(float_model, head_nodes, distance_bias=False) == 2
    stored = {init.name: tuple(init.dims) for init in float_model.graph.initializer}
    positions = model.position_gaussian.factor.shape[0]
    assert [d for n, d in stored.items() if n.endswith("_int8") and d[0] == positions] == [(positions, 16, 4)]
    head_only = tmp_path / "head.int8.onnx"
    onnx.save(float_model, str(head_only))
    parts = _parts(6, seed=4, defect_rate=0.5)
    assert relative_error(onnx_outputs(head_only, parts)[0], onnx_outputs(path, parts)[0]) < 0.02


def test_int8_bank_of_a_compressed_coarse_to_fine_model_keeps_both_distances_exact(tmp_path) -> None:
    """The coarse copy and the whole SVD bank share their first factor (through an Identity): it is stored
    once as int8, and each chain's closing bias is recomputed from its own int8 entries (after ONNX
    Runtime fused each second factor and its bias into a Gemm behind a reshape)."""
    from compression.layers import SVDLinear

    settings = ModelSettings(
        head="bank",
        neighbourhood=1,
        image_size=64,
        memory_bank_size=64,
        train_images=8,
        coarse_entries=16,
        refined_patches=16,
    )
    model = fit_model(list(_parts(8, seed=1, defect_rate=0.0)), settings, progress=False)
    bank = model.memory_bank
    bank.similarity = SVDLinear.from_layer(bank.similarity, 8)
    bank.sync_bias()
    assert bank.searches_coarse_first
    path = export_onnx(model, tmp_path / "model.onnx", METADATA, 64)
    int8_path = quantize_int8(path, tmp_path / "model.int8.onnx", _parts(4, seed=2, defect_rate=0.0))
    stored = {init.name: tuple(init.dims) for init in onnx.load(str(int8_path)).graph.initializer}
    factors = sorted(dims for name, dims in stored.items() if name.endswith("_int8") and len(dims) == 2)
    assert factors == sorted([(bank.dim, 8), (8, 16), (8, 64)])  # the shared first factor once
    assert sorted(dims for name, dims in stored.items() if name.endswith("_bank_norms")) == [(16,), (64,)]
    parts = _parts(6, seed=4, defect_rate=0.5)
    assert relative_error(onnx_outputs(int8_path, parts)[0], onnx_outputs(path, parts)[0]) < 0.1


def test_models_of_different_input_sizes_time_interleaved_and_load_together(toy_model, tmp_path) -> None:
    """The real-data front times 256 and 384 px models in one round-robin and loads N copies at once."""
    small = export_onnx(toy_model, tmp_path / "small.onnx", METADATA, 32)
    large = export_onnx(toy_model, tmp_path / "large.onnx", METADATA, 48)
    times = interleaved_times([small, large], toy_images(1, seed=3)[0], threads=1, warmup=1, runs=4)
    assert [len(t) for t in times] == [4, 4] and all(ms > 0 for t in times for ms in t)
    assert sessions_peak_mib([small, small, large], 32, threads=1) > 0


def test_profile_of_an_int8_file_tells_its_convolutions_apart(patchcore, tmp_path) -> None:
    """ORT fuses each QDQ conv into a QLinearConv named after the Conv with a `_token_N` suffix; its time
    must still land on 1x1 / depthwise convs, not all on 'kxk conv'."""
    int8_path = quantize_int8(patchcore, tmp_path / "model.int8.onnx", _parts(4, seed=2, defect_rate=0.0))
    profile = profile_by_class(int8_path, _parts(1, seed=5, defect_rate=0.0)[0], threads=1, runs=3)
    assert profile.get("1x1 conv", 0.0) > 0.0
    assert profile.get("depthwise conv", 0.0) > 0.0
