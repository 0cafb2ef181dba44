"""The environment record a field report carries: CPU flags as the kernel lists them, the lock file the
install stamp names, and the same record from the CLI."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from device.environment import cpu_flags, environment_record, installed_versions, lock_file_used

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni hypervisor
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\n"


def test_cpu_flags_keeps_only_those_that_choose_kernels() -> None:
    assert cpu_flags(X86_CPUINFO) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert cpu_flags(ARM_CPUINFO) == ["asimd", "sve"]
    assert cpu_flags("processor\t: 0\n") == []


def test_lock_file_comes_from_the_setup_stamp(tmp_path: Path) -> None:
    assert lock_file_used(tmp_path) is None
    (tmp_path / ".edgeinspect-installed").write_text("0123abcd requirements/station.txt\n")
    assert lock_file_used(tmp_path) == "requirements/station.txt"


def test_versions_are_the_installed_ones_and_absent_packages_are_left_out() -> None:
    versions = installed_versions(("numpy", "no-such-package-edgeinspect"))
    assert versions == {"numpy": metadata.version("numpy")}


def test_version_verbose_prints_the_record() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version", "--verbose"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    record = environment_record()
    assert out.splitlines() == record.lines()
    assert f"onnxruntime {metadata.version('onnxruntime')}" in out and "CPUExecutionProvider" in out
    short = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert short.stdout.strip() == f"edgeinspect {record.edgeinspect}"
