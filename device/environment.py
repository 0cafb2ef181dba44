"""What ran: the record a field report needs (`edgeinspect --version --verbose`, the start-up log, `/health`).

Two stations set up from the same lock print the same packages; a report that says "it failed here"
then says on what. Gathered once per process (nothing in it changes while it runs).
"""

from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, Field

# The packages whose version decides what a frame's verdict is or how it travels; the rest is in the lock.
KEY_PACKAGES = (
    "edgeinspect",
    "numpy",
    "onnxruntime",
    "opencv-python-headless",
    "pydantic",
    "fastapi",
    "uvicorn",
    "paho-mqtt",
    "asyncua",
    "cryptography",
    "torch",
    "torchvision",
    "timm",
    "tensorly",
    "onnx",
)
# CPU features that change which ONNX Runtime and numpy kernels run (and so timings, sometimes results).
CPU_FLAGS_OF_INTEREST = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "asimd",
    "sve",
)


class EnvironmentRecord(BaseModel):
    """The software and hardware a station runs on."""

    edgeinspect: str
    python: str
    platform: str
    machine: str
    cpu_count: int
    cpu_flags: list[str] = Field(description="Those that choose inference kernels, as the kernel reports.")
    onnxruntime_providers: list[str]
    packages: dict[str, str] = Field(description="Installed version of each key package; absent: not here.")
    lock_file: str | None = Field(
        None, description="requirements/<role>.txt the environment was installed from (scripts/setup.sh)."
    )

    def lines(self) -> list[str]:
        """Human-readable, one fact a line, for `--version --verbose` and the start-up log."""
        packages = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        return [
            f"edgeinspect {self.edgeinspect}",
            f"python {self.python} on {self.platform} ({self.machine}, {self.cpu_count} CPUs)",
            f"cpu flags: {' '.join(self.cpu_flags) or 'none of interest reported'}",
            f"onnxruntime providers: {', '.join(self.onnxruntime_providers) or 'onnxruntime not installed'}",
            f"packages: {packages}",
            f"installed from: {self.lock_file or 'unknown (not by scripts/setup.sh)'}",
        ]


def installed_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The flags of interest from /proc/cpuinfo's first processor (Linux; empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in CPU_FLAGS_OF_INTEREST if flag in present]
    return []


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return []
    return [str(p) for p in ort.get_available_providers()]


def lock_file_used(venv: Path | None = None) -> str | None:
    """The lock file named in the install stamp scripts/setup.sh leaves in the virtual environment."""
    stamp = (venv or Path(sys.prefix)) / ".edgeinspect-installed"
    try:
        words = stamp.read_text().split()
    except OSError:
        return None
    return next((w for w in words if w.startswith("requirements/")), None)


@lru_cache(maxsize=1)
def environment_record() -> EnvironmentRecord:
    packages = installed_versions()
    return EnvironmentRecord(
        edgeinspect=packages.get("edgeinspect", "unknown"),
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        machine=platform.machine(),
        cpu_count=os.cpu_count() or 1,
        cpu_flags=cpu_flags(),
        onnxruntime_providers=onnxruntime_providers(),
        packages=packages,
        lock_file=lock_file_used(),
    )
