"""A build template's graph on the station: where its fitted numbers live, and writing them in (protobuf).

A template (`vision.build_template`) is an exported model with its head unfitted. The exporter keeps the
names of the buffers a graph reads directly (`feature_scaler.shift`, `position_gaussian.factor`,
`memory_bank.similarity.bias`, ...) and folds the ones it reshapes into initializers of its own naming (the
whitening convolution's weight, the bank's transposed entries, the coarse search's first entries). Those
are found here by the graph's structure, so the station writes every copy of a fitted number. The raw patch
embeddings (the whitening convolution's input) are read off the same graph.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision import onnx_proto
from vision.config import ModelSettings
from vision.export import META_BUILD_SETTINGS, META_BUILD_TEMPLATE, META_FEATURE_GROUPS

SHIFT, TRANSFORM = "feature_scaler.shift", "feature_scaler.transform"
GAUSSIAN = {
    "basis": "position_gaussian.basis",
    "mean": "position_gaussian.mean",
    "factor": "position_gaussian.factor",
}
BANK_BIAS = "memory_bank.similarity.bias"
COARSE = {"coarse_scale": "memory_bank.coarse_scale", "coarse_offset": "memory_bank.coarse_offset"}
POSITION = {"gain": "position_norm.gain", "offset": "position_norm.offset"}
HEADS = ("gaussian", "bank")


class StationBuildError(ValueError):
    """The station cannot build this model; the message says what is missing or why."""


@dataclass(frozen=True)
class BuildTemplate:
    """One head's template: its graph, the settings it was exported for, and the initializer behind each
    fitted role (`shift`, `transform`, `whiten_weight`, then the head's: `basis`/`mean`/`factor`, or
    `bank_weight`/`bank_bias` and, where present, `coarse_*` and `gain`/`offset`)."""

    path: Path
    model: Any  # onnx_proto ModelProto
    settings: ModelSettings
    groups: tuple[int, ...]
    head: str
    features: str  # the raw patch embeddings [1, C, h, w] (input of the whitening convolution)
    roles: Mapping[str, str]

    @classmethod
    def load(cls, path: str | Path) -> BuildTemplate:
        path = Path(path)
        if not path.is_file():
            raise StationBuildError(
                f"build template not found: {path} (export one with `edgeinspect template`)"
            )
        try:
            model = onnx_proto.load_model(path.read_bytes())
        except onnx_proto.OnnxFormatError as exc:
            raise StationBuildError(f"{path}: {exc}") from exc
        meta = onnx_proto.metadata(model)
        if META_BUILD_TEMPLATE not in meta:
            raise StationBuildError(f"{path} is not a build template (no {META_BUILD_TEMPLATE} metadata)")
        try:
            stored = json.loads(meta[META_BUILD_SETTINGS])
            # Templates exported before `gaussian_rank` existed hold every direction (their factor is K x K).
            stored.setdefault("gaussian_rank", 0)
            settings = ModelSettings(**stored)
            groups = tuple(int(c) for c in meta[META_FEATURE_GROUPS].split(","))
        except (KeyError, ValueError) as exc:
            raise StationBuildError(f"{path}: unreadable template settings: {exc}") from exc
        inits = {tensor.name: tensor for tensor in model.graph.initializer}
        features, roles = _whitening(model, inits, path)
        if set(GAUSSIAN.values()) <= inits.keys():
            head = "gaussian"
            roles.update(GAUSSIAN)
        elif BANK_BIAS in inits:
            head = "bank"
            roles.update(_bank_roles(model, inits, path))
        else:
            raise StationBuildError(f"{path} holds neither a Gaussian head nor a memory bank")
        return cls(path, model, settings, groups, head, features, roles)

    def dims(self, role: str) -> tuple[int, ...]:
        """The shape of a role's initializer."""
        tensor = next(t for t in self.model.graph.initializer if t.name == self.roles[role])
        return tuple(int(d) for d in tensor.dims)

    def written(self, values: Mapping[str, np.ndarray]) -> Any:
        """A copy of the graph with each role's initializer set to `values[role]` (shapes must match)."""
        model = onnx_proto.copy_model(self.model)
        inits = {tensor.name: tensor for tensor in model.graph.initializer}
        for role, array in values.items():
            tensor = inits[self.roles[role]]
            if tuple(tensor.dims) != array.shape:
                raise StationBuildError(
                    f"{self.path}: {role} ({tensor.name}) holds shape {tuple(tensor.dims)}, the fit gives "
                    f"{array.shape}"
                )
            onnx_proto.set_tensor(tensor, array.astype(np.float32))
        return model


