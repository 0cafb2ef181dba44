"""Each factorized layer: exact at full rank, better as rank rises, shape options honoured."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compression.errors import LayerNotFactorizableError
from compression.layers import CPConv2d, SVDLinear, TTLinear, Tucker2Conv2d, balanced_factors


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_svd_linear_full_rank_is_exact_and_error_falls_with_rank() -> None:
    layer = nn.Linear(40, 24)
    x = torch.randn(7, 3, 40)  # extra leading dims, as in the memory bank
    assert rel_error(SVDLinear.from_layer(layer, 24)(x), layer(x)) < 1e-5
    errors = [rel_error(SVDLinear.from_layer(layer, r)(x), layer(x)) for r in (2, 6, 12, 20)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.3


def test_svd_on_strided_1x1_conv_keeps_stride_padding_and_bias() -> None:
    layer = nn.Conv2d(16, 32, 1, stride=2, padding=1)
    x = torch.randn(2, 16, 9, 9)
    module = SVDLinear.from_layer(layer, 16)
    assert module(x).shape == layer(x).shape
    assert rel_error(module(x), layer(x)) < 1e-5
    with pytest.raises(LayerNotFactorizableError, match="1x1"):
        SVDLinear.from_layer(nn.Conv2d(4, 4, 3), 2)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_tucker2_full_rank_is_exact_with_stride_padding_dilation(
    stride: int, padding: int, dilation: int
) -> None:
    layer = nn.Conv2d(12, 20, 3, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(2, 12, 11, 11)
    module = Tucker2Conv2d.from_layer(layer, (20, 12))
    assert module(x).shape == layer(x).shape
    assert rel_error(module(x), layer(x)) < 1e-4
    errors = [rel_error(Tucker2Conv2d.from_layer(layer, r)(x), layer(x)) for r in (2, 5, 9)]
    assert errors == sorted(errors, reverse=True)


def test_cp_reproduces_a_conv_of_that_cp_rank_and_error_falls() -> None:
    rank = 4
    factors = [torch.randn(n, rank) for n in (10, 8, 3, 3)]
    weight = torch.einsum("or,ir,hr,wr->oihw", *factors)
    layer = nn.Conv2d(8, 10, 3, stride=2, padding=1)
    with torch.no_grad():
        layer.weight.copy_(weight)
    x = torch.randn(2, 8, 13, 13)
    module = CPConv2d.from_layer(layer, rank)
    assert module(x).shape == layer(x).shape
    assert rel_error(module(x), layer(x)) < 1e-3
    dense = nn.Conv2d(8, 10, 3, padding=1)
    errors = [rel_error(CPConv2d.from_layer(dense, r)(x), dense(x)) for r in (2, 4, 8)]
    assert errors == sorted(errors, reverse=True)


def test_tt_linear_full_bond_is_exact_and_error_falls() -> None:
    layer = nn.Linear(60, 48)
    x = torch.randn(5, 60)
    assert rel_error(TTLinear.from_layer(layer, 10_000)(x), layer(x)) < 1e-5
    errors = [rel_error(TTLinear.from_layer(layer, r)(x), layer(x)) for r in (2, 6, 16)]
    assert errors == sorted(errors, reverse=True)
    conv = nn.Conv2d(24, 36, 1)
    xc = torch.randn(2, 24, 5, 5)
    assert rel_error(TTLinear.from_layer(conv, 10_000)(xc), conv(xc)) < 1e-5


def test_balanced_factors_multiply_back() -> None:
    for n in (1, 13, 48, 168, 1280, 8192):
        factors = balanced_factors(n, 3)
        assert len(factors) == 3 and int(torch.tensor(factors).prod()) == n


def test_depthwise_conv_and_bad_ranks_are_rejected() -> None:
    depthwise = nn.Conv2d(8, 8, 3, groups=8)
    with pytest.raises(LayerNotFactorizableError, match="groups=8"):
        Tucker2Conv2d.from_layer(depthwise, 4)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            SVDLinear.from_layer(nn.Linear(4, 4), bad)
