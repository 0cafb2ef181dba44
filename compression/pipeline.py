"""`edgeinspect compress`: inventory -> sensitivity -> ranks to a budget -> factorize -> heal -> export
(-> int8), with a report that says honestly which targets were reached."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from compression.activations import input_covariances
from compression.augment import paste_patches
from compression.bank import refit_memory_bank
from compression.budget import Budget, parse_budget, validate_fixed_ranks
from compression.config import CompressionSettings
from compression.errors import BudgetError
from compression.evaluation import Evaluator, auroc_metrics
from compression.factorize import apply_ranks, get_submodule
from compression.healing import HealingResult, heal
from compression.inventory import Inventory, build_inventory, count_params
from compression.layer_bench import LatencyCache, LayerTiming, Option, time_options
from compression.methods import MethodRule, parse_method_terms, rules_from_mapping
from compression.onnx_bench import measure_latency, onnx_outputs
from compression.prune import PrunedBlock, prune_hidden_channels
from compression.quantize import Int8Check, Int8Result, quantize_int8_measured
from compression.rank_selection import RankPlan, option_label, select_ranks
from compression.report import write_reports
from compression.sensitivity import (
    SensitivityPoint,
    probe_ranks,
    profile_sensitivity,
    sensitivity_as_dict,
)

if TYPE_CHECKING:
    from vision.config import ModelSettings

TARGET_PARAM_SHARE = 0.20
TARGET_MAX_AUROC_DROP = 0.005
TARGET_SPEEDUP = 2.0
TARGET_INT8_FILE_SHARE = 0.07
TARGET_INT8_MAX_AUROC_DROP = 0.01
INT8_TIMING_NOISE = 0.03  # separate (not interleaved) p50s of equal-speed models differ by about this


@dataclass
class CompressionResult:
    """Files written by `compress` and the headline numbers (all of them are in `report`)."""

    model_path: Path
    int8_path: Path | None
    report_path: Path
    markdown_path: Path
    plot_path: Path
    ranks: dict[str, int]
    threshold: float
    report: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class CompressedModel:
    """What `compress_model` produced in memory, before export."""

    model: nn.Module
    inventory: Inventory
    sensitivity: dict[str, list[SensitivityPoint]]
    plan: RankPlan
    methods: dict[str, str]
    healing: HealingResult
    timings: dict[str, LayerTiming] = field(default_factory=dict)
    pruned: list[PrunedBlock] = field(default_factory=list)
    parent: nn.Module | None = None  # what was factorized when pruning came first (None: the teacher)


def _example(model: nn.Module) -> torch.Tensor:
    size = model.config.image_size
    return torch.zeros((1, size, size, 3), dtype=torch.uint8)


MethodRules = Sequence[MethodRule | str] | Mapping[str, str] | None


def method_rules(settings: CompressionSettings, extra: MethodRules = None) -> list[MethodRule]:
    """Rules from the settings (YAML), then `extra` (CLI terms `pattern=method[:rank]`, parsed rules or
    a mapping), so the CLI wins where both match a layer."""
    if isinstance(extra, Mapping):
        more = rules_from_mapping(extra)
    else:
        more = [r if isinstance(r, MethodRule) else parse_method_terms([r])[0] for r in extra or []]
    return [*rules_from_mapping(settings.methods), *more]


def plan_inventory(model: nn.Module, settings: CompressionSettings, rules: Sequence[MethodRule]) -> Inventory:
    """The inventory with methods resolved; a rule that fits no layer raises MethodError here."""
    return build_inventory(
        model,
        _example(model),
        min_params=settings.min_layer_params,
        conv_method=settings.conv_method,
        linear_method=settings.linear_method,
        rules=rules,
    )


def rule_ranks(inventory: Inventory, fixed_ranks: Mapping[str, int] | None) -> dict[str, int]:
    """Ranks fixed by method rules (`tt:16`), overridden by explicit `--rank` terms."""
    ranks = {i.name: i.fixed_rank for i in inventory.compressible if i.fixed_rank is not None}
    return {**ranks, **dict(fixed_ranks or {})}


def time_layers(
    model: nn.Module,
    inventory: Inventory,
    wanted: Mapping[str, Sequence[Option]],
    settings: CompressionSettings,
    timings: dict[str, LayerTiming] | None = None,
    progress: bool = False,
) -> dict[str, LayerTiming]:
    """ORT p50 of each layer's options (dense always) at its real input shape, added to `timings`."""
    cache = LatencyCache(settings.latency_cache)
    timings = timings if timings is not None else {}
    layers = inventory.by_name()
    for name, options in tqdm(wanted.items(), desc="layer timing", disable=not progress, leave=False):
        measured = time_options(
            get_submodule(model, name),
            layers[name].input_shape,
            [("dense", 0), *options],
            settings.latency_threads,
            settings.layer_latency_runs,
            cache=cache,
        )
        timing = timings.setdefault(name, LayerTiming(measured[("dense", 0)]))
        for (method, rank), ms in measured.items():
            if method != "dense":
                timing.add(method, rank, ms)
    cache.save()
    return timings


