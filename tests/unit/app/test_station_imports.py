"""A station runs without torch: its modules import, and `run` starts, with the training packages blocked,
and everything they import comes from the station role's extras (scripts/setup.sh --role station).

The probe runs in a fresh interpreter (station_probe.py) so modules this test session already imported
cannot hide an import. The end-to-end proof (a real edge-only venv running the line) is in
docs/DEPLOYMENT.md; this is the cheap guard that keeps it true.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PROBE = Path(__file__).with_name("station_probe.py")
FIRST_PARTY = {"app", "vision", "device", "compression", "station_probe"}
# Loaded by the interpreter or the venv itself, not by our code.
RUNTIME_NOISE = {"__main__", "_distutils_hack", "sitecustomize", "usercustomize", "_virtualenv"}


@pytest.fixture(scope="module")
def probe() -> dict:
    done = subprocess.run(
        [sys.executable, str(PROBE)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def station_extras() -> list[str]:
    """The extras the station role installs, from the one table in scripts/setup.sh."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts/setup.sh"), "--role", "station", "--print-extras"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out.split(",")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def station_distributions(extras: list[str]) -> set[str]:
    """Every distribution an install of edgeinspect[extras] pulls in (declared deps, then theirs)."""
    tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    seen: set[str] = set()
    todo = [_name(req) for req in wanted]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # declared but not installed here: it pulls nothing we could have imported
        todo += [_name(req) for req in requires if "extra ==" not in req]
    return seen


def test_station_modules_import_without_training_packages(probe: dict) -> None:
    assert probe["failures"] == {}, (
        "station modules that need a training package (move the import inside):\n"
        + ("\n".join(f"  {mod}: {err}" for mod, err in probe["failures"].items()))
    )


def test_run_front_door_works_and_first_run_build_refuses_clearly(probe: dict) -> None:
    assert probe["problems"] == {}


def test_station_imports_only_what_the_station_role_installs(probe: dict) -> None:
    extras = station_extras()
    assert "train" not in extras
    allowed = station_distributions(extras)
    owners = metadata.packages_distributions()
    stray = {}
    for module in probe["modules"]:
        if module in FIRST_PARTY or module in RUNTIME_NOISE or module in sys.stdlib_module_names:
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists:
            if module.startswith("__editable__"):
                continue
            stray[module] = "no installed distribution provides it"
        elif not dists & allowed:
            stray[module] = f"from {sorted(dists)}, not in edgeinspect[{','.join(extras)}]"
    assert stray == {}, "imported on the station path but not installed there:\n" + "\n".join(
        f"  {mod}: {why}" for mod, why in sorted(stray.items())
    )
