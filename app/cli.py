"""`edgeinspect`: the one command line for the box and the workstation.

    edgeinspect run --config configs/default.yaml [--max-frames N] [--mqtt-url mqtt://host:port]
    edgeinspect dataset make --out data/datasets/synthetic [--suite default|hard] [--categories pcb tile]
    edgeinspect dataset import elpv [--out DIR] [--source DIR] [--train-share 0.6] [--seed 0] [--overwrite]
    edgeinspect dataset import mtd --source CHECKOUT [--out DIR] [--train-count 300] [--seed 0] [--overwrite]
    edgeinspect dataset import ksdd --source CHECKOUT [--out DIR] [--train-count 100] [--seed 0] [--overwrite]
    edgeinspect train --data DIR --category NAME [--out FILE.onnx]
    edgeinspect template --out DIR [--backbone B] [--image-size N] [--head auto|bank|gaussian]
    edgeinspect build --template DIR --data DIR --category NAME [--out FILE.onnx] [--threads 1]
    edgeinspect eval --data DIR --category NAME --model FILE.onnx --out DIR
    edgeinspect compress --model FILE.pt --data DIR --category NAME --budget params=0.2 --int8 --out DIR
    edgeinspect verify --model FILE.onnx [--model FILE2.onnx --ensemble any|mean] [--group G] [--config F]
    edgeinspect cameras list [--json]
    edgeinspect release keygen | publish --model FILE --key KEY --base-url URL --canary st1 | serve --dir DIR

Heavy imports (torch, onnxruntime, uvicorn) happen inside each command so `--help` stays instant and the
edge box never needs the training extra unless it builds a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from app.cameras_cli import add_camera_commands
from app.release_cli import add_release_commands
from app.settings import ConfigError, load_settings
from device.station.data_dir_lock import DataDirLockedError

log = logging.getLogger("edgeinspect")
# What only the `train` extra installs: a command that needs one on a station gets a clear refusal.
TRAINING_PACKAGES = frozenset(
    {"torch", "torchvision", "tensorly", "timm", "onnx", "onnxscript", "scipy", "skimage"}
)


INT8_HELP = (
    "quantize the backbone to int8 (the head's matrices stored int8), threshold recalibrated "
    "(real parts: 1.15-1.45x faster by host, 0.1-0.9 points on the worst set, a fifth of the file)"
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from app.serve import run_line

    overrides: dict[str, Any] = {}
    if args.mqtt_url:
        overrides.setdefault("mqtt", {})["url"] = args.mqtt_url
    if args.port is not None:
        overrides.setdefault("api", {})["port"] = args.port
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = load_settings(args.config, overrides)
    return run_line(settings, max_frames=args.max_frames)


def _cmd_dataset_make(args: argparse.Namespace) -> int:
    from vision.data.synthetic import write_dataset

    out = write_dataset(
        args.out,
        categories=args.categories,
        seed=args.seed,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect_per_type=args.n_test_defect,
        image_size=args.image_size,
        suite=args.suite,
    )
    print(f"dataset written to {out}")
    return 0


def _cmd_dataset_import(args: argparse.Namespace) -> int:
    if args.name in CHECKOUT_IMPORTS:
        return _import_checkout(args)
    from vision.data.elpv import FOLDERS, find_elpv_source, import_elpv

    source = Path(args.source) if args.source else find_elpv_source()
    summary = import_elpv(
        source,
        Path(args.out),
        train_share=args.train_share,
        seed=args.seed,
        progress=True,
        overwrite=args.overwrite,
    )
    print(f"ELPV written to {summary.out} (seed {summary.seed}, train share {summary.train_share}):")
    width = max(len(name) for name in summary.counts)
    print(f"  {'category':<{width}}  " + "  ".join(FOLDERS))
    for category, counts in summary.counts.items():
        print(f"  {category:<{width}}  " + "  ".join(f"{counts[f]:>{len(f)}}" for f in FOLDERS))
    print(f"  {summary.total} cells; CC BY-NC-SA 4.0: benchmark and development use only, never ship them")
    return 0


# Sets imported from a git checkout: name -> (title, default good images to train on, licence line).
CHECKOUT_IMPORTS = {
    "mtd": ("MTD", 300, "research use with citation only (MTD_LICENSE.txt), never ship them"),
    "ksdd": ("KolektorSDD", 100, "CC BY-NC-SA 4.0 (KSDD_LICENSE.txt): benchmark and development use only"),
}


def _import_checkout(args: argparse.Namespace) -> int:
    from vision.data.ksdd import import_ksdd
    from vision.data.mtd import import_mtd

    title, default_train, licence = CHECKOUT_IMPORTS[args.name]
    if not args.source:
        raise SystemExit(f"edgeinspect dataset import {args.name}: --source (the git checkout) is required")
    importer = import_mtd if args.name == "mtd" else import_ksdd
    summary = importer(
        Path(args.source),
        Path(args.out),
        train_count=args.train_count if args.train_count is not None else default_train,
        seed=args.seed,
        progress=True,
        overwrite=args.overwrite,
    )
    print(f"{title} written to {summary.out} (seed {summary.seed}):")
    for category, counts in summary.counts.items():
        print(f"  {category}: " + ", ".join(f"{folder} {n}" for folder, n in counts.items()))
    print(f"  {summary.total} images; {licence}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from vision.config import ModelSettings
    from vision.train import train_model

    chosen = {"backbone": args.backbone, "image_size": args.image_size}
    if args.head:
        chosen["head"] = args.head
    if args.memory_bank_size:
        chosen["memory_bank_size"] = args.memory_bank_size
    if args.neighbourhood:
        chosen["neighbourhood"] = args.neighbourhood
    if args.int8:
        chosen["int8"] = True
    settings = ModelSettings(**chosen)
    out = Path(args.out or f"data/models/{args.category}.onnx")
    path = train_model(Path(args.data), args.category, out, settings, progress=True)
    print(f"model written to {path} (PyTorch checkpoint: {path.with_suffix('.pt')})")
    return 0


def _cmd_template(args: argparse.Namespace) -> int:
    from vision.build_template import export_build_template
    from vision.config import ModelSettings

    settings = ModelSettings(
        backbone=args.backbone, image_size=args.image_size, head=args.head, int8=args.int8
    )
    paths = export_build_template(settings, Path(args.out))
    print(
        f"build template written to {Path(args.out)} ({', '.join(p.name for p in paths)}): copy the folder "
        "to a station's <data_dir>/models/build-template to build there"
    )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from vision.build_inputs import load_good_images
    from vision.station_build import build_on_station, load_kit

    kit = load_kit(Path(args.template))
    settings = next(iter(kit.values())).settings
    images, _, data_sha256 = load_good_images(Path(args.data), args.category, settings.image_size)
    out = Path(args.out or f"data/models/{args.category}.onnx")
    built = build_on_station(
        kit,
        images,
        out,
        product=args.category,
        train_data_sha256=data_sha256,
        threads=args.threads,
    )
    print(
        f"model written to {built.path} in {built.seconds:.1f} s: fitted on {built.fit_images} good images, "
        f"threshold {built.threshold:.4g} calibrated on {built.held_back_images} held back"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from vision.evaluate import evaluate

    metrics = evaluate(
        Path(args.data),
        args.category,
        Path(args.model),
        Path(args.out),
        heatmaps=args.heatmaps,
        worst=args.worst,
    )
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import os
    import socket

    from device.plant.verifier import run_verifier
    from vision.inspector import ModelFileError

    overrides: dict[str, Any] = {}
    if args.mqtt_url:
        overrides.setdefault("mqtt", {})["url"] = args.mqtt_url
    settings = load_settings(args.config, overrides)
    missing = [path for path in args.model if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"--model: file not found: {', '.join(missing)}")
    try:
        return run_verifier(
            settings.mqtt,
            args.group or settings.escalation.group,
            args.model,
            args.id or f"{socket.gethostname()}-{os.getpid()}",
            threads=args.threads,
            max_request_bytes=settings.escalation.max_request_bytes,
            ensemble_rule=args.ensemble,
        )
    except ModelFileError as exc:
        raise ValueError(f"--model: {exc}") from exc


def _parse_ranks(items: list[str]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--rank must look like layer.name=16, got {item!r}")
        ranks[name] = int(value)
    return ranks


def _cmd_compress(args: argparse.Namespace) -> int:
    from compression.methods import parse_method_terms
    from compression.pipeline import compress

    result = compress(
        Path(args.model),
        Path(args.data),
        args.category,
        budget=args.budget,
        heal_steps=args.heal_steps,
        int8=args.int8,
        out_dir=Path(args.out),
        fixed_ranks=_parse_ranks(args.rank) or None,
        progress=True,
        methods=parse_method_terms(args.method),
    )
    print(result)
    return 0


def _print_version(verbose: bool) -> int:
    from device.environment import environment_record

    record = environment_record()
    print("\n".join(record.lines()) if verbose else f"edgeinspect {record.edgeinspect}")
    return 0


def _add_model_shape(parser: argparse.ArgumentParser) -> None:
    """The backbone and input size, for the commands that make a model (train, template)."""
    parser.add_argument(
        "--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "efficientnet_lite2"]
    )
    parser.add_argument("--image-size", type=int, default=256)


def _add_run_command(sub: Any) -> None:
    """`run`: the line itself."""
    run = sub.add_parser("run", help="run the line: camera -> model -> MQTT alerts, API and panel")
    run.add_argument("--config", default="configs/default.yaml")
    run.add_argument("--max-frames", type=int, default=None, help="stop after judging N frames")
    run.add_argument("--mqtt-url", default=None, help="override mqtt.url, e.g. mqtt://127.0.0.1:1883")
    run.add_argument("--port", type=int, default=None, help="override api.port")
    run.add_argument("--data-dir", default=None, help="override data_dir")
    run.set_defaults(func=_cmd_run)


def _add_dataset_command(sub: Any) -> None:
    """`dataset make` (synthetic) and `dataset import` (real sets, benchmark use)."""
    dataset = sub.add_parser("dataset", help="datasets").add_subparsers(dest="dataset_command", required=True)
    make = dataset.add_parser("make", help="write the synthetic line dataset in the MVTec AD layout")
    make.add_argument("--out", default="data/datasets/synthetic")
    make.add_argument(
        "--suite",
        choices=["default", "hard"],
        default="default",
        help="default: the legacy line categories; hard: the dev/holdout development benchmark",
    )
    make.add_argument("--categories", nargs="*", default=None)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--n-train", type=int, default=None, help="default 150 (hard suite: 100)")
    make.add_argument("--n-test-good", type=int, default=None, help="default 40 (hard suite: 30)")
    make.add_argument("--n-test-defect", type=int, default=None, help="test images per defect type (10)")
    make.add_argument("--image-size", type=int, default=256)
    make.set_defaults(func=_cmd_dataset_make)
    imp = dataset.add_parser(
        "import", help="convert a real dataset into the MVTec AD layout (benchmark and development use only)"
    )
    imp.add_argument(
        "name",
        choices=["elpv", *CHECKOUT_IMPORTS],
        help="elpv: ELPV solar cells (pip install elpv-dataset); mtd: Magnetic Tile Defect, "
        "ksdd: KolektorSDD commutators (git checkouts)",
    )
    imp.add_argument("--out", default="data/datasets/real")
    imp.add_argument(
        "--source",
        default=None,
        help="elpv: folder with labels.csv (default: the installed package); "
        "mtd, ksdd: the checkout (required)",
    )
    imp.add_argument(
        "--train-share", type=float, default=0.6, help="elpv: share of the good cells to train on"
    )
    imp.add_argument(
        "--train-count", type=int, default=None, help="mtd, ksdd: good images to train on (300, 100)"
    )
    imp.add_argument("--seed", type=int, default=0, help="seeds the split of the images")
    imp.add_argument("--overwrite", action="store_true", help="replace categories already imported")
    imp.set_defaults(func=_cmd_dataset_import)


def _add_train_command(sub: Any) -> None:
    """`train`: the plant's build of a model from good images."""
    train = sub.add_parser("train", help="train a defect model from good images and export ONNX")
    train.add_argument("--data", required=True, help="dataset root in the MVTec AD layout")
    train.add_argument("--category", required=True)
    train.add_argument("--out", default=None, help="ONNX path (default data/models/<category>.onnx)")
    _add_model_shape(train)
    train.add_argument("--memory-bank-size", type=int, default=None)
    train.add_argument(
        "--head",
        choices=["auto", "bank", "gaussian"],
        default=None,
        help="auto (default): decided from how aligned the good images are; gaussian: good patches at the "
        "same position (parts in a fixture; leads on every real set measured); bank: nearest good patch "
        "anywhere (textures, parts that move)",
    )
    train.add_argument("--neighbourhood", type=int, default=None, help="patches averaged around each (odd)")
    train.add_argument("--int8", action="store_true", help=INT8_HELP)
    train.set_defaults(func=_cmd_train)


