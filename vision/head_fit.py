"""What a model learns after its backbone, fitted in numpy: one path for the plant and the station.

The plant's build (`vision.train`, PyTorch modules) and the station's build without torch
(`vision.station_build`, ONNX Runtime features) both fit the feature whitening, the per-position
Gaussian and the head choice's alignment ratio with these functions, so a product built on either side
from the same images gets the same numbers (tests/unit/vision/test_station_build.py proves the scores
agree to 1e-4). Everything is float64 here; callers store float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURE_NORMS: tuple[str, ...] = ("none", "channel", "block", "whiten")
# Whitening shrinks the covariance towards its mean variance by this share by default: a few thousand
# good patches estimate the smallest eigenvalues badly, and their inverse would blow noise up.
WHITEN_SHRINKAGE = 0.1
MIN_STD = 1e-6
# Share of the average variance added to every per-position covariance: 60-300 good images estimate the
# smallest eigenvalues of a 64-wide covariance badly, and their inverse would blow sensor noise up.
COVARIANCE_SHRINKAGE = 0.01


def fit_scaler(
    patches: np.ndarray,
    groups: Sequence[int],
    mode: str,
    color_weight: float,
    shrinkage: float = WHITEN_SHRINKAGE,
) -> tuple[np.ndarray, np.ndarray]:
    """(shift [C], transform) fitted on good patches [M, C]: `(f - shift) * transform` per channel, or
    `(f - shift) @ transform` [C, C] when whitening (ZCA on the deep channels, average spread kept).

    `groups` are the channel counts of the tapped blocks (their sum is C minus the trailing colour
    channels); colour channels get the typical deep-channel spread times `color_weight`."""
    if mode not in FEATURE_NORMS:
        raise ValueError(f"unknown feature normalisation {mode!r}; choose one of {FEATURE_NORMS}")
    if not 0.0 < shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be within (0, 1], got {shrinkage}")
    dim = patches.shape[1]
    deep = sum(groups)
    if deep > dim:
        raise ValueError(f"groups {tuple(groups)} do not fit patches of width {dim}")
    data = np.asarray(patches, dtype=np.float64)
    mean = data.mean(axis=0)
    std = np.maximum(data.std(axis=0, ddof=1), MIN_STD)
    scale = np.ones(dim)
    if mode == "channel":
        scale[:deep] = 1.0 / std[:deep]
    elif mode == "block":
        start = 0
        for count in groups:  # every block gets the same total variance, whatever its width
            total = np.sqrt(np.sum(std[start : start + count] ** 2))
            scale[start : start + count] = (count**0.5) / total
            start += count
    typical = float(np.sqrt(np.mean((std[:deep] * scale[:deep]) ** 2)))
    scale[deep:] = typical * color_weight / std[deep:]
    if mode != "whiten":
        return mean, scale
    matrix = np.diag(scale)
    centred = data[:, :deep] - mean[:deep]
    covariance = centred.T @ centred / max(1, len(centred) - 1)
    level = covariance.diagonal().mean()
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * level * np.eye(deep)
    values, vectors = np.linalg.eigh(shrunk)
    # ZCA: decorrelate, keep the original axes and the average spread (distances keep their units).
    matrix[:deep, :deep] = (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T * np.sqrt(level)
    return mean, matrix


def apply_scaler(patches: np.ndarray, shift: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The fitted scaling on rows [M, C] (float32 in, float32 out, as the deployed graph computes it)."""
    centred = patches - shift.astype(np.float32)
    if transform.ndim == 2:
        return np.asarray(centred @ transform.astype(np.float32), dtype=np.float32)
    return np.asarray(centred * transform.astype(np.float32), dtype=np.float32)


def gaussian_shape(dim: int, components: int, rank: int) -> tuple[int, int]:
    """(K, R) of a Gaussian head over a `dim`-wide embedding: the principal directions it keeps (at most
    `dim`) and each position's factor width (R = K when `rank` is 0 or not below K). The plant's model and
    the station's build size the head from here."""
    kept = min(components, dim)
    return kept, (rank if 0 < rank < kept else kept)


