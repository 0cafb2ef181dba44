"""The map's upsampling and blur as matrix products equal the resize and the reflect-padded convolution
they replaced."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vision.models.smoothing import UpsampleBlur, bilinear_matrix, gaussian_kernel_1d, reflect_blur_matrix


@pytest.mark.parametrize("sigma", [1.0, 4.0, 8.0])
@pytest.mark.parametrize("shape", [(96, 70), (64, 64)])  # square maps share one matrix
def test_matrix_blur_equals_reflect_padded_convolution(sigma: float, shape: tuple[int, int]) -> None:
    x = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(0))
    kernel = gaussian_kernel_1d(sigma)
    radius = (kernel.numel() - 1) // 2
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    expected = F.conv2d(F.conv2d(padded, kernel.reshape(1, 1, 1, -1)), kernel.reshape(1, 1, -1, 1))
    assert torch.allclose(UpsampleBlur(sigma)(x), expected, atol=1e-6)


def test_blur_keeps_a_constant_map_and_refuses_a_map_narrower_than_its_radius() -> None:
    flat = torch.full((1, 1, 40, 40), 3.0)
    assert torch.allclose(UpsampleBlur(4.0)(flat), flat, atol=1e-5)
    assert torch.equal(UpsampleBlur(0.0)(flat), flat)
    with pytest.raises(ValueError, match="radius 24"):
        reflect_blur_matrix(20, gaussian_kernel_1d(8.0))


@pytest.mark.parametrize(
    ("grid", "size", "sigma"), [((32, 32), (256, 256), 8.0), ((20, 30), (224, 160), 4.0)]
)
def test_upsampling_and_blur_as_one_product_equal_a_resize_then_the_blur(grid, size, sigma) -> None:
    """The map's matrices fold bilinear upsampling into the blur: the same map as resizing first."""
    x = torch.rand(2, 1, *grid, generator=torch.Generator().manual_seed(3)) * 5
    resized = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    kernel = gaussian_kernel_1d(sigma)
    expected = reflect_blur_matrix(size[0], kernel) @ resized @ reflect_blur_matrix(size[1], kernel).T
    assert torch.allclose(UpsampleBlur(sigma)(x, size), expected, atol=1e-5)


def test_upsampling_alone_is_torchs_bilinear_resize() -> None:
    x = torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(4))
    expected = F.interpolate(x, size=(32, 20), mode="bilinear", align_corners=False)
    assert torch.allclose(UpsampleBlur(0.0)(x, (32, 20)), expected, atol=1e-6)
    assert torch.allclose(bilinear_matrix(32, 7).sum(dim=1), torch.ones(32))