def _add_template_command(sub: Any) -> None:
    """`template`: what a station needs to build without torch."""
    template = sub.add_parser(
        "template", help="export a build template: what a station needs to build models without torch"
    )
    template.add_argument("--out", required=True, help="folder, e.g. data/models/build-template")
    _add_model_shape(template)
    template.add_argument(
        "--head",
        choices=["auto", "bank", "gaussian"],
        default="auto",
        help="auto (default): both heads, the station picks by how aligned the captured parts are; or one",
    )
    template.add_argument(
        "--int8", action="store_true", help=INT8_HELP + "; the station quantizes what it builds"
    )
    template.set_defaults(func=_cmd_template)


def _add_build_command(sub: Any) -> None:
    """`build`: a station's torch-free build from a template."""
    build = sub.add_parser(
        "build", help="build a model from good images with a build template (no torch: runs on a station)"
    )
    build.add_argument("--template", required=True, help="build template folder from `edgeinspect template`")
    build.add_argument("--data", required=True, help="dataset root in the MVTec AD layout")
    build.add_argument("--category", required=True)
    build.add_argument("--out", default=None, help="ONNX path (default data/models/<category>.onnx)")
    build.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime threads (default 1: the line keeps the rest)"
    )
    build.set_defaults(func=_cmd_build)


