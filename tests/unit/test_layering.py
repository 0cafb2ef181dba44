"""The layering a reader relies on: app -> device -> vision, compression -> vision, and inside `device`
the station and the plant side each on their own, sharing only `device.wire` and the shared modules.

Every import in the source (function-level ones included) is read with `ast`, so a new edge that breaks a
rule fails here with the file that made it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "device", "vision", "compression")
SHARED_DEVICE = ("device.config", "device.environment", "device.mqtt_client", "device.wire")

# (importing part, imported part) pairs that must not exist; a part is a module path prefix.
FORBIDDEN = [
    *[("vision", other) for other in ("app", "device", "compression")],
    *[("compression", other) for other in ("app", "device")],
    *[("device", other) for other in ("app", "compression")],
    ("device.station", "device.plant"),
    ("device.plant", "device.station"),
    *[(shared, side) for shared in SHARED_DEVICE for side in ("device.station", "device.plant")],
]


def _within(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def imports() -> list[tuple[str, str, str]]:
    """(file, importing module, imported module) for every absolute import of one of our packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    continue
                found += [
                    (str(path.relative_to(ROOT)), module, t) for t in targets if t.split(".")[0] in PACKAGES
                ]
    return found


def test_the_import_graph_is_read() -> None:
    edges = {(source, target) for _, source, target in imports()}
    # A few edges the product cannot work without, so an empty or broken reader cannot pass.
    assert ("device.plant.verifier", "vision.inspector") in edges
    assert any(_within(s, "device.station") and _within(t, "device.wire") for s, t in edges)
    assert any(_within(s, "app") and _within(t, "device.station") for s, t in edges)


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN, ids=lambda part: part)
def test_no_import_crosses_a_layer(importer: str, imported: str) -> None:
    crossing = [
        f"{path}: {source} imports {target}"
        for path, source, target in imports()
        if _within(source, importer) and _within(target, imported)
    ]
    assert not crossing, f"{importer} must not import {imported}:\n" + "\n".join(crossing)
