"""Layer inventory: where a model's parameters, MACs and CPU time are, measured at the deployed input size.

Rank selection spends its budget where this says the weight and the time are, so it is measured on the
real input shape with forward hooks rather than estimated from layer types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from compression.errors import LayerNotFactorizableError
from compression.factorize import LayerShape, full_rank, shape_of
from compression.methods import MethodRule, layer_kind, resolve_methods


@dataclass
class LayerInfo:
    """One dense layer as deployed; `compressible` is False for depthwise/grouped or tiny layers.

    `method` is the first of `candidates` (the methods the rank search may pick from: one, or several when
    the layer is `auto`); `full_rank` is that method's; `rule` says where the method came from."""

    name: str
    type: str
    shape: LayerShape
    method: str | None
    full_rank: int
    compressible: bool
    reason: str = ""
    latency_ms: float = 0.0
    latency_share: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    kind: str = ""
    candidates: tuple[str, ...] = ()
    rule: str = ""
    fixed_rank: int | None = None
    input_shape: tuple[int, ...] = ()

    @property
    def auto(self) -> bool:
        return len(self.candidates) > 1

    def full_rank_of(self, method: str) -> int:
        return full_rank(self.shape, method)

    @property
    def params(self) -> int:
        return self.shape.params

    @property
    def macs(self) -> int:
        return self.shape.macs

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(params=self.params, macs=self.macs)
        return data


@dataclass
class Inventory:
    layers: list[LayerInfo]
    total_params: int
    total_macs: int
    total_latency_ms: float

    @property
    def compressible(self) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.compressible]

    def by_name(self) -> dict[str, LayerInfo]:
        return {layer.name: layer for layer in self.layers}

    def as_dict(self) -> dict[str, object]:
        return {
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_latency_ms": self.total_latency_ms,
            "layers": [layer.as_dict() for layer in self.layers],
        }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _rows(tensor: torch.Tensor, layer: nn.Module) -> int:
    """Positions a layer is applied at for one image (batch 1): H*W for convs, leading rows for Linear."""
    if isinstance(layer, nn.Conv2d):
        return int(tensor.shape[-1] * tensor.shape[-2])
    return int(tensor.numel() // tensor.shape[-1] // max(1, tensor.shape[0]))


@torch.no_grad()
def build_inventory(
    model: nn.Module,
    example: torch.Tensor,
    min_params: int = 2048,
    conv_method: str = "tucker2",
    linear_method: str = "svd",
    timing_runs: int = 3,
    forward: Callable[[nn.Module, torch.Tensor], object] | None = None,
    rules: Sequence[MethodRule] = (),
) -> Inventory:
    """Run `example` (batch 1) through `model` with hooks; return every Linear/Conv2d with its cost.

    Methods come from `rules` (see `compression.methods`), then `conv_method`/`linear_method`; a rule
    that fits no layer raises MethodError. `forward` lets a caller time only part of a model (e.g.
    feature extraction) while still using the whole module tree; by default the model itself is called."""
    run = forward or (lambda m, x: m(x))
    shapes: dict[str, tuple[int, int]] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}
    elapsed: dict[str, float] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, layer in _leaf_layers(model):

        def pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post_hook(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            elapsed[name] = elapsed.get(name, 0.0) + time.perf_counter() - starts[name]
            shapes[name] = (_rows(inputs[0], module), _rows(output, module))
            input_shapes[name] = tuple(int(d) for d in inputs[0].shape)

        handles.append(layer.register_forward_pre_hook(pre_hook))
        handles.append(layer.register_forward_hook(post_hook))
    was_training = model.training
    model.eval()
    try:
        run(model, example)  # warm-up, also fills shapes
        elapsed.clear()
        start = time.perf_counter()
        for _ in range(timing_runs):
            run(model, example)
        total_s = (time.perf_counter() - start) / timing_runs
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    layers = []
    modules: dict[str, nn.Module] = {}
    for name, layer in _leaf_layers(model):
        if name not in shapes:
            continue  # not on the forward path (e.g. a classifier head that is never called)
        rows_in, rows_out = shapes[name]
        shape = shape_of(layer, rows_in, rows_out)
        try:
            kind, compressible, reason = layer_kind(layer), shape.params >= min_params, ""
            if not compressible:
                reason = f"only {shape.params} parameters (< {min_params})"
        except LayerNotFactorizableError as exc:
            kind, compressible, reason = "", False, str(exc)
        if compressible:
            modules[name] = layer
        latency_ms = 1000.0 * elapsed.get(name, 0.0) / timing_runs
        layers.append(
            LayerInfo(
                name=name,
                type=type(layer).__name__,
                shape=shape,
                method=None,
                full_rank=0,
                compressible=compressible,
                reason=reason,
                latency_ms=latency_ms,
                latency_share=latency_ms / (1000.0 * total_s) if total_s > 0 else 0.0,
                kind=kind,
                input_shape=input_shapes[name],
            )
        )
    _assign_methods(layers, modules, rules, conv_method, linear_method)
    return Inventory(
        layers=layers,
        total_params=count_params(model),
        total_macs=sum(layer.macs for layer in layers),
        total_latency_ms=1000.0 * total_s,
    )


def _assign_methods(
    layers: list[LayerInfo],
    modules: dict[str, nn.Module],
    rules: Sequence[MethodRule],
    conv_method: str,
    linear_method: str,
) -> None:
    """Fill method/candidates/full rank of the compressible layers; a `dense` rule makes a layer not one."""
    skipped = {info.name: info.reason for info in layers if not info.compressible}
    assigned = resolve_methods(modules, rules, conv_method, linear_method, skipped)
    for info in layers:
        if info.name not in assigned:
            continue
        choice = assigned[info.name]
        info.rule = choice.rule
        if not choice.candidates:
            info.compressible, info.reason = False, f"kept dense by {choice.rule}"
            continue
        info.candidates = choice.candidates
        info.method = choice.candidates[0]
        info.full_rank = full_rank(info.shape, info.method)
        if choice.rank is not None:
            info.fixed_rank = min(choice.rank, info.full_rank)