def _add_eval_command(sub: Any) -> None:
    """`eval`: figures and heatmaps of a model on a dataset."""
    ev = sub.add_parser("eval", help="evaluate an ONNX model on a dataset folder")
    ev.add_argument("--data", required=True)
    ev.add_argument("--category", required=True)
    ev.add_argument("--model", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--heatmaps", type=int, default=8, help="overlay PNGs to write")
    ev.add_argument("--worst", type=int, default=5, help="false rejects and misses to list and draw (each)")
    ev.set_defaults(func=_cmd_eval)


def _add_compress_command(sub: Any) -> None:
    """`compress`: tensor decomposition, healing and int8."""
    comp = sub.add_parser("compress", help="tensor-decompose, heal and quantize a trained model")
    comp.add_argument("--model", required=True, help="PyTorch checkpoint written by `train` (FILE.pt)")
    comp.add_argument("--data", required=True)
    comp.add_argument("--category", required=True)
    comp.add_argument(
        "--budget",
        default="params=0.2",
        help="comma-separated: params=<share> | latency=<ms> | drop=<auroc drop> | "
        "channels=<share of each block's hidden channels kept, pruned first>",
    )
    comp.add_argument("--heal-steps", type=int, default=200)
    comp.add_argument("--int8", action="store_true", help="also write an int8 model")
    comp.add_argument("--rank", action="append", default=[], help="fix a layer's rank: name=16 (repeatable)")
    comp.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="PATTERN=METHOD[:RANK]",
        help="factorization per layer (repeatable, later wins): PATTERN is a layer name or glob "
        "('blocks.5.*', 'memory_bank') or default_conv / default_pointwise / default_linear / default; "
        "METHOD is svd, tucker2, cp, tt (RANK = bond dimension), auto (pick by measured latency and "
        "sensitivity) or dense",
    )
    comp.add_argument("--out", required=True)
    comp.set_defaults(func=_cmd_compress)


