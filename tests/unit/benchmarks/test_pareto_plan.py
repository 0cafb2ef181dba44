"""The Pareto benchmark's pure parts (benchmarks/pareto/run_pareto.py): the compressed-variant spec
grammar, the front, and when a latency pass counts as quiet."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.pareto.run_pareto import (
    QUIET_LOAD_PER_CORE,
    SHARED_FIT_IMAGES,
    Variant,
    latency_is_quiet,
    machine_busy_s,
    pareto_front,
    parse_compressed,
    parse_dense,
    search_pairs,
)


def test_spec_grammar_names_shared_compressions_by_their_image_count() -> None:
    plain, shared, pooled = parse_compressed(
        [
            "lite0:1024:params=0.5:25",
            "dev:lite2:12288:params=0.2:25",
            "dev400:lite0:1024:params=0.7:200:memory_bank=dense",
        ],
        {},
    )
    assert not plain.shared and plain.name == "lite0-b1024-p0.5-h25"
    assert shared.shared and shared.shared_images == SHARED_FIT_IMAGES
    assert shared.name == "lite2-b12288-p0.2-h25-dev"  # the name cached builds are stored under
    assert pooled.shared_images == 400 and pooled.methods == (("memory_bank", "dense"),)
    assert pooled.name == "lite0-b1024-p0.7-h200-memory_bank=dense-dev400"
    assert pooled.fp32 == pooled and pooled.parent == Variant("efficientnet_lite0", 1024)


def test_dense_specs_name_a_coarse_to_fine_search_and_keep_the_exact_names() -> None:
    exact, coarse, big = parse_dense("lite0:2048,2048/c256r256;lite2:12288/c512r128")
    assert exact.name == "lite0-b2048" and exact.search == (0, 0)  # cached builds keep their names
    assert coarse.name == "lite0-b2048-c256r256" and coarse.search == (256, 256)
    assert big.name == "lite2-b12288-c512r128" and big.parent == big and big.kind == "dense"
    with pytest.raises(SystemExit, match="SIZE/cCOARSErREFINED"):
        parse_dense("lite0:2048/256")


def test_a_compressed_spec_names_its_search_and_its_parent_searches_alike() -> None:
    (coarse,) = parse_compressed(["dev:lite2:12288/c256r256:params=0.2:25"], {})
    assert coarse.name == "lite2-b12288-c256r256-p0.2-h25-dev" and coarse.search == (256, 256)
    # judged against the dense model with the same search: the speed-up is the compression's own
    assert coarse.parent.name == "lite2-b12288-c256r256"
    with pytest.raises(SystemExit, match="SIZE/cCOARSErREFINED"):
        parse_compressed(["lite2:12288/c256:params=0.2:25"], {})
    (dense,) = parse_compressed(["lite0:512/c256r256"], {})  # an int8 copy of a dense model
    assert dense.kind == "dense" and dense.name == "lite0-b512-c256r256"
    assert replace(dense, int8=True).name == "lite0-b512-c256r256-int8"


@pytest.mark.parametrize("spec", ["lite0:1024:params=0.5", "dev:lite0:1024:p:1:memory_bank"])
def test_malformed_specs_are_refused(spec: str) -> None:
    with pytest.raises(SystemExit):
        parse_compressed([spec], {})


def test_front_keeps_only_rows_nothing_beats_on_both_axes() -> None:
    rows = [
        {"name": "fast", "p50_ms": 10.0, "auroc_mean": 0.80},
        {"name": "slow_accurate", "p50_ms": 20.0, "auroc_mean": 0.90},
        {"name": "dominated", "p50_ms": 21.0, "auroc_mean": 0.85},
    ]
    assert pareto_front(rows) == {"fast", "slow_accurate"}


def test_a_pass_is_quiet_only_when_nothing_else_used_the_cores() -> None:
    calm_start = {"start": [0.1, 0.5, 0.9], "end": [1.2, 0.9, 1.0]}  # the pass itself raises the end
    assert latency_is_quiet({"load_average": calm_start, "other_processes_cores": 0.0})
    busy = {"load_average": calm_start, "other_processes_cores": QUIET_LOAD_PER_CORE + 0.5}
    assert not latency_is_quiet(busy)
    loaded_start = {"start": [3.0, 3.0, 3.0], "end": [3.0, 3.0, 3.0]}
    assert not latency_is_quiet({"load_average": loaded_start, "other_processes_cores": 0.0})
    # A pass recorded before the CPU share was measured is judged by start and end load.
    assert not latency_is_quiet({"load_average": calm_start})
    assert not latency_is_quiet({})


def test_machine_busy_time_only_grows() -> None:
    first = machine_busy_s()
    sum(i * i for i in range(200_000))  # some CPU work of our own
    assert machine_busy_s() >= first > 0.0


def test_each_coarse_row_is_set_beside_its_exact_twin() -> None:
    def row(name: str, search: tuple[int, int], cast: float, wood: float, p50: float) -> dict:
        return {
            "name": name,
            "search": list(search),
            "bank": 2048,
            "complete": True,
            "p50_ms": p50,
            "auroc": {"cast": cast, "wood": wood},
            "auroc_mean": (cast + wood) / 2,
        }

    rows = [
        row("lite0-b2048", (0, 0), 0.80, 0.90, 14.0),
        row("lite0-b2048-c256r256", (256, 256), 0.81, 0.88, 10.0),
    ]
    latency = {
        "variants": {
            "lite0-b2048": {"times_ms": [14.0, 16.0]},
            "lite0-b2048-c256r256": {"times_ms": [10.0, 10.0]},
        }
    }
    (pair,) = search_pairs(rows, latency, patches=1024)
    assert (pair["exact"], pair["coarse"]) == ("lite0-b2048", "lite0-b2048-c256r256")
    assert pair["similarities"] == 1024 * 256 + 256 * 2048 and pair["exact_similarities"] == 1024 * 2048
    assert pair["speedup_per_round"] == 1.5 and pair["worst_category"] == "wood"
    assert abs(pair["worst_change"] + 0.02) < 1e-9 and abs(pair["auroc_change"] + 0.005) < 1e-9
