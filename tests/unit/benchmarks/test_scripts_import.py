"""Every benchmark script still imports against today's code: a benchmark that rots silently (a renamed
helper it reached for) is found here, not on the day someone needs its figures again."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if "work" not in p.relative_to(BENCHMARKS).parts)


def test_the_benchmark_scripts_are_found() -> None:
    assert len(SCRIPTS) > 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_benchmark_script_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "benchmark_under_test_" + "_".join(script.relative_to(BENCHMARKS).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up while defined
    monkeypatch.setattr(sys, "path", list(sys.path))  # scripts add their own folders; undo it after
    spec.loader.exec_module(module)
    assert module.__doc__, f"{script.name} says what it measures in its docstring"
