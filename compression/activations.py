"""Second moments of the inputs that layers see on real images, for data-aware (whitened) SVD."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from compression.factorize import get_submodule


@torch.no_grad()
def input_covariances(
    model: nn.Module,
    names: Iterable[str],
    images: np.ndarray,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """E[x x^T] over every input vector (pixel of a 1x1 conv, row of a Linear) of each named layer."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0].detach()
            if x.ndim == 4:  # conv input [N, C, H, W]: one vector per pixel
                x = x.permute(0, 2, 3, 1)
            rows = x.reshape(-1, x.shape[-1]).double()
            sums[name] = sums.get(name, 0) + rows.T @ rows
            counts[name] = counts.get(name, 0) + rows.shape[0]

        return hook

    handles = [get_submodule(model, name).register_forward_hook(hook_for(name)) for name in names]
    try:
        model.eval()
        for start in tqdm(
            range(0, len(images), batch_size), desc="activations", disable=not progress, leave=False
        ):
            model(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])))
    finally:
        for handle in handles:
            handle.remove()
    return {name: total / counts[name] for name, total in sums.items()}
