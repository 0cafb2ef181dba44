"""CP (canonical polyadic) factorization of a kxk conv as a separable chain of four cheap convs."""

from __future__ import annotations

import torch
from tensorly.decomposition import parafac
from torch import nn

from compression.errors import LayerNotFactorizableError
from compression.layers._common import check_dense_conv, check_rank
from compression.layers._tensorly import torch_backend


class CPConv2d(nn.Module):
    """W[o,i,h,w] ~= sum_r A[o,r] B[i,r] C[h,r] D[w,r]: 1x1 (in -> R), depthwise kx1, depthwise 1xk,
    1x1 (R -> out). The most aggressive conv factorization; it needs healing more than Tucker-2 does."""

    def __init__(self, layer: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.rank = rank
        (kh, kw), (sh, sw) = tuple(layer.kernel_size), tuple(layer.stride)
        (ph, pw), (dh, dw) = tuple(layer.padding), tuple(layer.dilation)
        self.first = nn.Conv2d(layer.in_channels, rank, 1, bias=False)
        self.vertical = nn.Conv2d(
            rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank, bias=False
        )
        self.horizontal = nn.Conv2d(
            rank, rank, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank, bias=False
        )
        self.last = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)

    @staticmethod
    def max_rank(layer: nn.Conv2d) -> int:
        kh, kw = layer.kernel_size
        return min(
            layer.in_channels * kh * kw, layer.out_channels * kh * kw, layer.in_channels * layer.out_channels
        )

    @classmethod
    def from_layer(cls, layer: nn.Conv2d, rank: int, n_iter_max: int = 300, seed: int = 0) -> CPConv2d:
        """Fit by ALS (SVD init, so it is deterministic); unlike SVD/Tucker, CP has no exact 'full rank'
        shortcut, so a layer whose true CP rank is <= `rank` is reproduced only up to ALS convergence."""
        check_dense_conv(layer)
        check_rank(rank)
        if tuple(layer.kernel_size) == (1, 1):
            raise LayerNotFactorizableError("CP of a 1x1 conv is plain SVD; use SVDLinear")
        weight = layer.weight.detach().double()
        with torch_backend():
            cp = parafac(weight, rank=rank, init="svd", n_iter_max=n_iter_max, tol=1e-8, random_state=seed)
        scale, (a_out, b_in, c_h, d_w) = cp.weights, cp.factors
        module = cls(layer, rank)
        dtype = layer.weight.dtype
        with torch.no_grad():
            module.first.weight.copy_(b_in.t()[:, :, None, None].to(dtype))
            module.vertical.weight.copy_(c_h.t()[:, None, :, None].to(dtype))
            module.horizontal.weight.copy_(d_w.t()[:, None, None, :].to(dtype))
            module.last.weight.copy_((a_out * scale)[:, :, None, None].to(dtype))
            if layer.bias is not None:
                module.last.bias.copy_(layer.bias.detach())
        return module.to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.horizontal(self.vertical(self.first(x))))

    def extra_repr(self) -> str:
        return f"rank={self.rank}"
