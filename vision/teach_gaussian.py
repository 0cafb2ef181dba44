"""Teach "this is normal" to a per-position Gaussian head (`vision.models.position_gaussian`), numpy only.

The ONNX file holds the head as three initializers: a basis [C, K] (the leading principal directions), each
position's mean [P, 1, K] and a factor L [P, K, R] of its precision matrix (its Cholesky factor, R = K, or
its R strongest directions); a patch's distance is |(x B - mean_p) L_p|. A false alarm is a patch that lies
outside its position's Gaussian. Teaching blends the taught patches into the Gaussian of the position where
they were seen: mean' = (1-t) mean + t m and cov' = (1-t) cov + t S + t(1-t) (m - mean)(m - mean)^T, with
m, S the taught patches' mean and spread there. The blend is done in the head's own whitened coordinates
z = L^T (x - mean), where the Gaussian is the identity, so a truncated head (R < K) is taught in the
directions it keeps. The share t is the smallest on a fixed ladder that brings every taught patch there
within `radius` (a normal patch's distance), so a position the mark never touched keeps its Gaussian byte
for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vision import onnx_proto

BASIS, MEAN, FACTOR = "position_gaussian.basis", "position_gaussian.mean", "position_gaussian.factor"
# The shares of the taught patches in a position's Gaussian that are tried, smallest first. Half at most:
# a position must stay mostly what the good parts showed.
SHARES = tuple(float(s) for s in np.geomspace(0.002, 0.5, 25))


@dataclass(frozen=True)
class GaussianLayout:
    """`patches` [P, 1, C]: the tensor the head reads (every patch's embedding, in grid order)."""

    patches: str
    basis: str = BASIS
    mean: str = MEAN
    factor: str = FACTOR


class ShiftedGaussianError(ValueError):
    """The head also matches neighbouring positions (`gaussian_shift` > 0): teaching it is not supported."""


def find_gaussian(model: Any) -> GaussianLayout | None:
    """The head's layout, or None when the model has no per-position Gaussian; ShiftedGaussianError for a
    head that reads its factors more than once (one path per tried shift)."""
    inits = {tensor.name for tensor in model.graph.initializer}
    if not {BASIS, MEAN, FACTOR} <= inits:
        return None
    readers = sum(1 for node in model.graph.node if node.op_type == "MatMul" and FACTOR in node.input)
    if readers > 1:
        raise ShiftedGaussianError(
            f"this Gaussian head tries {readers} shifted positions (model.gaussian_shift > 0), which "
            "teaching does not support yet: rebuild it with gaussian_shift 0 to teach it, or rebuild it "
            "with the new images"
        )
    producers = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type == "MatMul" and onnx_proto.behind_identities(node.input[1], producers) == BASIS:
            return GaussianLayout(patches=node.input[0])
    return None


@dataclass
class GaussianHead:
    """The head's numbers as float64: distances and the blend are computed here, outside the graph."""

    basis: np.ndarray  # [C, K]
    mean: np.ndarray  # [P, K]
    factor: np.ndarray  # [P, K, R], precision = L L^T (R = K: Cholesky; R < K: strongest directions)

    @classmethod
    def read(cls, model: Any, layout: GaussianLayout) -> GaussianHead:
        inits = {tensor.name: tensor for tensor in model.graph.initializer}

        def array(name: str) -> np.ndarray:
            return onnx_proto.tensor_to_array(inits[name]).astype(np.float64)

        return cls(array(layout.basis), array(layout.mean)[:, 0, :], array(layout.factor))

    def whitened(self, patches: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """(x B - mean_p) L_p [n, K] of patches [n, C] at `positions` [n] (default: patch i at position i)."""
        where = np.arange(len(patches)) if positions is None else positions
        centred = patches.astype(np.float64) @ self.basis - self.mean[where]
        return np.asarray(np.einsum("nk,nkj->nj", centred, self.factor[where]))

    def distances(self, patches: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Mahalanobis distance of patches [n, C] at `positions` (the length of `whitened`)."""
        whitened = self.whitened(patches, positions)
        return np.asarray(np.sqrt((whitened * whitened).sum(axis=1)))

    def write(self, model: Any, layout: GaussianLayout) -> None:
        inits = {tensor.name: tensor for tensor in model.graph.initializer}
        onnx_proto.set_tensor(inits[layout.mean], self.mean[:, None, :].astype(np.float32))
        onnx_proto.set_tensor(inits[layout.factor], self.factor.astype(np.float32))


@dataclass(frozen=True)
class BlendOutcome:
    head: GaussianHead
    positions_taught: int  # positions whose Gaussian changed
    uncovered_patches: int  # taught patches still farther than the radius at the largest share


def blend_taught_patches(
    head: GaussianHead, patches: np.ndarray, positions: np.ndarray, radius: float
) -> BlendOutcome:
    """A copy of `head` with the taught patches [n, C], seen at `positions` [n], blended into their
    positions' Gaussians (see the module docstring)."""
    mean, factor = head.mean.copy(), head.factor.copy()
    projected = patches.astype(np.float64) @ head.basis
    taught = uncovered = 0
    for position in np.unique(positions):
        samples = projected[positions == position]
        blended = _blend(head.mean[position], head.factor[position], samples, radius)
        if blended is None:
            continue
        mean[position], factor[position], missed = blended
        taught += 1
        uncovered += missed
    return BlendOutcome(GaussianHead(head.basis, mean, factor), taught, uncovered)


def _blend(
    mean: np.ndarray, factor: np.ndarray, samples: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(mean', factor', samples still too far) at the smallest share that covers them; None: all near.

    In z = L^T (x - mean) the position's Gaussian is the identity; the blended covariance there, C', gives
    the new factor L G with G G^T = C'^-1 (then made triangular again when L was a Cholesky factor)."""
    if _farthest(mean, factor, samples) <= radius:
        return None
    whitened = (samples - mean) @ factor  # [n, R]
    rank = factor.shape[1]
    centre = whitened.mean(axis=0)
    spread = np.cov(whitened.T, bias=True).reshape(rank, rank) if len(samples) > 1 else np.zeros((rank, rank))
    offset = centre[:, None]
    towards = samples.mean(axis=0) - mean
    best: tuple[np.ndarray, np.ndarray] | None = None
    for share in SHARES:
        new_mean = mean + share * towards
        new_cov = (1.0 - share) * np.eye(rank) + share * spread + share * (1.0 - share) * (offset @ offset.T)
        new_factor = factor @ np.linalg.cholesky(np.linalg.inv(new_cov))
        if factor.shape[0] == rank:  # a Cholesky factor stays one (int8 files store its triangle)
            new_factor = np.linalg.cholesky(new_factor @ new_factor.T)
        best = (new_mean, new_factor)
        if _farthest(new_mean, new_factor, samples) <= radius:
            return new_mean, new_factor, 0
    assert best is not None
    missed = _distances(best[0], best[1], samples) > radius
    return best[0], best[1], int(missed.sum())


def _distances(mean: np.ndarray, factor: np.ndarray, samples: np.ndarray) -> np.ndarray:
    whitened = (samples - mean) @ factor
    return np.asarray(np.sqrt((whitened * whitened).sum(axis=1)))


def _farthest(mean: np.ndarray, factor: np.ndarray, samples: np.ndarray) -> float:
    return float(_distances(mean, factor, samples).max())
