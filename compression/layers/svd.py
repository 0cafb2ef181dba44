"""Truncated-SVD factorization: one dense map W (out x in) becomes two thin ones, (out x r)(r x in)."""

from __future__ import annotations

import torch
from torch import nn

from compression.errors import LayerNotFactorizableError
from compression.layers._common import check_dense_conv, check_rank


class SVDLinear(nn.Module):
    """W ~= U_r S_r V_r^T as two GEMMs; for 1x1 convs as two 1x1 convs (the bulk of MobileNet-style MACs).

    The singular values are split evenly (sqrt) between both factors so their scales match, which keeps
    fine-tuning (healing) and int8 quantization well conditioned.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        conv: bool = False,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        check_rank(rank)
        self.in_features, self.out_features, self.rank, self.conv = in_features, out_features, rank, conv
        if conv:
            self.first: nn.Module = nn.Conv2d(
                in_features, rank, 1, stride=stride, padding=padding, bias=False
            )
            self.second: nn.Module = nn.Conv2d(rank, out_features, 1, bias=bias)
        else:
            self.first = nn.Linear(in_features, rank, bias=False)
            self.second = nn.Linear(rank, out_features, bias=bias)

    @staticmethod
    def max_rank(layer: nn.Module) -> int:
        weight = _weight_matrix(layer)
        return min(weight.shape)

    @classmethod
    def from_layer(
        cls, layer: nn.Module, rank: int, input_covariance: torch.Tensor | None = None
    ) -> SVDLinear:
        """Build from an `nn.Linear` or a dense 1x1 `nn.Conv2d`; ranks above full rank are clamped.

        With `input_covariance` (E[x x^T] of the layer's real inputs) the factorization minimizes the
        error of the layer's *outputs* on that data instead of the weight error: pointwise convs of
        MobileNet-style nets are not low-rank as matrices, but their inputs are."""
        check_rank(rank)
        weight = _weight_matrix(layer)
        rank = min(rank, min(weight.shape))
        bias = layer.bias is not None
        if isinstance(layer, nn.Conv2d):
            module = cls(
                layer.in_channels,
                layer.out_channels,
                rank,
                bias=bias,
                conv=True,
                stride=tuple(layer.stride),
                padding=tuple(layer.padding),
            )
        else:
            module = cls(layer.in_features, layer.out_features, rank, bias=bias)
        if input_covariance is None:
            left, right = svd_factors(weight, rank)
        else:
            left, right = whitened_svd_factors(weight, rank, input_covariance)
        first_w, second_w = right, left
        if module.conv:
            first_w, second_w = first_w[:, :, None, None], second_w[:, :, None, None]
        with torch.no_grad():
            module.first.weight.copy_(first_w)
            module.second.weight.copy_(second_w)
            if bias:
                module.second.bias.copy_(layer.bias.detach())
        return module.to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def leading_outputs(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """`self(x)[..., :count]` at count/out_features of the second product's cost (a compressed memory
        bank's coarse search: `vision.models.memory_bank.LeadingOutputs`)."""
        if self.conv:
            raise ValueError("leading_outputs is for linear layers, not 1x1 convs")
        second = self.second
        assert isinstance(second, nn.Linear)
        leading = self.first(x) @ second.weight[:count].T
        return leading if second.bias is None else leading + second.bias[:count]

    def extra_repr(self) -> str:
        return f"{self.in_features}->{self.rank}->{self.out_features}, conv={self.conv}"


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (left [out, r], right [r, in]) with left @ right the best rank-r approximation."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    left = (u[:, :rank] * root).to(weight.dtype)
    right = (root[:, None] * vh[:rank]).to(weight.dtype)
    return left, right


def whitened_svd_factors(
    weight: torch.Tensor, rank: int, covariance: torch.Tensor, damping: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) minimizing E|W x - left @ right x|^2 for inputs x with second moment `covariance`.

    With C = L L^T, |(W - W') x|^2 averaged over the data is |(W - W') L|_F^2, so the best rank-r W' is the
    truncated SVD of W L mapped back by L^-1. `damping` (relative to the mean input energy) keeps
    directions the data never excites from blowing up L^-1."""
    n = weight.shape[1]
    if covariance.shape != (n, n):
        raise ValueError(f"input covariance of shape {tuple(covariance.shape)} does not fit {n} inputs")
    c = covariance.detach().double()
    scale = c.diagonal().mean().clamp_min(1e-30)
    c = c / scale + damping * torch.eye(n, dtype=c.dtype)
    chol = torch.linalg.cholesky(c)
    u, s, vh = torch.linalg.svd(weight.detach().double() @ chol, full_matrices=False)
    root = s[:rank].sqrt()
    left = u[:, :rank] * root
    # right = diag(root) Vh_r L^-1, as a triangular solve rather than an explicit inverse
    right = torch.linalg.solve_triangular(chol, root[:, None] * vh[:rank], upper=False, left=False)
    return left.to(weight.dtype), right.to(weight.dtype)


def _weight_matrix(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return layer.weight.detach()
    if isinstance(layer, nn.Conv2d):
        check_dense_conv(layer)
        if tuple(layer.kernel_size) != (1, 1) or tuple(layer.dilation) != (1, 1):
            raise LayerNotFactorizableError(
                f"SVD needs a 1x1 conv, got kernel {tuple(layer.kernel_size)}; use Tucker2Conv2d or CPConv2d"
            )
        return layer.weight.detach()[:, :, 0, 0]
    raise LayerNotFactorizableError(f"SVDLinear takes nn.Linear or 1x1 nn.Conv2d, got {type(layer).__name__}")