def _auto_options(inventory: Inventory, settings: CompressionSettings) -> dict[str, list[Option]]:
    """Auto layers: every candidate method at the ranks its sensitivity was probed at."""
    return {
        info.name: [
            (method, rank)
            for method in info.candidates
            for rank in probe_ranks(
                info.full_rank_of(method), settings.sensitivity_fractions, settings.rank_multiple
            )
        ]
        for info in inventory.compressible
        if info.auto
    }


def factorize_to_budget(
    model: nn.Module,
    holdout_images: np.ndarray,
    budget: str,
    fixed_ranks: Mapping[str, int] | None = None,
    settings: CompressionSettings | None = None,
    labelled: Evaluator | None = None,
    baseline_latency_ms: float | None = None,
    progress: bool = True,
    methods: MethodRules = None,
) -> CompressedModel:
    """Inventory, sensitivity (per candidate method), layer timings for auto layers, methods and ranks
    to `budget`, factorized copy (not yet healed); `model` is untouched."""
    settings = settings or CompressionSettings()
    parsed = parse_budget(budget)
    model = model.eval()
    inventory = plan_inventory(model, settings, method_rules(settings, methods))
    fixed = rule_ranks(inventory, fixed_ranks)
    # fixed ranks are checked now, before the slow sensitivity sweep
    validate_fixed_ranks(fixed, {info.name: info.full_rank for info in inventory.compressible})
    covariances = (
        input_covariances(
            model,
            [info.name for info in inventory.compressible if "svd" in info.candidates],
            holdout_images[: settings.covariance_images],
            progress=progress,
        )
        if settings.data_aware
        else {}
    )
    probe = Evaluator.build(model, holdout_images[: settings.sensitivity_images])
    sensitivity = profile_sensitivity(
        model,
        inventory,
        probe,
        settings.sensitivity_fractions,
        settings.rank_multiple,
        progress,
        covariances=covariances,
    )
    timings = time_layers(model, inventory, _auto_options(inventory, settings), settings, progress=progress)
    judge = _judge(model, holdout_images, labelled)
    plan = select_ranks(
        model,
        inventory,
        sensitivity,
        parsed,
        fixed_ranks=fixed,
        energy=settings.energy_start,
        rank_multiple=settings.rank_multiple,
        step=settings.greedy_step,
        min_rank_fraction=settings.min_rank_fraction,
        baseline_latency_ms=baseline_latency_ms,
        measure_drop=lambda ranks, chosen: judge.drop(
            apply_ranks(model, ranks, chosen, covariances=covariances)
        ),
        timings=timings,
    )
    student = apply_ranks(model, plan.ranks, plan.methods, covariances=covariances).eval()
    return CompressedModel(
        student, inventory, sensitivity, plan, dict(plan.methods), HealingResult(), timings
    )


def _judge(model: nn.Module, holdout_images: np.ndarray, labelled: Evaluator | None) -> Evaluator:
    """AUROC on labelled held-out images when there are any, else fidelity on held-back good images."""
    if labelled is not None and labelled.has_labels:
        return labelled
    return Evaluator.build(model, holdout_images)


