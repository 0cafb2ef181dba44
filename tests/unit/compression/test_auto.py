"""Every method exports to ONNX faithfully; layers are timed on ORT; `auto` picks a method per layer from
measured latency and per-method sensitivity, and says why."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compression.budget import parse_budget
from compression.config import CompressionSettings
from compression.evaluation import Evaluator
from compression.factorize import apply_ranks, build_factorized, factorized_cost
from compression.inventory import build_inventory
from compression.layer_bench import LatencyCache, LayerTiming, time_options
from compression.layers import CPConv2d, SVDLinear, TTLinear, Tucker2Conv2d
from compression.onnx_bench import session_from_bytes
from compression.pipeline import factorize_to_budget
from compression.rank_selection import select_ranks
from compression.sensitivity import profile_sensitivity

from .conftest import toy_images

EXAMPLE = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)


def _cp_rank4_conv() -> nn.Conv2d:
    """A conv whose kernel has CP rank 4, so CP at rank 4 is exact (CP has no 'full rank' shortcut)."""
    factors = [torch.randn(n, 4) for n in (10, 8, 3, 3)]
    layer = nn.Conv2d(8, 10, 3, stride=2, padding=1)
    with torch.no_grad():
        layer.weight.copy_(torch.einsum("or,ir,hr,wr->oihw", *factors))
    return layer


CASES = {
    "svd-linear": (lambda: nn.Linear(40, 24), "svd", 24, (3, 7, 40), SVDLinear),
    "svd-strided-1x1": (
        lambda: nn.Conv2d(16, 32, 1, stride=2, padding=1),
        "svd",
        16,
        (1, 16, 9, 9),
        SVDLinear,
    ),
    "tucker2-3x3": (
        lambda: nn.Conv2d(12, 20, 3, padding=2, dilation=2),
        "tucker2",
        20,
        (1, 12, 11, 11),
        Tucker2Conv2d,
    ),
    "cp-3x3": (_cp_rank4_conv, "cp", 4, (1, 8, 13, 13), CPConv2d),
    "tt-linear": (lambda: nn.Linear(60, 48), "tt", 10_000, (2, 5, 60), TTLinear),
    "tt-1x1": (lambda: nn.Conv2d(24, 36, 1), "tt", 10_000, (1, 24, 5, 5), TTLinear),
}


def _onnx_run(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter the project ships with
        torch.onnx.export(module.eval(), (x,), buffer, input_names=["x"], opset_version=17, dynamo=False)
    ops = {node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node}
    assert ops <= {"Conv", "MatMul", "Gemm", "Add", "Reshape", "Transpose", "Constant"}, ops
    return session_from_bytes(buffer.getvalue(), threads=1).run(None, {"x": x.numpy()})[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_method_exported_to_onnx_matches_the_dense_torch_layer(case: str) -> None:
    torch.manual_seed(0)
    make, method, rank, shape, kind = CASES[case]
    layer = make()
    x = torch.randn(shape)
    factorized = build_factorized(layer, method, rank)
    assert isinstance(factorized, kind)
    with torch.no_grad():
        expected = layer(x).numpy()
    got = _onnx_run(factorized, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))


def test_layer_options_are_timed_on_ort_and_cached(tmp_path: Path) -> None:
    layer = nn.Conv2d(16, 32, 1)
    options = [("dense", 0), ("svd", 4), ("tt", 4)]
    cache = LatencyCache(tmp_path / "layers.json")
    first = time_options(layer, (1, 16, 8, 8), options, threads=1, runs=3, warmup=1, cache=cache)
    assert set(first) == set(options) and all(ms > 0 for ms in first.values())
    cache.save()
    stored = json.loads((tmp_path / "layers.json").read_text())
    assert {json.loads(key)[2][0] for key in stored} >= {"dense", "svd", "tt"}
    # a fresh cache reads the file: nothing is re-timed, the same figures come back
    again = time_options(
        layer, (1, 16, 8, 8), options, threads=1, runs=3, cache=LatencyCache(tmp_path / "layers.json")
    )
    assert again == first


def test_layer_timing_interpolates_between_measured_ranks() -> None:
    timing = LayerTiming(dense_ms=1.0, points={"svd": {4: 0.2, 16: 0.5}})
    macs = {4: 400, 8: 800, 16: 1600, 2: 200, 32: 3200}
    assert timing.estimate("svd", 16, macs) == 0.5
    assert timing.estimate("svd", 8, macs) == pytest.approx(0.2 + 0.3 * 400 / 1200)
    assert timing.estimate("svd", 2, macs) == 0.2  # fixed per-op costs: no cheaper than the cheapest timed
    assert timing.estimate("svd", 32, macs) == pytest.approx(0.5 + 0.3 * 1600 / 1200)
    assert timing.estimate("tt", 8, macs) is None


@pytest.fixture(scope="module")
def auto_profile(toy_model):
    inventory = build_inventory(toy_model, EXAMPLE, min_params=500, conv_method="auto", linear_method="auto")
    evaluator = Evaluator.build(toy_model, toy_images(6, seed=5))
    sensitivity = profile_sensitivity(toy_model, inventory, evaluator, (0.1, 0.3), progress=False)
    return inventory, sensitivity


def _timings(inventory, slow: str) -> dict[str, LayerTiming]:
    """Timings in which `slow` costs more than the dense layer at every rank and the rest cost MACs."""
    timings = {}
    for info in inventory.compressible:
        timing = LayerTiming(dense_ms=float(info.macs) / 1e6)
        for method in info.candidates:
            for rank in (2, 4, 8, 16):
                macs = factorized_cost(info.shape, method, rank)[1]
                timing.add(method, rank, timing.dense_ms * 3 if method == slow else macs / 1e6)
        timings[info.name] = timing
    return timings


@pytest.mark.parametrize("slow", ["tt", "svd", "cp", "tucker2"])
def test_auto_never_picks_a_method_measured_slower_than_dense(toy_model, auto_profile, slow: str) -> None:
    inventory, sensitivity = auto_profile
    plan = select_ranks(
        toy_model,
        inventory,
        sensitivity,
        parse_budget("params=0.5"),
        rank_multiple=2,
        timings=_timings(inventory, slow),
    )
    layers = inventory.by_name()
    for name, method in plan.methods.items():
        assert method in layers[name].candidates
        if plan.ranks[name] < layers[name].full_rank_of(method):
            assert method != slow, f"{name}: {plan.reasons[name]}"
        if slow in layers[name].candidates:
            assert f"{slow}: slower than the dense layer at every rank" in plan.reasons[name]
    assert plan.params <= 0.5 * inventory.total_params
    compressed = apply_ranks(toy_model, plan.ranks, plan.methods)
    assert compressed(torch.from_numpy(toy_images(2, seed=1)))[1].shape == (2,)


def test_auto_compares_methods_by_sensitivity_when_timings_tie(toy_model, auto_profile) -> None:
    inventory, sensitivity = auto_profile
    timings = {
        info.name: LayerTiming(dense_ms=1.0, points={m: {2: 0.5, 64: 0.5} for m in info.candidates})
        for info in inventory.compressible
    }
    plan = select_ranks(
        toy_model, inventory, sensitivity, parse_budget("params=0.5"), rank_multiple=2, timings=timings
    )
    assert set(plan.reasons) == {info.name for info in inventory.compressible}
    assert all(reason.startswith("auto:") for reason in plan.reasons.values())
    for name, method in plan.methods.items():
        rank = plan.ranks[name]
        if rank < inventory.by_name()[name].full_rank_of(method):
            label = f"{method} {'bond' if method == 'tt' else 'rank'} {rank}"
            assert f"{label} (predicted map error" in plan.reasons[name]


def test_factorize_to_budget_with_auto_times_layers_and_records_reasons(
    toy_model, deterministic_layer_timings
) -> None:
    settings = CompressionSettings(
        min_layer_params=500,
        methods={"default": "auto", "memory_bank": "svd"},
        sensitivity_fractions=(0.1, 0.3),
        sensitivity_images=4,
        covariance_images=4,
        layer_latency_runs=3,
        rank_multiple=2,
    )
    result = factorize_to_budget(
        toy_model, toy_images(8, seed=3), "params=0.6", settings=settings, progress=False
    )
    layers = result.inventory.by_name()
    assert layers["memory_bank.similarity"].candidates == ("svd",)
    auto = [info.name for info in result.inventory.compressible if info.auto]
    assert auto and set(auto) <= set(result.timings)
    for name in auto:
        timing = result.timings[name]
        assert timing.dense_ms > 0 and set(timing.points) == set(layers[name].candidates)
        probed = {p.method for p in result.sensitivity[name]}
        assert probed == set(layers[name].candidates)
        assert result.plan.methods[name] in layers[name].candidates
        assert result.plan.reasons[name].startswith("auto:")
    assert "memory_bank=svd" in result.plan.reasons["memory_bank.similarity"]
    for name, method in result.plan.methods.items():
        module = result.model.get_submodule(name)
        factorized = result.plan.ranks[name] < layers[name].full_rank_of(method)
        expected = {"svd": SVDLinear, "tucker2": Tucker2Conv2d, "cp": CPConv2d, "tt": TTLinear}[method]
        assert isinstance(module, expected) == factorized
