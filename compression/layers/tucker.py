"""Tucker-2 factorization of a kxk conv: 1x1 (in -> r_in), kxk core (r_in -> r_out), 1x1 (r_out -> out)."""

from __future__ import annotations

import torch
from tensorly.decomposition import partial_tucker
from torch import nn

from compression.layers._common import check_dense_conv, check_rank
from compression.layers._tensorly import torch_backend

RankSpec = int | tuple[int, int]


class Tucker2Conv2d(nn.Module):
    """Compresses both channel modes of a conv while keeping its spatial kernel, so receptive field,
    stride, padding and dilation are unchanged and the result is three plain Conv2d nodes in ONNX."""

    def __init__(self, layer: nn.Conv2d, rank_out: int, rank_in: int) -> None:
        super().__init__()
        self.rank_out, self.rank_in = rank_out, rank_in
        self.first = nn.Conv2d(layer.in_channels, rank_in, 1, bias=False)
        self.core = nn.Conv2d(
            rank_in,
            rank_out,
            tuple(layer.kernel_size),
            stride=tuple(layer.stride),
            padding=tuple(layer.padding),
            dilation=tuple(layer.dilation),
            bias=False,
        )
        self.last = nn.Conv2d(rank_out, layer.out_channels, 1, bias=layer.bias is not None)

    @staticmethod
    def max_rank(layer: nn.Conv2d) -> int:
        return max(layer.out_channels, layer.in_channels)

    @classmethod
    def from_layer(cls, layer: nn.Conv2d, rank: RankSpec) -> Tucker2Conv2d:
        """`rank` is one int for both channel modes (each clamped to its size) or (rank_out, rank_in)."""
        check_dense_conv(layer)
        rank_out, rank_in = (rank, rank) if isinstance(rank, int) else rank
        rank_out = min(check_rank(rank_out, "rank_out"), layer.out_channels)
        rank_in = min(check_rank(rank_in, "rank_in"), layer.in_channels)
        weight = layer.weight.detach().double()
        with torch_backend():
            (core, (u_out, u_in)), _ = partial_tucker(
                weight, rank=[rank_out, rank_in], modes=[0, 1], init="svd", n_iter_max=50
            )
        module = cls(layer, rank_out, rank_in)
        dtype = layer.weight.dtype
        with torch.no_grad():
            module.first.weight.copy_(u_in.t()[:, :, None, None].to(dtype))
            module.core.weight.copy_(core.to(dtype))
            module.last.weight.copy_(u_out[:, :, None, None].to(dtype))
            if layer.bias is not None:
                module.last.bias.copy_(layer.bias.detach())
        return module.to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))

    def extra_repr(self) -> str:
        return f"ranks=(out={self.rank_out}, in={self.rank_in})"