def heal_compressed(
    compressed: CompressedModel,
    teacher: nn.Module,
    fit_images: np.ndarray,
    holdout_images: np.ndarray,
    heal_steps: int,
    settings: CompressionSettings | None = None,
    labelled: Evaluator | None = None,
    progress: bool = True,
) -> CompressedModel:
    """Distil `teacher` into a copy of the factorized model, refit its bank, freeze it.

    Healing is kept only if it helps: the healed and the unhealed student (both with refitted banks) are
    scored by AUROC on held-back good images with pasted patches (no labels needed), and the better
    one is returned. `labelled` only feeds the metric tracked while healing."""
    settings = settings or CompressionSettings()
    if isinstance(heal_steps, bool) or not isinstance(heal_steps, int) or heal_steps < 0:
        raise ValueError(f"heal_steps must be a non-negative integer, got {heal_steps!r}")
    rng = np.random.default_rng(settings.seed)
    student = copy.deepcopy(compressed.model)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    judge = _judge(teacher, holdout_images, labelled)

    def track(candidate: nn.Module) -> dict[str, float]:
        scores = judge.evaluate(candidate)
        return {k: v for k, v in scores.items() if k in ("image_auroc", "fidelity")}

    heal_images = fit_images
    if settings.heal_augment and len(fit_images):
        heal_images = np.concatenate([fit_images, paste_patches(fit_images, rng)[0]])
    healing = heal(
        student,
        teacher,
        heal_images,
        holdout_images,
        heal_steps,
        lr=settings.heal_lr,
        batch_size=settings.heal_batch_size,
        eval_every=settings.heal_eval_every,
        patience=settings.heal_patience,
        map_weight=settings.heal_map_weight,
        seed=settings.seed,
        track=track,
        progress=progress,
    )
    candidates = {"healed": student}
    if healing.steps_run and settings.refit_bank:
        candidates["unhealed"] = copy.deepcopy(compressed.model)
    if settings.refit_bank:
        for model in candidates.values():
            refit_memory_bank(model, fit_images, seed=settings.seed, progress=progress)
    if len(candidates) > 1:
        pasted, masks = paste_patches(holdout_images, rng)
        probe = Evaluator.build(
            teacher,
            np.concatenate([holdout_images, pasted]),
            np.repeat([0, 1], len(holdout_images)),
            np.concatenate([np.zeros_like(masks), masks]),
        )
        checks = {name: probe.evaluate(model)["image_auroc"] for name, model in candidates.items()}
        healing.kept = checks["healed"] >= checks["unhealed"]
        healing.check = {f"{name}_pasted_auroc": value for name, value in checks.items()}
        student = candidates["healed" if healing.kept else "unhealed"]
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    return dataclasses.replace(compressed, model=student.eval(), healing=healing)


def compress_model(
    model: nn.Module,
    fit_images: np.ndarray,
    holdout_images: np.ndarray,
    budget: str,
    heal_steps: int,
    fixed_ranks: Mapping[str, int] | None = None,
    settings: CompressionSettings | None = None,
    labelled: Evaluator | None = None,
    baseline_latency_ms: float | None = None,
    progress: bool = True,
    methods: MethodRules = None,
) -> CompressedModel:
    """Prune hidden channels (a `channels` term), factorize to the rest of `budget`, then heal; `model`
    itself is left untouched (it is the teacher)."""
    settings = settings or CompressionSettings()
    if isinstance(heal_steps, bool) or not isinstance(heal_steps, int) or heal_steps < 0:
        raise ValueError(f"heal_steps must be a non-negative integer, got {heal_steps!r}")
    parsed = _parse_with_ranks(budget, fixed_ranks)
    parent, pruned = model, []
    if parsed.channels is not None:
        parent = copy.deepcopy(model).eval()
        pruned = prune_hidden_channels(parent, parsed.channels, fit_images)
    if parsed.factorizes:
        rest = dataclasses.replace(parsed, channels=None).describe()
        factorized = factorize_to_budget(
            parent,
            holdout_images,
            rest,
            fixed_ranks,
            settings,
            labelled,
            baseline_latency_ms,
            progress,
            methods,
        )
    else:
        factorized = _unfactorized(parent, settings, methods)
    if pruned:
        factorized = dataclasses.replace(factorized, pruned=pruned, parent=parent)
    return heal_compressed(
        factorized, model, fit_images, holdout_images, heal_steps, settings, labelled, progress
    )


def _parse_with_ranks(budget: str, fixed_ranks: Mapping[str, int] | None) -> Budget:
    """The parsed budget; fixed ranks with a budget that factorizes nothing are refused."""
    parsed = parse_budget(budget)
    if fixed_ranks and not parsed.factorizes:
        raise BudgetError(f"fixed ranks need a factorizing budget term; {budget!r} only prunes channels")
    return parsed


