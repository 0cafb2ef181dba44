"""The lock is the install: pyproject.toml, uv.lock and requirements/ agree, each setup role has its lock
file, and the environment these tests run in is exactly what the lock says (so what passed here is what a
fresh machine installs)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"


def lock_check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/lock.sh", "--check"],
        cwd=repo,
        env={"UV": str(UV), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def pins(lock_file: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) for the entries of an exported lock file."""
    found = {}
    for line in lock_file.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)(?: ; ([^\\]+?))?\s*\\?$", line)
        if match:
            name, version, marker = match.groups()
            if marker is None or Marker(marker).evaluate():
                found[canonicalize_name(name)] = (version, marker)
    return found


def test_pyproject_uv_lock_and_requirements_agree() -> None:
    result = lock_check(REPO)
    assert result.returncode == 0, result.stderr + result.stdout


def test_a_hand_edited_lock_file_is_caught(tmp_path: Path) -> None:
    """The check compares for real: one changed pin in one role's file fails it, naming the file."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        (copy / name).write_bytes((REPO / name).read_bytes())
    (copy / "scripts").mkdir()
    (copy / "scripts" / "lock.sh").write_bytes((REPO / "scripts" / "lock.sh").read_bytes())
    (copy / "requirements").mkdir()
    for path in (REPO / "requirements").iterdir():
        (copy / "requirements" / path.name).write_bytes(path.read_bytes())
    station = copy / "requirements" / "station.txt"
    station.write_text(re.sub(r"^numpy==\S+", "numpy==1.26.0", station.read_text(), count=1, flags=re.M))
    result = lock_check(copy)
    assert result.returncode != 0 and "station" in result.stderr, result.stderr + result.stdout


@pytest.mark.parametrize("role", ["station", "plant", "all"])
def test_every_setup_role_has_lock_files_exported_with_its_extras(role: str) -> None:
    """setup.sh installs requirements/<role>[-dev].txt; lock.sh must export those with the same extras."""
    extras = subprocess.run(
        ["bash", "scripts/setup.sh", "--role", role, "--print-extras"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    exported = dict(
        (words[0], sorted(words[1:]))
        for line in (REPO / "scripts" / "lock.sh").read_text().splitlines()
        if (words := line.split()) and words[0] == "export_role" and (words := words[1:])
    )
    assert exported[role] == sorted(extras.split(","))
    assert exported[f"{role}-dev"] == sorted([*extras.split(","), "dev"])
    for name in (role, f"{role}-dev"):
        assert pins(REPO / "requirements" / f"{name}.txt"), f"requirements/{name}.txt has no pins"


def test_the_environment_under_test_is_the_locked_one() -> None:
    """Every package the dev lock pins for this platform is installed at exactly that version."""
    locked = pins(REPO / "requirements" / "all-dev.txt")
    assert len(locked) > 50
    wrong = {}
    for name, (version, _) in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = f"locked {version}, installed {installed}"
    assert not wrong, f"not the locked environment (run bash scripts/setup.sh --dev): {wrong}"


def test_every_lock_entry_is_pinned_with_a_hash() -> None:
    for path in sorted((REPO / "requirements").glob("*.txt")):
        entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text().strip())
        for entry in entries:
            if entry.startswith("#"):
                continue
            assert "==" in entry.splitlines()[0] and "--hash=sha256:" in entry, f"{path.name}: {entry[:80]}"
