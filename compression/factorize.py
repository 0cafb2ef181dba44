"""Which layers can be factorized, by which method, at what cost, and swapping them into a model copy."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from compression.errors import BudgetError, LayerNotFactorizableError
from compression.layers import CPConv2d, SVDLinear, TTLinear, Tucker2Conv2d, tt_layout

FACTORIZED_TYPES = (SVDLinear, Tucker2Conv2d, CPConv2d, TTLinear)


@dataclass(frozen=True)
class LayerShape:
    """What the cost model needs about a dense layer: channels, kernel and the spatial sizes it ran at."""

    kind: str  # "linear" | "conv"
    in_features: int
    out_features: int
    kernel: tuple[int, int] = (1, 1)
    rows_in: int = 1  # positions the layer's input has (H_in * W_in, or leading rows for Linear)
    rows_out: int = 1  # positions of the output (differs from rows_in for strided convs)
    has_bias: bool = True

    @property
    def params(self) -> int:
        return self.in_features * self.out_features * self.kernel[0] * self.kernel[1] + (
            self.out_features if self.has_bias else 0
        )

    @property
    def macs(self) -> int:
        return self.rows_out * self.in_features * self.out_features * self.kernel[0] * self.kernel[1]


def default_method(layer: nn.Module, conv_method: str = "tucker2", linear_method: str = "svd") -> str:
    """SVD for matrices (Linear, 1x1 conv), Tucker-2 or CP for spatial convs; raises if not factorizable."""
    from compression.methods import layer_kind, valid_methods

    wanted = conv_method if layer_kind(layer) == "conv" else linear_method
    valid = valid_methods(layer)
    return wanted if wanted in valid else valid[0]


def build_factorized(
    layer: nn.Module, method: str, rank: int, input_covariance: torch.Tensor | None = None
) -> nn.Module:
    """The factorized replacement of `layer`; SVD uses `input_covariance` (data-aware) when given."""
    if method == "svd":
        return SVDLinear.from_layer(layer, rank, input_covariance=input_covariance)
    builders: dict[str, Callable[[nn.Module, int], nn.Module]] = {
        "svd": SVDLinear.from_layer,
        "tucker2": Tucker2Conv2d.from_layer,
        "cp": CPConv2d.from_layer,
        "tt": TTLinear.from_layer,
    }
    if method not in builders:
        raise ValueError(f"unknown factorization method {method!r}; choose one of {sorted(builders)}")
    return builders[method](layer, rank)


def full_rank(shape: LayerShape, method: str) -> int:
    """The rank at which a method reproduces the layer exactly (the top of its rank range)."""
    o, i, (kh, kw) = shape.out_features, shape.in_features, shape.kernel
    if method == "svd":
        return min(o, i)
    if method == "tucker2":
        return max(o, i)
    if method == "cp":
        return min(i * kh * kw, o * kh * kw, i * o)
    if method == "tt":
        sizes = _tt_sizes(shape)
        return max(min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1))
    raise ValueError(f"unknown factorization method {method!r}")


def factorized_cost(shape: LayerShape, method: str, rank: int) -> tuple[int, int]:
    """(parameters, MACs) of the factorized layer at `rank`, without building it (rank search is a loop)."""
    o, i, (kh, kw) = shape.out_features, shape.in_features, shape.kernel
    bias = o if shape.has_bias else 0
    if method == "svd":
        r = min(rank, o, i)
        return r * (i + o) + bias, shape.rows_out * r * (i + o)
    if method == "tucker2":
        ro, ri = min(rank, o), min(rank, i)
        params = i * ri + ri * ro * kh * kw + ro * o + bias
        return params, shape.rows_in * i * ri + shape.rows_out * (ri * ro * kh * kw + ro * o)
    if method == "cp":
        r = rank
        params = i * r + r * (kh + kw) + r * o + bias
        return params, shape.rows_in * i * r + shape.rows_out * r * (kh + kw + o)
    if method == "tt":
        out_modes, in_modes, bonds = tt_layout(o, i, rank)
        params = sum(bonds[k] * in_modes[k] * out_modes[k] * bonds[k + 1] for k in range(3)) + bias
        macs = 0
        for k in range(3):
            rows = math.prod(out_modes[:k]) * math.prod(in_modes[k + 1 :])
            macs += rows * bonds[k] * in_modes[k] * out_modes[k] * bonds[k + 1]
        return params, shape.rows_out * macs
    raise ValueError(f"unknown factorization method {method!r}")


def _tt_sizes(shape: LayerShape) -> list[int]:
    out_modes, in_modes, _ = tt_layout(shape.out_features, shape.in_features, 1)
    return [a * b for a, b in zip(out_modes, in_modes, strict=True)]


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise BudgetError(f"model has no layer named {name!r}") from exc


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def apply_ranks(
    model: nn.Module,
    ranks: Mapping[str, int],
    methods: Mapping[str, str],
    inplace: bool = False,
    covariances: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Return a copy of `model` with each named layer replaced by its factorization at the given rank.

    A rank at or above the layer's full rank leaves it dense: a 'factorization' that saves nothing would
    only cost latency."""
    target = model if inplace else copy.deepcopy(model)
    for name, rank in ranks.items():
        layer = get_submodule(target, name)
        if isinstance(layer, FACTORIZED_TYPES):
            raise ValueError(f"layer {name!r} is already factorized")
        method = methods[name]
        if rank >= full_rank(shape_of(layer), method):
            continue
        covariance = (covariances or {}).get(name)
        set_submodule(target, name, build_factorized(layer, method, rank, covariance))
    sync_memory_bank(target)
    return target


def sync_memory_bank(model: nn.Module) -> None:
    """Keep an anomaly model's bank distances exact after its bank matrix was swapped or factorized."""
    bank = getattr(model, "memory_bank", None)
    if bank is not None and hasattr(bank, "sync_bias"):
        bank.sync_bias()


def shape_of(layer: nn.Module, rows_in: int = 1, rows_out: int = 1) -> LayerShape:
    if isinstance(layer, nn.Linear):
        return LayerShape(
            "linear", layer.in_features, layer.out_features, (1, 1), rows_in, rows_out, layer.bias is not None
        )
    if isinstance(layer, nn.Conv2d):
        return LayerShape(
            "conv",
            layer.in_channels // layer.groups,
            layer.out_channels,
            tuple(layer.kernel_size),
            rows_in,
            rows_out,
            layer.bias is not None,
        )
    raise LayerNotFactorizableError(f"{type(layer).__name__} is not a dense Linear/Conv2d")