def _unfactorized(model: nn.Module, settings: CompressionSettings, methods: MethodRules) -> CompressedModel:
    """`model` as it is (a budget that only prunes): its inventory and a plan that factorizes nothing."""
    inventory = plan_inventory(model, settings, method_rules(settings, methods))
    plan = RankPlan(
        ranks={},
        params=count_params(model),
        macs=inventory.total_macs,
        latency_ms=inventory.total_latency_ms,
        predicted_error=0.0,
        notes=["no factorizing budget term: hidden channels pruned only"],
    )
    return CompressedModel(model, inventory, {}, plan, {}, HealingResult())


def compress_for_deploy(
    model: nn.Module,
    good_images: Sequence[np.ndarray] | np.ndarray,
    budget: str = "params=0.2",
    heal_steps: int = 200,
    progress: bool = True,
    methods: Mapping[str, str] | None = None,
) -> nn.Module:
    """First-run auto-build: compress an in-memory model with good images only (no labels).

    Rank choices are judged by anomaly-map fidelity to `model` on held-back good images; `methods` are
    per-layer rules as in `model.compression_methods`. The caller calibrates the threshold of the
    returned model with its usual procedure, as for the dense model."""
    from vision.train import prepare_images, split_holdout

    settings = CompressionSettings(methods=dict(methods or {}))
    prepared = prepare_images(list(good_images), model.config.image_size)
    fit_idx, hold_idx = split_holdout(len(prepared), settings.holdout_fraction, settings.seed)
    result = compress_model(
        model, prepared[fit_idx], prepared[hold_idx], budget, heal_steps, settings=settings, progress=progress
    )
    return result.model


def check_deploy_methods(methods: Mapping[str, str] | None, model_settings: ModelSettings) -> None:
    """Fail fast on `model.compression_methods` before the auto-build trains anything: the rules are
    resolved against an untrained model of the configured architecture (same layer names)."""
    if not methods:
        return
    from vision.models import AnomalyModel
    from vision.train import model_config

    settings = CompressionSettings(methods=dict(methods))
    if model_settings.head == "auto":  # not decided before the images are seen: the bank has every layer
        model_settings = model_settings.model_copy(update={"head": "bank"})
    skeleton = AnomalyModel(model_config(model_settings), pretrained=False)
    plan_inventory(skeleton, settings, method_rules(settings))


@dataclass
class LoadedData:
    fit: np.ndarray
    holdout: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    selection: np.ndarray  # indices into test used for rank/drop decisions
    evaluation: np.ndarray  # disjoint indices the report's metrics come from


