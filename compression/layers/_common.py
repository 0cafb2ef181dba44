"""Shared checks for factorized layers: which dense layers qualify and how ranks are clamped."""

from __future__ import annotations

from torch import nn

from compression.errors import LayerNotFactorizableError


def check_rank(rank: int, name: str = "rank") -> int:
    """Ranks come from users and budgets; a zero or negative one is a request error, not a shape bug."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{name} must be a positive integer, got {rank!r}")
    return rank


def check_dense_conv(layer: nn.Module) -> nn.Conv2d:
    """Grouped and depthwise convs are already cheap per output; factorizing them does not pay off."""
    if not isinstance(layer, nn.Conv2d):
        raise LayerNotFactorizableError(f"expected nn.Conv2d, got {type(layer).__name__}")
    if layer.groups != 1:
        raise LayerNotFactorizableError(
            f"grouped/depthwise conv (groups={layer.groups}) stays dense: no channel mixing to factor"
        )
    if layer.padding_mode != "zeros":
        raise LayerNotFactorizableError(f"padding_mode={layer.padding_mode!r} is not supported")
    if isinstance(layer.padding, str):
        raise LayerNotFactorizableError(f"string padding {layer.padding!r} is not supported; use integers")
    return layer
