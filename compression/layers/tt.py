"""Tensor-train (MPO) factorization of a dense map: a chain of small cores linked by a bond dimension."""

from __future__ import annotations

import functools
import math

import torch
from tensorly.decomposition import tensor_train
from torch import nn

from compression.errors import LayerNotFactorizableError
from compression.layers._common import check_dense_conv, check_rank
from compression.layers._tensorly import torch_backend


@functools.lru_cache(maxsize=4096)
def balanced_factors(n: int, parts: int) -> tuple[int, ...]:
    """Split n into `parts` integer factors as equal as possible (largest first), e.g. 1280 -> (16, 10, 8).

    Balanced modes keep every TT core small; a prime n yields (n, 1, ...), which still works."""
    factors: list[int] = []
    remaining = n
    for left in range(parts, 0, -1):
        if left == 1:
            factors.append(remaining)
            break
        target = round(remaining ** (1.0 / left))
        best = min(
            (d for d in range(1, remaining + 1) if remaining % d == 0), key=lambda d: (abs(d - target), -d)
        )
        factors.append(best)
        remaining //= best
    return tuple(sorted(factors, reverse=True))


def tt_layout(
    out_features: int, in_features: int, rank: int, n_cores: int = 3
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(out_modes, in_modes, bond dimensions incl. the two 1s) of a TT of bond dimension `rank`.

    Each bond is clamped to the rank the unfolding at that bond can have, so a huge `rank` is exact."""
    out_modes, in_modes = balanced_factors(out_features, n_cores), balanced_factors(in_features, n_cores)
    sizes = [o * i for o, i in zip(out_modes, in_modes, strict=True)]
    inner = [min(rank, math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(n_cores - 1)]
    return out_modes, in_modes, (1, *inner, 1)


class TTLinear(nn.Module):
    """W (out x in) reshaped to a 2d-way tensor (o1,i1,...,od,id) and split by TT-SVD into cores
    G_k [r_{k-1}, o_k, i_k, r_k]. The forward contracts one core at a time with Reshape/Transpose/MatMul,
    so ONNX sees dense GEMMs only; at full bond dimension it reproduces W exactly."""

    def __init__(
        self,
        in_modes: tuple[int, ...],
        out_modes: tuple[int, ...],
        ranks: tuple[int, ...],
        bias: bool = True,
        conv: bool = False,
    ) -> None:
        super().__init__()
        if len(in_modes) != len(out_modes) or len(ranks) != len(in_modes) + 1:
            raise ValueError("TTLinear needs as many in-modes as out-modes and len(modes)+1 ranks")
        self.in_modes, self.out_modes, self.ranks, self.conv = in_modes, out_modes, ranks, conv
        self.in_features, self.out_features = math.prod(in_modes), math.prod(out_modes)
        # Core k stored as the GEMM matrix [(r_{k-1} * i_k), (o_k * r_k)] that forward multiplies by.
        self.cores = nn.ParameterList(
            nn.Parameter(torch.zeros(ranks[k] * in_modes[k], out_modes[k] * ranks[k + 1]))
            for k in range(len(in_modes))
        )
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    @property
    def bond_dim(self) -> int:
        return max(self.ranks)

    @staticmethod
    def max_rank(layer: nn.Module, n_cores: int = 3) -> int:
        weight = _weight_matrix(layer)
        out_modes, in_modes = (
            balanced_factors(weight.shape[0], n_cores),
            balanced_factors(weight.shape[1], n_cores),
        )
        sizes = [o * i for o, i in zip(out_modes, in_modes, strict=True)]
        return max(min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(n_cores - 1))

    @classmethod
    def shaped_like(cls, layer: nn.Module, rank: int, n_cores: int = 3) -> TTLinear:
        """An untrained TT of `layer`'s shape at bond dimension `rank` (for timing, no decomposition)."""
        weight = _weight_matrix(layer)
        out_modes, in_modes, bonds = tt_layout(weight.shape[0], weight.shape[1], check_rank(rank), n_cores)
        module = cls(
            in_modes, out_modes, bonds, bias=layer.bias is not None, conv=isinstance(layer, nn.Conv2d)
        )
        with torch.no_grad():
            for core in module.cores:
                core.normal_(0.0, 0.1)
        return module

    @classmethod
    def from_layer(cls, layer: nn.Module, rank: int, n_cores: int = 3) -> TTLinear:
        """Build from `nn.Linear` or a dense 1x1 conv; `rank` is the bond dimension (clamped per bond)."""
        check_rank(rank)
        weight = _weight_matrix(layer).double()
        out_modes, in_modes, bonds = tt_layout(weight.shape[0], weight.shape[1], rank, n_cores)
        sizes = [o * i for o, i in zip(out_modes, in_modes, strict=True)]
        # (o1..od, i1..id) -> (o1, i1, o2, i2, ...) -> one mode per core of size o_k * i_k
        interleave = [axis for k in range(n_cores) for axis in (k, n_cores + k)]
        tensor = weight.reshape(*out_modes, *in_modes).permute(*interleave).reshape(*sizes)
        with torch_backend():
            factors = tensor_train(tensor, rank=list(bonds)).factors
        ranks = (*tuple(int(f.shape[0]) for f in factors), 1)
        module = cls(
            in_modes, out_modes, ranks, bias=layer.bias is not None, conv=isinstance(layer, nn.Conv2d)
        )
        dtype = layer.weight.dtype
        with torch.no_grad():
            for k, factor in enumerate(factors):
                core = factor.reshape(ranks[k], out_modes[k], in_modes[k], ranks[k + 1])
                matrix = core.permute(0, 2, 1, 3).reshape(ranks[k] * in_modes[k], out_modes[k] * ranks[k + 1])
                module.cores[k].copy_(matrix.to(dtype))
            if layer.bias is not None:
                module.bias.copy_(layer.bias.detach())
        return module.to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:  # [N, C, H, W] -> rows of C features
            n, _, h, w = x.shape
            return (
                self._matmul(x.permute(0, 2, 3, 1).reshape(-1, self.in_features))
                .reshape(n, h, w, self.out_features)
                .permute(0, 3, 1, 2)
            )
        lead = x.shape[:-1]
        return self._matmul(x.reshape(-1, self.in_features)).reshape(*lead, self.out_features)

    def _matmul(self, rows: torch.Tensor) -> torch.Tensor:
        batch = rows.shape[0]
        produced, rest = 1, self.in_features // self.in_modes[0]
        # state: [batch, produced outputs, bond, current in-mode, remaining in-modes]
        state = rows.reshape(batch, 1, 1, self.in_modes[0], rest)
        for k, core in enumerate(self.cores):
            bond_in, mode_in = self.ranks[k], self.in_modes[k]
            mode_out, bond_out = self.out_modes[k], self.ranks[k + 1]
            flat = state.permute(0, 1, 4, 2, 3).reshape(batch * produced * rest, bond_in * mode_in)
            out = flat @ core  # [batch*produced*rest, mode_out * bond_out]
            produced *= mode_out
            if k + 1 < len(self.cores):
                next_mode = self.in_modes[k + 1]
                rest //= next_mode
                out = out.reshape(batch, produced // mode_out, next_mode, rest, mode_out, bond_out)
                state = out.permute(0, 1, 4, 5, 2, 3).reshape(batch, produced, bond_out, next_mode, rest)
            else:
                state = out.reshape(batch, produced)
        return state if self.bias is None else state + self.bias

    def extra_repr(self) -> str:
        return f"in={self.in_modes}, out={self.out_modes}, ranks={self.ranks}"


def _weight_matrix(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return layer.weight.detach()
    if isinstance(layer, nn.Conv2d):
        check_dense_conv(layer)
        if tuple(layer.kernel_size) != (1, 1) or tuple(layer.stride) != (1, 1) or layer.padding != (0, 0):
            raise LayerNotFactorizableError("TTLinear takes only 1x1, stride-1, unpadded convs")
        return layer.weight.detach()[:, :, 0, 0]
    raise LayerNotFactorizableError(f"TTLinear takes nn.Linear or 1x1 nn.Conv2d, got {type(layer).__name__}")