def load_data(
    data_root: Path, category: str, size: int, settings: CompressionSettings, progress: bool
) -> LoadedData:
    """Same split as training (held-back good images calibrate); the test set is halved, stratified, so
    rank decisions never see the images the reported AUROC comes from."""
    from vision.data.mvtec import MvtecCategory, load_image, load_mask
    from vision.train import split_holdout

    dataset = MvtecCategory.load(data_root, category)
    good = np.stack(
        [load_image(p, size) for p in tqdm(dataset.train_good, desc="train images", disable=not progress)]
    )
    fit_idx, hold_idx = split_holdout(len(good), settings.holdout_fraction, settings.seed)
    test = np.stack([load_image(s.path, size) for s in tqdm(dataset.test, desc="test", disable=not progress)])
    labels = np.array([s.label for s in dataset.test])
    masks = np.stack([load_mask(s.mask_path, size) for s in dataset.test])
    rng = np.random.default_rng(settings.seed)
    selection: list[int] = []
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        selection.extend(members[: len(members) // 2].tolist())
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[selection] = True
    return LoadedData(
        good[fit_idx], good[hold_idx], test, labels, masks, np.flatnonzero(chosen), np.flatnonzero(~chosen)
    )


def _metadata(payload: dict[str, Any], threshold: float, summary: str) -> dict[str, str]:
    from vision.export import META_MODEL_NAME, META_MODEL_VERSION, META_THRESHOLD

    metadata = dict(payload.get("extra", {}).get("metadata", {}))
    parent_version = metadata.get(META_MODEL_VERSION, "unknown")
    metadata[META_THRESHOLD] = repr(float(threshold))
    metadata[META_MODEL_NAME] = metadata.get(META_MODEL_NAME, "patchcore") + "-tn"
    metadata[META_MODEL_VERSION] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    metadata["edgeinspect.parent_model_version"] = parent_version
    metadata["edgeinspect.compression"] = summary
    metadata.setdefault("edgeinspect.train_data_sha256", "unknown")
    return metadata


def measure_variant(
    name: str,
    path: Path,
    params: int,
    macs: int,
    data: LoadedData,
    settings: CompressionSettings,
    indices: np.ndarray,
) -> dict[str, Any]:
    """Numbers of one exported file, measured through ONNX Runtime as deployed."""
    maps, scores = onnx_outputs(path, data.test[indices], threads=settings.latency_threads)
    timing = measure_latency(
        path, data.test[indices[0]], settings.latency_threads, settings.latency_warmup, settings.latency_runs
    )
    return {
        "name": name,
        "path": str(path),
        "params": params,
        "macs": macs,
        "file_bytes": path.stat().st_size,
        **timing,
        **auroc_metrics(scores, maps, data.labels[indices], data.masks[indices]),
    }


def _targets(variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    base, tn = variants["baseline"], variants["tensorized+healed"]
    share = tn["params"] / base["params"]
    drop = base.get("image_auroc", 0.0) - tn.get("image_auroc", 0.0)
    speedup = base["p50_ms"] / tn["p50_ms"]
    targets = {
        "params_share<=0.20": {"met": share <= TARGET_PARAM_SHARE, "detail": f"{share:.3f}"},
        "image_auroc_drop<=0.005": {"met": drop <= TARGET_MAX_AUROC_DROP, "detail": f"{drop:+.4f}"},
        "ort_speedup>=2x": {"met": speedup >= TARGET_SPEEDUP, "detail": f"{speedup:.2f}x"},
    }
    if "tensorized+healed+int8" in variants:
        int8 = variants["tensorized+healed+int8"]
        file_share = int8["file_bytes"] / base["file_bytes"]
        targets["int8_file<=7%"] = {
            "met": file_share <= TARGET_INT8_FILE_SHARE,
            "detail": f"{file_share:.3f}",
        }
        int8_drop = tn.get("image_auroc", 0.0) - int8.get("image_auroc", 0.0)
        targets["int8_auroc_drop<=0.01"] = {
            "met": int8_drop <= TARGET_INT8_MAX_AUROC_DROP,
            "detail": f"{int8_drop:+.4f} vs fp32 compressed",
        }
        targets["int8_not_slower"] = {
            "met": int8["p50_ms"] <= (1.0 + INT8_TIMING_NOISE) * tn["p50_ms"],
            "detail": f"{int8['p50_ms']:.1f} vs {tn['p50_ms']:.1f} ms (+{INT8_TIMING_NOISE:.0%} is noise)",
        }
    return targets


def check_request(
    teacher: nn.Module,
    settings: CompressionSettings,
    methods: MethodRules,
    fixed_ranks: Mapping[str, int] | None,
) -> None:
    """Method rules and fixed ranks against the model's layers, before data loading and slow work."""
    inventory = plan_inventory(teacher, settings, method_rules(settings, methods))
    validate_fixed_ranks(
        rule_ranks(inventory, fixed_ranks), {i.name: i.full_rank for i in inventory.compressible}
    )


def _int8_check(path: Path, data: LoadedData, settings: CompressionSettings) -> Int8Check:
    """int8 decisions: p50 on one test frame, image AUROC on the selection half of the test set (the
    images rank decisions use, never the ones the report's figures come from)."""
    images, labels = data.test[data.selection], data.labels[data.selection]
    reference = onnx_outputs(path, images, threads=settings.latency_threads)[1]

    def metric(candidate: Path) -> float:
        maps, scores = onnx_outputs(candidate, images, threads=settings.latency_threads)
        found = auroc_metrics(scores, maps, labels, None)
        if "image_auroc" in found:
            return found["image_auroc"]
        return _rank_correlation(scores, reference)

    return Int8Check(
        data.test[data.selection[0]],
        metric,
        threads=settings.latency_threads,
        runs=settings.int8_latency_runs,
        min_speedup=settings.int8_min_speedup,
        max_drop=settings.int8_max_auroc_drop,
    )


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation (no ties expected in float scores)."""
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1]) if len(a) > 1 else 1.0


def _factorized(result: CompressedModel) -> dict[str, int]:
    layers = result.inventory.by_name()
    return {
        name: rank
        for name, rank in result.plan.ranks.items()
        if rank < layers[name].full_rank_of(result.plan.methods.get(name, layers[name].method or ""))
    }


def _layer_entries(result: CompressedModel, timings: Mapping[str, LayerTiming]) -> list[dict[str, Any]]:
    """Per layer: method chosen, rank / bond dimension, measured timings of the candidates, the
    sensitivity probes (per method) and why."""
    factorized = _factorized(result)
    profile = sensitivity_as_dict(result.sensitivity)
    entries = []
    for info in result.inventory.layers:
        entry = info.as_dict()
        method = result.plan.methods.get(info.name, info.method)
        rank = result.plan.ranks.get(info.name)
        entry["method"] = method if info.name in factorized else ("dense" if info.compressible else None)
        entry["full_rank"] = info.full_rank_of(method) if method and info.compressible else info.full_rank
        entry["rank"] = rank
        chosen = info.name in factorized and method is not None and rank is not None
        entry["choice"] = option_label(method, rank) if chosen and method and rank else "dense"
        entry["sensitivity"] = profile.get(info.name, [])
        entry["latency"] = timings[info.name].as_dict() if info.name in timings else None
        entry["why"] = result.plan.reasons.get(info.name, info.reason)
        entries.append(entry)
    return entries


def _measure_variants(
    teacher: nn.Module,
    result: Any,
    baseline_path: Path,
    model_path: Path,
    int8_path: Path | None,
    data: Any,
    settings: CompressionSettings,
) -> dict[str, dict[str, Any]]:
    """Accuracy, latency and size of the dense parent, the compressed model and its int8 file."""
    student = result.model
    student_inventory = build_inventory(student, _example(student), timing_runs=1)
    # The inventory is of what was factorized: the pruned copy when pruning came first.
    teacher_macs = (
        build_inventory(teacher, _example(teacher), timing_runs=1).total_macs
        if result.parent is not None
        else result.inventory.total_macs
    )
    files = {"baseline": (baseline_path, teacher, teacher_macs)}
    files["tensorized+healed"] = (model_path, student, student_inventory.total_macs)
    if int8_path is not None:
        files["tensorized+healed+int8"] = (int8_path, student, student_inventory.total_macs)
    return {
        name: measure_variant(name, path, count_params(model), macs, data, settings, data.evaluation)
        for name, (path, model, macs) in files.items()
    }


def _report(
    payload: dict[str, Any],
    request: tuple[Path, str, str, dict[str, int] | None, MethodRules],
    thresholds: tuple[float, float],
    result: Any,
    variants: dict[str, dict[str, Any]],
    int8_result: Int8Result | None,
    timings: Any,
    settings: CompressionSettings,
) -> dict[str, Any]:
    """report.json's content: what was asked, what was done to each layer, and what each file measured."""
    model_checkpoint, category, budget, fixed_ranks, methods = request
    threshold, baseline_threshold = thresholds
    return {
        "model_name": payload.get("extra", {}).get("metadata", {}).get("edgeinspect.model_name", "model"),
        "checkpoint": str(model_checkpoint),
        "category": category,
        "budget": budget,
        "fixed_ranks": dict(fixed_ranks or {}),
        "method_rules": [rule.text for rule in method_rules(settings, methods)],
        "threshold": threshold,
        "baseline_threshold": baseline_threshold,
        "plan": result.plan.as_dict(),
        "pruned": [dataclasses.asdict(block) for block in result.pruned],
        "healing": {
            "kept": result.healing.kept,
            "check": result.healing.check,
            "steps_run": result.healing.steps_run,
            "best_step": result.healing.best_step,
            "stopped_early": result.healing.stopped_early,
            "history": result.healing.history,
        },
        "variants": list(variants.values()),
        "targets": _targets(variants),
        "int8": int8_result.as_dict() if int8_result is not None else None,
        "layers": _layer_entries(result, timings),
        "settings": settings.model_dump(),
        "notes": [
            "Rank decisions (sensitivity, drop checks, healing metric, int8 groups) use half of the test "
            "set; the variant metrics come from the other half, stratified by label.",
            "Sensitivity is the relative anomaly-map error on held-back good images when only that layer "
            "is factorized (per candidate method for auto layers).",
            f"Latencies: ORT CPU, batch 1, {settings.latency_threads} threads, p50 over "
            f"{settings.latency_runs} runs after {settings.latency_warmup} warm-up runs. Layer timings: "
            f"each layer alone at its real input shape, options interleaved, p50 of "
            f"{settings.layer_latency_runs} runs.",
        ],
    }


def compress(
    model_checkpoint: Path,
    data_root: Path,
    category: str,
    budget: str,
    heal_steps: int,
    int8: bool,
    out_dir: Path,
    fixed_ranks: dict[str, int] | None = None,
    progress: bool = True,
    settings: CompressionSettings | None = None,
    methods: MethodRules = None,
) -> CompressionResult:
    """Compress a trained checkpoint to `budget`; write model.onnx (+ model.int8.onnx), report.json,
    report.md and tradeoff.png to `out_dir`. Bad budgets, ranks and method rules fail before any slow
    work. `methods` are per-layer rules (CLI `--method`), applied after `settings.methods`."""
    from vision.calibration import threshold_from_good_scores
    from vision.export import export_onnx
    from vision.models import load_checkpoint, read_checkpoint
    from vision.train import score_images

    settings = settings or CompressionSettings()
    _parse_with_ranks(budget, fixed_ranks)
    out_dir = Path(out_dir)
    payload = read_checkpoint(model_checkpoint)
    teacher = load_checkpoint(model_checkpoint)
    check_request(teacher, settings, methods, fixed_ranks)
    size = teacher.config.image_size
    data = load_data(Path(data_root), category, size, settings, progress)
    torch.manual_seed(settings.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    int8_result: Int8Result | None = None
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        baseline_threshold = float(payload.get("extra", {}).get("threshold", 0.0))
        baseline_path = export_onnx(
            teacher, Path(tmp) / "baseline.onnx", _metadata(payload, baseline_threshold, "none"), size
        )
        baseline_ms = measure_latency(
            baseline_path, data.test[0], settings.latency_threads, 2, 10, peak_memory=False
        )["p50_ms"]
        labelled = Evaluator.build(
            teacher, data.test[data.selection], data.labels[data.selection], data.masks[data.selection]
        )
        result = compress_model(
            teacher,
            data.fit,
            data.holdout,
            budget,
            heal_steps,
            fixed_ranks=fixed_ranks,
            settings=settings,
            labelled=labelled,
            baseline_latency_ms=baseline_ms,
            progress=progress,
            methods=methods,
        )
        student = result.model
        threshold = threshold_from_good_scores(
            score_images(student, data.holdout), settings.target_false_reject_rate
        )
        factorized = _factorized(result)
        timings = time_layers(
            result.parent if result.parent is not None else teacher,
            result.inventory,
            {n: [(result.plan.methods[n], r)] for n, r in factorized.items()},
            settings,
            dict(result.timings),
        )
        summary = (
            f"budget {budget}; {len(result.pruned)} blocks pruned, {len(factorized)} layers factorized "
            f"({', '.join(sorted({result.plan.methods[n] for n in factorized})) or 'none'}); "
            f"heal steps {result.healing.steps_run}"
        )
        model_path = export_onnx(
            student, out_dir / "model.onnx", _metadata(payload, threshold, summary), size
        )
        int8_path = None
        if int8:
            int8_result = quantize_int8_measured(
                model_path,
                out_dir / "model.int8.onnx",
                data.fit[: settings.calibration_images],
                check=_int8_check(model_path, data, settings),
            )
            int8_path = int8_result.path
        variants = _measure_variants(teacher, result, baseline_path, model_path, int8_path, data, settings)
    variants["baseline"].pop("path")  # it lived in the temporary folder
    report = _report(
        payload,
        (model_checkpoint, category, budget, fixed_ranks, methods),
        (threshold, baseline_threshold),
        result,
        variants,
        int8_result,
        timings,
        settings,
    )
    paths = write_reports(report, out_dir)
    return CompressionResult(
        model_path=model_path,
        int8_path=int8_path,
        report_path=paths["json"],
        markdown_path=paths["markdown"],
        plot_path=paths["plot"],
        ranks=factorized,
        threshold=threshold,
        report=report,
    )