def fit_position_gaussian(
    patches: np.ndarray, components: int, shrinkage: float = COVARIANCE_SHRINKAGE, rank: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(basis [C, K], mean [P, K], factor [P, K, R]) from good patch embeddings [N, P, C] (N images,
    P positions in grid order): the K leading principal directions of all patches, then each position's
    mean and a factor L of its shrunk precision matrix, a patch's distance being |L^T (x - mean)|.

    `rank` 0 (or K): L is the Cholesky factor (precision = L L^T, R = K). Else each position keeps only
    its `rank` strongest precision directions, those in which its good patches vary least, where a
    defect stands out most (R = rank): a truncated eigendecomposition of the precision, the head's
    memory and time cut by K / rank. On real DEV parts 128 directions truncated to 32 per position beat
    64 whole ones at the same size (benchmarks/real/search.md, round 15)."""
    n, _, dim = patches.shape
    if n < 2:
        raise ValueError(f"a per-position covariance needs at least 2 good images, got {n}")
    if not 1 <= components <= dim:
        raise ValueError(f"components must be within [1, {dim}] (the embedding width), got {components}")
    if not 0 <= rank <= components:
        raise ValueError(f"rank must be within [0, {components}] (0 = all components), got {rank}")
    data = np.asarray(patches, dtype=np.float64)
    flat = data.reshape(-1, dim)
    centred = flat - flat.mean(axis=0)
    covariance = centred.T @ centred / max(1, len(flat) - 1)
    _, vectors = np.linalg.eigh(covariance)
    basis = vectors[:, -components:][:, ::-1]  # leading directions first
    projected = data @ basis  # [N, P, K]
    mean = projected.mean(axis=0)  # [P, K]
    residual = (projected - mean).transpose(1, 0, 2)  # [P, N, K]
    per_position = residual.transpose(0, 2, 1) @ residual / (n - 1)  # [P, K, K]
    level = np.maximum(np.diagonal(per_position, axis1=1, axis2=2).mean(axis=1), 1e-12)
    if rank and rank < components:
        # Shrunk a little less along the leading principal directions than along the later ones (a ramp
        # from 0.8 to 1.2 of the usual amount): the directions a position never saw vary in (outside the
        # span of its few images) all sit at the shrinkage floor, and the ramp keeps the leading ones of
        # them, the same ones on the plant and the station, instead of any the rounding picks.
        ramp = np.linspace(0.8, 1.2, components)
        per_position = per_position + shrinkage * level[:, None, None] * np.diag(ramp)
        position_variances, directions = np.linalg.eigh(per_position)  # ascending: least varying first
        factor = directions[:, :, :rank] / np.sqrt(position_variances[:, None, :rank])
        return np.ascontiguousarray(basis), mean, np.ascontiguousarray(factor)
    per_position = per_position + shrinkage * level[:, None, None] * np.eye(components)
    # precision = (L_c L_c^T)^-1 = L_c^-T L_c^-1, through the Cholesky factor of the covariance.
    inverse_factor = np.linalg.inv(np.linalg.cholesky(per_position))
    precision = inverse_factor.transpose(0, 2, 1) @ inverse_factor
    factor = np.linalg.cholesky(precision)
    return np.ascontiguousarray(basis), mean, factor


def alignment_ratio(patches: np.ndarray) -> float:
    """Variance across images at a position as a share of all variance, from good patches [images,
    positions, C]: near 0 when every image shows the same thing at each position, near 1 on a texture."""
    if patches.ndim != 3 or patches.shape[0] < 2:
        raise ValueError(f"need patches [images >= 2, positions, C], got shape {tuple(patches.shape)}")
    data = np.asarray(patches, dtype=np.float64)
    within = data.var(axis=0, ddof=1).mean()
    total = max(float(data.reshape(-1, data.shape[-1]).var(axis=0, ddof=1).mean()), 1e-12)
    return float(within / total)
