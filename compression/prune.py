"""Structured pruning of an EfficientNet backbone's inverted-residual blocks: keep a share of each block's
hidden (expanded) channels.

Why this and not only factorization: most of a Lite backbone's time is its 1x1 and depthwise convolutions
at high resolution (`benchmarks/real/front.md`). SVD/Tucker-2 split a 1x1 convolution into two that both
still read the full-size activation; dropping hidden channels shrinks the expansion, the depthwise and the
projection convolution together, so the saving is real time. The block's input and output widths stay as
they are, so residual connections and the features the head reads keep their shapes.

Which channels stay is measured on the line's good images: a channel's mean absolute activation after the
depthwise convolution (what it carries) times the norm of its projection column (how much of it reaches
the block's output). Pruning alone loses accuracy; the caller heals the pruned copy by distillation
(`compression.pipeline.heal_compressed`) and refits the head on its features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CHANNEL_MULTIPLE = 8  # kept widths rounded to this: vectorized kernels run whole groups of channels
BATCH = 8


@dataclass(frozen=True)
class PrunedBlock:
    """One inverted-residual block: its name and hidden width before and after."""

    name: str
    hidden: int
    kept: int


def prunable_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every inverted-residual block (expansion 1x1, depthwise, projection 1x1) under `model`."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if all(hasattr(module, part) for part in ("conv_pw", "conv_dw", "conv_pwl", "bn1", "bn2"))
    ]


def kept_width(hidden: int, keep: float) -> int:
    """`keep` of `hidden`, rounded to `CHANNEL_MULTIPLE`, never below one group nor above `hidden`."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"the share of hidden channels kept must be in (0, 1], got {keep}")
    if keep == 1.0:
        return hidden
    rounded = round(hidden * keep / CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE
    return min(hidden, max(CHANNEL_MULTIPLE, rounded))


@torch.no_grad()
def channel_importance(model: nn.Module, images: np.ndarray) -> dict[str, torch.Tensor]:
    """Per block, per hidden channel: mean |activation| after the depthwise stage over `images` (prepared
    uint8 HWC, as the model takes them) times the norm of the channel's projection weights."""
    blocks = prunable_blocks(model)
    energy = {name: torch.zeros(block.conv_dw.out_channels) for name, block in blocks}

    def recorder(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            energy[name] += output.abs().mean(dim=(0, 2, 3)) * output.shape[0]

        return hook

    hooks = [block.bn2.register_forward_hook(recorder(name)) for name, block in blocks]
    try:
        model.eval()
        for start in range(0, len(images), BATCH):
            model.extract_features(torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])))
    finally:
        for hook in hooks:
            hook.remove()
    return {
        name: energy[name] / max(len(images), 1) * block.conv_pwl.weight[:, :, 0, 0].norm(dim=0)
        for name, block in blocks
    }


def prune_hidden_channels(model: nn.Module, keep: float, images: np.ndarray) -> list[PrunedBlock]:
    """Keep the most important `keep` share of every block's hidden channels, in place."""
    if len(images) == 0:
        raise ValueError("pruning needs good images to measure which channels carry the features")
    if not prunable_blocks(model):
        raise ValueError(
            "channels=: the model has no inverted-residual blocks (expansion, depthwise, projection) to prune"
        )
    importance = channel_importance(model, images)
    pruned = []
    for name, block in prunable_blocks(model):
        hidden = block.conv_dw.out_channels
        width = kept_width(hidden, keep)
        if width < hidden:
            kept = torch.sort(torch.topk(importance[name], width).indices).values
            keep_hidden(block, kept)
        pruned.append(PrunedBlock(name, hidden, width))
    return pruned


def keep_hidden(block: nn.Module, kept: torch.Tensor) -> None:
    """Slice the expansion's outputs, both norms, the depthwise filters and the projection's inputs."""
    width = len(kept)
    expand, depthwise, project = block.conv_pw, block.conv_dw, block.conv_pwl
    expand.weight = nn.Parameter(expand.weight.data[kept].clone())
    expand.out_channels = width
    depthwise.weight = nn.Parameter(depthwise.weight.data[kept].clone())
    depthwise.in_channels = depthwise.out_channels = depthwise.groups = width
    project.weight = nn.Parameter(project.weight.data[:, kept].clone())
    project.in_channels = width
    for norm in (block.bn1, block.bn2):
        _slice_norm(norm, kept)


def _slice_norm(norm: nn.BatchNorm2d, kept: torch.Tensor) -> None:
    norm.weight = nn.Parameter(norm.weight.data[kept].clone())
    norm.bias = nn.Parameter(norm.bias.data[kept].clone())
    norm.running_mean = norm.running_mean[kept].clone()  # type: ignore[index]
    norm.running_var = norm.running_var[kept].clone()  # type: ignore[index]
    norm.num_features = len(kept)
