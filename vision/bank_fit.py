"""The memory-bank head fitted in numpy: one path for the plant's build and the station's.

What `vision.models.memory_bank.MemoryBank` and `vision.models.position_norm.PositionNormalizer` hold is
fitted here from good patch embeddings: the bank (a greedy k-center coreset of the patches, in selection
order so any prefix is a coarser coreset), the per-position standardisation of the distance map and the
coarse search's correction line. The two last are learned from good patches the bank has not seen:
distances of the bank's own images are biased low exactly where the coreset sampled densely, so the
images are split and a probe bank from the first half scores the second half. The plant's PyTorch build
(`vision.train.fit_head`) and the station's (`vision.station_build`) both call `fit_bank_head`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vision.head_fit import alignment_ratio

# Below this many good images per-position spreads are guesses; the map is then left unnormalised.
MIN_POSITION_STAT_IMAGES = 8
# Floor on a position's spread, relative to the median spread: a position that happened to vary little
# in a few good images must not amplify sensor noise without bound.
MIN_RELATIVE_SPREAD = 0.5
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def greedy_coreset(
    features: np.ndarray,
    size: int,
    projection_dim: int = 64,
    max_candidates: int = 60_000,
    seed: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Indices of `size` rows of `features` [N, C] chosen farthest-first (k-center greedy).

    Selection runs on a random projection (Johnson-Lindenstrauss) so its cost does not grow with the
    embedding width, and on at most `max_candidates` rows (a random subset) so it stays about linear in
    the bank size; the caller takes the chosen rows at full width."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, C] matrix, got shape {tuple(features.shape)}")
    if size <= 0:
        raise ValueError(f"coreset size must be positive, got {size}")
    count, dim = features.shape
    if count <= size:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    candidates = np.arange(count)
    if count > max(max_candidates, size):
        candidates = rng.permutation(count)[: max(max_candidates, size)]
    points = np.asarray(features[candidates], dtype=np.float32)
    if dim > projection_dim:
        projection = rng.standard_normal((dim, projection_dim)).astype(np.float32) / np.float32(
            projection_dim**0.5
        )
        points = points @ projection
    squared = (points * points).sum(axis=1)
    chosen = int(rng.integers(len(candidates)))
    selected = np.empty(size, dtype=np.int64)
    selected[0] = chosen
    nearest = np.full(len(points), np.inf, dtype=np.float32)
    for step in range(1, size):
        distance = squared - 2.0 * (points @ points[chosen]) + squared[chosen]
        np.minimum(nearest, distance, out=nearest)
        chosen = int(np.argmax(nearest))
        selected[step] = chosen
        if progress is not None and step % 256 == 0:
            progress("coreset", step, size)
    return np.asarray(candidates[selected])


def coreset_bank(patches: np.ndarray, size: int, seed: int, progress: Progress | None = None) -> np.ndarray:
    """`size` bank rows [size, C] chosen from `patches` [N, C] by the greedy coreset (rows repeated when
    there are fewer patches than slots: a duplicate never changes a nearest distance)."""
    bank = patches[greedy_coreset(patches, size, seed=seed, progress=progress)]
    if bank.shape[0] < size:
        bank = bank[np.arange(size) % bank.shape[0]]
    return np.ascontiguousarray(bank, dtype=np.float32)


def bank_bias(bank: np.ndarray) -> np.ndarray:
    """Each entry's -|m|^2 / 2: with it `|f - m|^2 = |f|^2 - 2 (f.m - |m|^2/2)` is one matrix product."""
    return np.asarray(-0.5 * (bank * bank).sum(axis=1), dtype=np.float32)


def nearest_distances(patches: np.ndarray, bank: np.ndarray, knn: int, rows: int | None = None) -> np.ndarray:
    """[..., C] patches -> [...] mean distance to their `knn` nearest of the bank's first `rows` entries
    (all by default), computed as the deployed graph does (float32, through the bias)."""
    entries = bank if rows is None else bank[:rows]
    similarity = patches @ entries.T + bank_bias(entries)
    norms = (patches * patches).sum(axis=-1)
    if knn == 1:
        return np.asarray(np.sqrt(np.maximum(norms - 2.0 * similarity.max(axis=-1), 0.0)))
    nearest = -np.partition(-similarity, knn - 1, axis=-1)[..., :knn]
    return np.asarray(np.sqrt(np.maximum(norms[..., None] - 2.0 * nearest, 0.0)).mean(axis=-1))