def load_kit(folder: str | Path) -> dict[str, BuildTemplate]:
    """The templates in a build-template folder (`gaussian.onnx`, `bank.onnx`), by head; at least one."""
    folder = Path(folder)
    kit = {
        head: BuildTemplate.load(folder / f"{head}.onnx")
        for head in HEADS
        if (folder / f"{head}.onnx").is_file()
    }
    if not kit:
        raise StationBuildError(
            f"no build template in {folder} (gaussian.onnx, bank.onnx): export it with `edgeinspect template`"
        )
    for head, template in kit.items():
        if template.head != head:
            raise StationBuildError(f"{template.path} holds a {template.head} head, not {head}")
    return kit


def _whitening(model: Any, inits: Mapping[str, Any], path: Path) -> tuple[str, dict[str, str]]:
    """(raw features tensor, roles) of the Conv whose bias is computed from the scaler's shift and
    transform: its weight is transform^T folded by the exporter."""
    producers = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        source = producers.get(node.input[2])
        while source is not None and source.op_type in ("Neg", "Identity"):
            source = producers.get(source.input[0])
        if source is not None and source.op_type == "MatMul" and list(source.input) == [SHIFT, TRANSFORM]:
            if node.input[1] not in inits:
                raise StationBuildError(f"{path}: the whitening convolution's weight is not stored")
            return node.input[0], {"shift": SHIFT, "transform": TRANSFORM, "whiten_weight": node.input[1]}
    raise StationBuildError(f"{path} has no whitening convolution (model.feature_norm must be whiten)")


def _bank_roles(model: Any, inits: Mapping[str, Any], path: Path) -> dict[str, str]:
    """The bank's entries (a MatMul weight [C, size] whose product gets the named bias), and with a
    coarse search its first entries [C, coarse] and their bias [coarse]; the position statistics."""
    producers = {output: node for node in model.graph.node for output in node.output}
    roles = {"bank_bias": BANK_BIAS}
    products: list[tuple[str, str]] = []  # (MatMul weight, Add initializer) pairs: entries and their bias
    for node in model.graph.node:
        if node.op_type != "Add":
            continue
        matmul = next((producers[i] for i in node.input if i in producers), None)
        bias = next((i for i in node.input if i in inits), None)
        if matmul is None or bias is None or matmul.op_type != "MatMul" or matmul.input[1] not in inits:
            continue
        products.append((matmul.input[1], bias))
    full = [weight for weight, bias in products if bias == BANK_BIAS]
    if len(full) != 1:
        raise StationBuildError(f"{path}: the bank's entries are not one MatMul weight (found {len(full)})")
    roles["bank_weight"] = full[0]
    if COARSE["coarse_scale"] in inits:
        coarse = [(w, b) for w, b in products if b != BANK_BIAS and len(inits[b].dims) == 1 and w != full[0]]
        if len(coarse) != 1:
            raise StationBuildError(
                f"{path}: the coarse search's entries are not one MatMul (found {len(coarse)})"
            )
        roles.update({"coarse_weight": coarse[0][0], "coarse_bias": coarse[0][1], **COARSE})
    if set(POSITION.values()) <= inits.keys():
        roles.update(POSITION)
    return roles