def _add_verify_command(sub: Any) -> None:
    """`verify`: the plant-side verifier of escalated frames."""
    verify = sub.add_parser(
        "verify", help="plant-side verifier: judge escalated frames (MQTT 5 shared subscription)"
    )
    verify.add_argument("--config", default=None, help="settings file for mqtt.* and escalation.group")
    verify.add_argument(
        "--model", action="append", required=True, help="accurate ONNX model; repeat for an ensemble"
    )
    verify.add_argument("--group", default=None, help="shared-subscription group (escalation.group)")
    verify.add_argument("--mqtt-url", default=None, help="override mqtt.url")
    verify.add_argument("--id", default=None, help="verifier id in answers (default host-pid)")
    verify.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model")
    verify.add_argument(
        "--ensemble",
        choices=["any", "mean"],
        default="any",
        help="several --model: reject when any member rejects (default), or on the mean of their scores "
        "over their thresholds",
    )
    verify.set_defaults(func=_cmd_verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeinspect", description="Defect inspection on the edge box.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the version and exit; with --verbose, what it runs on (packages, ONNX Runtime "
        "providers, CPU flags, lock file) for a field report",
    )
    sub = parser.add_subparsers(dest="command")
    _add_run_command(sub)
    _add_dataset_command(sub)
    _add_train_command(sub)
    _add_template_command(sub)
    _add_build_command(sub)
    _add_eval_command(sub)
    _add_compress_command(sub)
    _add_verify_command(sub)
    add_release_commands(sub)
    add_camera_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return _print_version(args.verbose)
    if args.command is None:
        parser.error("a command is required (see --help)")
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"edgeinspect: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, DataDirLockedError) as exc:
        print(f"edgeinspect: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_PACKAGES:
            raise
        print(
            f"edgeinspect {args.command}: needs the training extra ({exc.name} is not installed here, as "
            "on a station): run it on the plant (docker/Dockerfile.plant, scripts/setup.sh --role plant)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