def alignment_strength(patches: np.ndarray, aligned: float = 0.7, stationary: float = 0.9) -> float:
    """How texture-like a product is, from good patches [images, positions, C]: 0 aligned part, 1 texture.

    Only textures get standardised: on aligned parts the busiest positions are the components themselves,
    and damping them would hide exactly the missing-component defects."""
    ratio = alignment_ratio(patches)
    return min(1.0, max(0.0, (ratio - aligned) / (stationary - aligned)))


def position_statistics(mean: np.ndarray, std: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) [h, w] that map each position's good-patch distances (mean, std [h, w]) onto the
    typical spread and level, blended from the identity (`strength` 0) to full standardisation (1)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError("position statistics must be finite")
    mean, std = _smooth(mean.astype(np.float32)), _smooth(std.astype(np.float32))
    typical_mean, typical_std = _lower_median(mean), max(_lower_median(std), np.float32(1e-6))
    std = np.maximum(std, np.float32(MIN_RELATIVE_SPREAD) * typical_std)
    gain = typical_std / std
    offset = typical_mean - mean * gain
    return (1.0 + strength * (gain - 1.0)).astype(np.float32), (strength * offset).astype(np.float32)


def coarse_line(coarse: np.ndarray, exact: np.ndarray) -> tuple[float, float] | None:
    """(scale, offset) of `exact ~ coarse * scale + offset` by least squares on good patches the bank has
    not seen; None when there is nothing to fit (the coarse distance, an upper bound, is kept as it is)."""
    x, y = coarse.ravel().astype(np.float64), exact.ravel().astype(np.float64)
    spread = x.var()
    if x.size < 2 or not spread > 0:
        return None
    scale = max(0.0, float(((x - x.mean()) * (y - y.mean())).mean() / spread))
    scale32 = float(np.float32(scale))
    return scale32, float(y.mean() - scale32 * x.mean())


@dataclass(frozen=True)
class HeldOut:
    """The split the held-out statistics use: a probe bank from the first half of the images, and the
    patches [images, positions, C] of the second half it scores."""

    probe_bank: np.ndarray
    held: np.ndarray


@dataclass(frozen=True)
class BankHead:
    bank: np.ndarray  # [size, C] in coreset order
    gain: np.ndarray | None  # [h, w] per-position map gain; None: the map is left unnormalised
    offset: np.ndarray | None
    coarse: tuple[float, float] | None  # the coarse search's (scale, offset); None: identity
    held_out: HeldOut | None  # None when no held-out statistics were fitted


def fit_bank_head(
    patches: np.ndarray,
    size: int,
    knn: int,
    coarse_entries: int,
    grid: tuple[int, int] | None,
    position_strength: float | None,
    seed: int,
    progress: Progress | None = None,
) -> BankHead:
    """The bank head from good patch embeddings [images, positions, C] (already scaled). `coarse_entries`
    0: exact search, no line; `grid` (h, w) of the positions, None: no per-position statistics;
    `position_strength` None: decided from how texture-like the patches are."""
    images, positions, dim = patches.shape
    rows = patches.reshape(-1, dim)
    bank = coreset_bank(rows, size, seed, progress)
    strength = 0.0
    if grid is not None:
        strength = alignment_strength(patches) if position_strength is None else position_strength
    # strength 0: an aligned part keeps the raw map (no statistics, no extra coreset).
    if images < MIN_POSITION_STAT_IMAGES or not (strength > 0.0 or coarse_entries):
        return BankHead(bank, None, None, None, None)
    half = images // 2
    probe = coreset_bank(patches[:half].reshape(-1, dim), size, seed + 1, progress)
    held = np.ascontiguousarray(patches[half:], dtype=np.float32)
    exact = nearest_distances(held, probe, knn)  # [images - half, positions]
    gain = offset = None
    if strength > 0.0:
        assert grid is not None and grid[0] * grid[1] == positions
        per_position = exact.reshape(len(exact), *grid)
        gain, offset = position_statistics(
            per_position.mean(axis=0), per_position.std(axis=0, ddof=1), strength
        )
    line = (
        coarse_line(nearest_distances(held, probe, knn, rows=coarse_entries), exact)
        if coarse_entries
        else None
    )
    return BankHead(bank, gain, offset, line, HeldOut(probe, held))


def _smooth(grid: np.ndarray) -> np.ndarray:
    """3x3 average of a [h, w] grid over the cells that exist (a light denoise of per-position estimates)."""
    padded = np.pad(grid, 1)
    ones = np.pad(np.ones_like(grid), 1)
    h, w = grid.shape
    total = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    count = sum(ones[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return np.asarray(total / count, dtype=np.float32)


def _lower_median(values: np.ndarray) -> np.float32:
    """The lower of the two middle values for an even count (what torch.median returns)."""
    flat = np.sort(values.ravel())
    return np.float32(flat[(flat.size - 1) // 2])
