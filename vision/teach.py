"""Teach a deployed model "this is normal" on the edge box: ONNX Runtime and numpy only, no retraining.

A PatchCore-style model scores a patch by its distance to the nearest entry of its memory bank, which the
ONNX file holds as a `MatMul` (weight = bank, transposed; or a chain of factors after compression) plus an
`Add` of -|m|^2/2 and a `ReduceMax` (see `vision.models.memory_bank`). Teaching a false alarm as normal is
therefore an edit of that one layer: the patch embeddings of the taught images that lie farther from the
bank than normal patches do are appended to it (a greedy k-centre cover, so a recurring mark costs a few
entries, not one per image), the bias is extended, the threshold is recalibrated on held-back good images,
and the file keeps the `vision.export` contract with a new version. Everything else is byte for byte the
parent model, so a taught model is as fast as its parent plus the few appended entries.

A per-position Gaussian head has no bank: its taught patches are blended into the Gaussians of the positions
where they were seen (`vision.teach_gaussian`); the file keeps its size and speed exactly.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from pydantic import BaseModel

from vision import onnx_proto
from vision.calibration import threshold_from_good_scores
from vision.export import (
    INPUT_NAME,
    META_INPUT_SIZE,
    META_MODEL_VERSION,
    META_QUANTIZATION,
    META_THRESHOLD,
    OUTPUT_NAMES,
)
from vision.inspector import resize_to_input, validate_frame
from vision.metrics import image_auroc
from vision.ort_session import cpu_session
from vision.teach_gaussian import (
    GaussianHead,
    GaussianLayout,
    ShiftedGaussianError,
    blend_taught_patches,
    find_gaussian,
)

META_TAUGHT_EXAMPLES = "edgeinspect.taught_examples"
META_TAUGHT_SHA256 = "edgeinspect.taught_examples_sha256"
META_TAUGHT_ENTRIES = "edgeinspect.taught_bank_entries"
META_TAUGHT_FROM = "edgeinspect.taught_from_version"
META_BANK_SIZE = "edgeinspect.memory_bank_size"
META_CALIBRATION = "edgeinspect.calibration"
MIN_GOOD_IMAGES = 2  # below this there is no "normal" distance level to compare taught patches with

ProgressFn = Callable[[float, str], None]


class TeachError(ValueError):
    """Teaching cannot proceed (unsupported model, too little data); the message says why."""


class BeforeAfter(BaseModel):
    before: float
    after: float


class TeachReport(BaseModel):
    """What teaching changed, measured before the new model is activated (None: not measurable, see notes)."""

    parent_version: str
    model_version: str
    taught_examples: int
    head: str = "bank"  # bank: entries were appended; gaussian: position Gaussians were widened
    bank_entries_added: int
    bank_size_before: int
    bank_size_after: int
    positions_taught: int = 0  # head=gaussian: positions whose Gaussian changed
    uncovered_patches: int
    good_images_calibration: int
    good_images_evaluation: int
    confirmed_defects: int
    threshold: BeforeAfter
    threshold_recalibrated: bool
    false_reject_rate_good: BeforeAfter | None
    false_reject_rate_taught: BeforeAfter
    defect_auroc: BeforeAfter | None
    defect_detection_rate: BeforeAfter | None
    notes: list[str]


@dataclass(frozen=True)
class TeachOptions:
    target_false_reject_rate: float = 0.01
    # Good images needed to split them into a calibration half and an evaluation half.
    min_good_images: int = 20
    max_new_entries: int = 2048
    # Taught patches farther from the bank than this quantile of good patches are "new" ...
    select_quantile: float = 0.999
    # ... and are covered until each is within this quantile of good-patch distance of an entry.
    cover_quantile: float = 0.9
    # Taught images are also read shifted by this many input pixels in 8 directions, and rotated by
    # +- this many degrees (0: off): the next part shows the same mark a little moved.
    augment_shift_px: int = 4
    augment_rotation_deg: float = 0.0
    threads: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.target_false_reject_rate < 1.0:
            raise ValueError(
                f"target_false_reject_rate must be in (0, 1), got {self.target_false_reject_rate}"
            )
        if not 0.0 < self.cover_quantile <= self.select_quantile < 1.0:
            raise ValueError("need 0 < cover_quantile <= select_quantile < 1")
        if self.max_new_entries < 1 or self.threads < 1 or self.min_good_images < MIN_GOOD_IMAGES:
            raise ValueError(
                f"max_new_entries and threads must be >= 1, min_good_images >= {MIN_GOOD_IMAGES}"
            )
        if not 0 <= self.augment_shift_px <= 16 or not 0.0 <= self.augment_rotation_deg <= 30.0:
            raise ValueError(
                f"augment_shift_px must be within [0, 16] and augment_rotation_deg within [0, 30], got "
                f"{self.augment_shift_px} and {self.augment_rotation_deg}"
            )


@dataclass(frozen=True)
class TeachResult:
    model_bytes: bytes
    report: TeachReport


# ---------------------------------------------------------------------------------------- the bank layer


@dataclass(frozen=True)
class BankLayout:
    """Where the memory bank sits in the graph: `patches` [1, P, C] -> MatMul(factors...) -> Add(bias)
    -> ReduceMax = `best` [1, P] (the highest similarity of each patch), or TopK (k-NN distance, k > 1)
    = `best` [1, P, k] sorted, the highest first. Widening the bank changes neither reader.

    A coarse-to-fine model (`vision.models.memory_bank`) has a second, smaller bank-like layer (a copy of
    the bank's first rows, which teaching leaves alone: taught entries are appended at the end) that sees
    every patch, while the whole bank sees only the refined ones; `grid_patches` is the tensor holding
    every patch embedding either way. A factorized bank's coarse copy shares the leading factors with the
    whole bank (`coarse_factors` names its chain)."""

    patches: str
    best: str
    factors: tuple[str, ...]
    bias: str
    bank_outputs: tuple[str, ...]  # tensors whose shape teaching changes (the factors' products)
    grid_patches: str = ""  # every patch [1, P, C]; "" = `patches`
    coarse_factors: tuple[str, ...] = ()  # the coarse copy's chain, () when there is none

    @property
    def all_patches(self) -> str:
        return self.grid_patches or self.patches


def _initializers(model: Any) -> dict[str, Any]:
    return {tensor.name: tensor for tensor in model.graph.initializer}


# Node-name parts of the matrices teaching reads and rewrites (an int8 file stores them as int8 weights).
TAUGHT_MATRICES = ("memory_bank", "position_gaussian")
BANK_READERS = ("ReduceMax", "TopK")  # what reads the similarities: k = 1, or the k nearest entries


@dataclass(frozen=True)
class _NotExtendable:
    """Why one ReduceMax/TopK is not a bank this module can extend; `bank` when it does read a per-entry
    bias Add (a memory bank in a form teaching cannot grow), not merely some other TopK."""

    reason: str
    bank: bool


def _trace_bank(reader: Any, producers: dict[str, Any], inits: dict[str, Any]) -> BankLayout | _NotExtendable:
    """The layout behind one ReduceMax/TopK, or why it is not a bank this module can extend."""
    add = producers.get(reader.input[0])
    if add is None or add.op_type != "Add":
        found = add.op_type if add else "a graph input"
        return _NotExtendable(f"its {reader.op_type} reads {found}, not the bias Add", bank=False)
    bias_names = [name for name in add.input if name in inits and len(inits[name].dims) == 1]
    others = [name for name in add.input if name not in bias_names]
    if len(bias_names) != 1 or len(others) != 1:
        return _NotExtendable("the bias Add does not add one per-entry bias vector", bank=False)
    factors: list[str] = []
    outputs = [add.output[0]]
    tensor = others[0]
    node = producers.get(tensor)
    while node is not None and node.op_type == "MatMul":
        factor = onnx_proto.behind_identities(node.input[1], producers)
        if factor not in inits:
            break
        if len(inits[factor].dims) != 2:
            return _NotExtendable(f"bank factor {factor!r} is not a matrix", bank=True)
        factors.insert(0, factor)
        outputs.append(tensor)
        tensor = node.input[0]
        node = producers.get(tensor)
    if not factors:
        found = node.op_type if node is not None else "a graph input"
        return _NotExtendable(
            f"the bias Add reads {found}, not MatMul factors (a tensor-train or quantized bank cannot be "
            "extended; teach the dense or SVD-compressed model)",
            bank=True,
        )
    dims = [tuple(int(d) for d in inits[name].dims) for name in factors]
    for (_, inner), (rows, _) in itertools.pairwise(dims):
        if inner != rows:
            return _NotExtendable(f"bank factors do not chain: {dims}", bank=True)
    if dims[-1][1] != int(inits[bias_names[0]].dims[0]):
        return _NotExtendable(
            f"bank size {dims[-1][1]} differs from its bias length {int(inits[bias_names[0]].dims[0])}",
            bank=True,
        )
    return BankLayout(tensor, reader.output[0], tuple(factors), bias_names[0], tuple(outputs))


def find_bank(model: Any) -> BankLayout:
    """Locate the memory bank; TeachError naming why when the graph has none this module can extend
    (or has one it cannot: then extending another bank-like layer would change the wrong thing)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    inits = _initializers(model)
    found: list[BankLayout] = []
    reasons: list[str] = []
    blocked: list[str] = []
    for node in model.graph.node:
        if node.op_type not in BANK_READERS:
            continue
        traced = _trace_bank(node, producers, inits)
        if isinstance(traced, BankLayout):
            found.append(traced)
        elif "memory_bank" in node.name:
            (blocked if traced.bank else reasons).append(traced.reason)
    named = [layout for layout in found if "memory_bank" in layout.best]
    if blocked:
        found, reasons = [], blocked
    elif len(found) == 1 or len(named) == 1:
        return named[0] if len(named) == 1 else found[0]
    elif len(named) == 2:  # coarse-to-fine: the whole bank, and the coarse copy of its first rows
        coarse, whole = sorted(named, key=lambda layout: int(inits[layout.bias].dims[0]))
        if int(inits[coarse.bias].dims[0]) < int(inits[whole.bias].dims[0]):
            return replace(
                whole,
                grid_patches=coarse.patches,
                coarse_factors=coarse.factors,
                bank_outputs=whole.bank_outputs + coarse.bank_outputs,
            )
    if len(found) > 1:
        raise TeachError(f"the model has {len(found)} bank-like layers; cannot tell which is the memory bank")
    if any("position_gaussian" in name for name in inits):
        raise TeachError(
            "this model's head is a per-position Gaussian (model.head: gaussian): it has no memory bank "
            "(teach_normal widens its position Gaussians instead)"
        )
    detail = f": {reasons[0]}" if reasons else " (no MatMul + bias Add + ReduceMax or TopK)"
    raise TeachError(
        f"no extendable memory bank in the model{detail}; teach a model file as `edgeinspect train` or "
        "`compress` exports it (not an ONNX Runtime-optimized or int8 copy)"
    )


def _bank_to_teach(model: Any, meta: dict[str, str]) -> BankLayout:
    """`find_bank`, with the reason an int8 file's bank cannot be taught."""
    try:
        return find_bank(model)
    except TeachError as exc:
        if META_QUANTIZATION not in meta:
            raise
        raise TeachError(
            "this is an int8 model file (model.int8): the quantizer fused its memory bank into a Gemm "
            "between reshapes, which teaching cannot extend; teach the float model and quantize it again, "
            "or turn model.int8 off for this product (an int8 Gaussian head is taught as it is)"
        ) from exc


# --------------------------------------------------------------------------------------- ONNX sessions


def _as_input(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """A BGR frame as the model's [1, size, size, 3] RGB input, exactly as `Inspector.inspect` feeds it."""
    validate_frame(image_bgr)
    rgb = cv2.cvtColor(resize_to_input(image_bgr, size), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb[None])


View = tuple[int, int, float]  # shift x, shift y (input pixels), rotation (degrees)


def _views(shift_px: int, rotate_deg: float) -> list[View]:
    """The unchanged input first, then 8 shifts by `shift_px` and 2 rotations by +-`rotate_deg`."""
    views: list[View] = [(0, 0, 0.0)]
    if shift_px:
        steps = (-shift_px, 0, shift_px)
        views += [(dx, dy, 0.0) for dx in steps for dy in steps if dx or dy]
    if rotate_deg:
        views += [(0, 0, -rotate_deg), (0, 0, rotate_deg)]
    return views


def _moved(batch: np.ndarray, view: View) -> np.ndarray:
    """The [1, S, S, 3] input shifted and rotated about its centre, borders reflected: the same mark seen
    at another offset to the patch grid and another small angle, as the next part will show it."""
    dx, dy, angle = view
    if dx == dy == 0 and angle == 0.0:
        return batch
    size = batch.shape[1]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    moved = cv2.warpAffine(batch[0], matrix, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(moved[None])


def _grown(flags: np.ndarray) -> np.ndarray:
    """Patch flags [P] of a square grid, grown by one patch in every direction (a moved view of a flagged
    mark lands at most one patch away)."""
    side = round(len(flags) ** 0.5)
    if side * side != len(flags):
        return np.ones(len(flags), dtype=bool)
    grid = flags.reshape(side, side).astype(np.uint8)
    return cv2.dilate(grid, np.ones((3, 3), np.uint8)).astype(bool).reshape(-1)


@dataclass
class _Probe:
    """The parent model with every patch embedding (`patches`, the tensor its head reads) exposed as an
    extra output, and the head's distance of each patch, computed outside the graph."""

    session: ort.InferenceSession
    patches: str
    size: int
    distances_of: Callable[[np.ndarray], np.ndarray]

    def run(self, batch: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(image score, patch embeddings [P, C], distance of each patch under the head [P]) of one input."""
        score, patches = self.session.run([OUTPUT_NAMES[1], self.patches], {INPUT_NAME: batch})
        flat = patches.reshape(-1, patches.shape[-1]).astype(np.float32)
        return float(score.reshape(-1)[0]), flat, self.distances_of(flat)


def bank_distances(factors: Sequence[np.ndarray], bias: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Distance of each patch [P, C] to the nearest entry of a bank held as `factors` and `bias`."""
    similarity = patches
    for factor in factors:
        similarity = similarity @ factor
    best = (similarity + bias).max(axis=1)
    squared = (patches * patches).sum(axis=1) - 2.0 * best
    return np.asarray(np.sqrt(np.clip(squared, 0.0, None)))


def _scores(
    session: ort.InferenceSession, images: Sequence[np.ndarray], size: int, tick: Callable[[], None]
) -> np.ndarray:
    values = []
    for image in images:
        values.append(
            float(session.run([OUTPUT_NAMES[1]], {INPUT_NAME: _as_input(image, size)})[0].reshape(-1)[0])
        )
        tick()
    return np.asarray(values, dtype=np.float64)


# ------------------------------------------------------------------------------------- choosing entries


def cover_new_patches(
    candidates: np.ndarray, distances: np.ndarray, radius: float, limit: int
) -> tuple[np.ndarray, int]:
    """Greedy k-centre: take the farthest uncovered patch until every candidate is within `radius` of a
    taken one (or of the bank: `distances`) or `limit` are taken. Returns (taken [n, C], still farther)."""
    remaining = distances.astype(np.float64).copy()
    taken: list[int] = []
    while len(taken) < limit and len(remaining):
        index = int(np.argmax(remaining))
        if remaining[index] <= radius:
            break
        taken.append(index)
        remaining = np.minimum(remaining, np.linalg.norm(candidates - candidates[index], axis=1))
    return candidates[taken], int((remaining > radius).sum())


@dataclass(frozen=True)
class ExtendedBank:
    factors: list[np.ndarray]  # the new factors, same count as before
    bias: np.ndarray
    entries: np.ndarray  # the appended entries as the layer holds them [n, C]
    added_rank: int  # directions added to a factorized bank's space


def extend_bank(
    factors: list[np.ndarray], bias: np.ndarray, new: np.ndarray, energy: float = 0.999
) -> ExtendedBank:
    """Append the patches `new` [n, C] to a bank held as `factors` (x @ F1 @ ... @ FL + bias).

    Dense (one factor): new columns are the patches. Factorized: the earlier factors span a subspace that
    a taught patch may leave (a label's patches hold directions the normal bank never needed), and an
    entry outside it cannot be stored by appending columns to the last factor alone. So the span is
    widened by the directions of the new patches' residuals (`energy` of it): F1 gets those columns, any
    middle factor an identity block, the last factor zero rows for the old entries, and then the new
    entries' columns. Old entries and their distances are exactly as before."""
    if not len(new):
        return ExtendedBank(factors, bias, np.zeros((0, new.shape[1])), 0)
    if len(factors) == 1:
        entries = new.astype(np.float64)
        columns = entries.T
        widened = factors
        added = 0
    else:
        widened, added = _widen(factors, new, energy)
        prefix = widened[0].astype(np.float64)
        for factor in widened[1:-1]:
            prefix = prefix @ factor.astype(np.float64)
        columns = np.linalg.pinv(prefix) @ new.T.astype(np.float64)
        entries = (prefix @ columns).T
    last = np.concatenate([widened[-1], columns.astype(np.float32)], axis=1)
    new_bias = (-0.5 * (entries * entries).sum(axis=1)).astype(np.float32)
    return ExtendedBank(
        [*widened[:-1], last], np.concatenate([bias, new_bias]), entries.astype(np.float32), added
    )


def _widen(factors: list[np.ndarray], new: np.ndarray, energy: float) -> tuple[list[np.ndarray], int]:
    """Factors whose span also holds the main directions of `new`'s residuals outside the current span."""
    prefix = factors[0].astype(np.float64)
    for factor in factors[1:-1]:
        prefix = prefix @ factor.astype(np.float64)
    basis, _ = np.linalg.qr(prefix)
    residual = new.astype(np.float64) - (new @ basis) @ basis.T
    _, singular, directions = np.linalg.svd(residual, full_matrices=False)
    share = np.cumsum(singular**2) / max(float((singular**2).sum()), 1e-30)
    count = int(np.searchsorted(share, energy) + 1) if singular.size and singular[0] > 1e-6 else 0
    count = min(count, prefix.shape[0] - prefix.shape[1])
    if count <= 0:
        return factors, 0
    extra = directions[:count].T.astype(np.float32)  # [C, q], orthonormal, orthogonal to the span
    widened = [np.concatenate([factors[0], extra], axis=1)]
    for factor in factors[1:-1]:
        rows, cols = factor.shape
        block = np.zeros((rows + count, cols + count), np.float32)
        block[:rows, :cols] = factor
        block[rows:, cols:] = np.eye(count, dtype=np.float32)
        widened.append(block)
    last = factors[-1]
    widened.append(np.concatenate([last, np.zeros((count, last.shape[1]), np.float32)], axis=0))
    return widened, count


def _still_far(candidates: np.ndarray, distances: np.ndarray, entries: np.ndarray, radius: float) -> int:
    """Candidates farther than `radius` from the bank and from every entry the layer really holds."""
    if not len(candidates):
        return 0
    nearest = distances.astype(np.float64).copy()
    entries64 = entries.astype(np.float64)
    squared_entries = (entries64 * entries64).sum(axis=1)
    for start in range(0, len(candidates), 2048):
        chunk = candidates[start : start + 2048].astype(np.float64)
        squared = (chunk * chunk).sum(axis=1)[:, None] - 2.0 * chunk @ entries64.T + squared_entries[None]
        if squared.shape[1]:
            best = np.sqrt(np.clip(squared.min(axis=1), 0.0, None))
            nearest[start : start + 2048] = np.minimum(nearest[start : start + 2048], best)
    return int((nearest > radius).sum())


# ------------------------------------------------------------------------------------------- the steps


@dataclass
class _Progress:
    total: int
    callback: ProgressFn | None
    done: int = 0
    stage: str = ""

    def at(self, stage: str) -> None:
        self.stage = stage
        self._report()

    def tick(self) -> None:
        self.done += 1
        self._report()

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(min(1.0, self.done / max(1, self.total)), self.stage)


def _taught_sha256(previous: str, images: Sequence[np.ndarray]) -> str:
    """Identity of everything taught so far: the parent's taught hash plus these images' pixels."""
    digest = hashlib.sha256(previous.encode())
    for image in images:
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _rate(scores: np.ndarray, threshold: float) -> float:
    return float((scores >= threshold).mean())


def _before_after(before: float, after: float) -> BeforeAfter:
    return BeforeAfter(before=round(before, 6), after=round(after, 6))


def _extended_model(parent: Any, layout: BankLayout, extended: ExtendedBank) -> Any:
    """A copy of `parent` whose bank factors and bias are `extended`'s."""
    model = onnx_proto.copy_model(parent)
    inits = _initializers(model)
    for name, factor in zip(layout.factors, extended.factors, strict=True):
        onnx_proto.set_tensor(inits[name], factor)
    onnx_proto.set_tensor(inits[layout.bias], extended.bias)
    _pad_coarse_copy(inits, layout)
    stale = [info for info in model.graph.value_info if info.name in layout.bank_outputs]
    for info in stale:  # their recorded shapes name the old sizes; ONNX Runtime infers them again
        model.graph.value_info.remove(info)
    return model


def _pad_coarse_copy(inits: dict[str, Any], layout: BankLayout) -> None:
    """Keep a factorized bank's coarse copy chained after its shared leading factors were widened: the
    copy's own factor gets zero rows for the added directions (its entries, all old ones, have no
    component along them, as `extend_bank` gives the old entries of the whole bank)."""
    for leading, own in itertools.pairwise(layout.coarse_factors):
        if own in layout.factors:
            continue
        width, factor = int(inits[leading].dims[1]), onnx_proto.tensor_to_array(inits[own])
        if factor.shape[0] < width:
            padding = np.zeros((width - factor.shape[0], factor.shape[1]), dtype=factor.dtype)
            onnx_proto.set_tensor(inits[own], np.concatenate([factor, padding]))


def teach_normal(
    model_bytes: bytes,
    taught: Sequence[np.ndarray],
    good: Sequence[np.ndarray],
    defects: Sequence[np.ndarray] = (),
    options: TeachOptions | None = None,
    progress: ProgressFn | None = None,
) -> TeachResult:
    """Append the taught (BGR) images' unusual patches to the bank; recalibrate; measure before/after.

    `good` are held-back good images (never taught): with at least `options.min_good_images` they are
    split alternately into a calibration half (new threshold) and an evaluation half (false-reject rates);
    with fewer the parent's threshold is kept and the good-image rate is reported as not measured.
    `defects` (confirmed defects, optional) give the AUROC and detection rate before and after."""
    options = options or TeachOptions()
    if not taught:
        raise TeachError("nothing to teach: no images given")
    if len(good) < MIN_GOOD_IMAGES:
        raise TeachError(
            f"need at least {MIN_GOOD_IMAGES} held-back good images to tell a taught image's unusual "
            f"patches from normal ones, got {len(good)}"
        )
    parent, gaussian, meta, size, threshold_before = open_parent(model_bytes)
    layout = _bank_to_teach(parent, meta) if gaussian is None else None
    notes: list[str] = []
    splitting = len(good) >= options.min_good_images
    calibration = list(good[0::2]) if splitting else list(good)
    evaluation = list(good[1::2]) if splitting else []
    views = _views(options.augment_shift_px, options.augment_rotation_deg)
    steps = 2 * (len(good) + len(defects)) + len(taught) * (1 + len(views)) + 1
    tracker = _Progress(steps, progress)

    probe = _probe(parent, layout, gaussian, size, options.threads)
    tracker.at("measuring the current model on good images")
    good_before, select_level, cover_radius = _normal_levels(probe, good, splitting, options, tracker)

    tracker.at("reading the taught images")
    taught_before, pool = _unusual_patches(probe, taught, views, select_level, tracker)
    tracker.at("measuring the current model on confirmed defects")
    defects_before = _scores(probe.session, defects, size, tracker.tick)

    if gaussian is not None:
        tracker.at("widening the position Gaussians")
        child, learned = _teach_gaussian(parent, gaussian, pool, cover_radius)
    else:
        assert layout is not None
        tracker.at("choosing new bank entries")
        child, learned = _teach_bank(parent, layout, pool, cover_radius, options.max_new_entries)
    notes += learned.notes
    tracker.tick()
    candidate = cpu_session(child.SerializeToString(), options.threads)

    tracker.at("measuring the taught model")
    calibration_after = _scores(candidate, calibration, size, tracker.tick)
    evaluation_after = _scores(candidate, evaluation, size, tracker.tick)
    taught_after = _scores(candidate, taught, size, tracker.tick)
    defects_after = _scores(candidate, defects, size, tracker.tick)
    if splitting:
        threshold_after = float(
            threshold_from_good_scores(calibration_after, options.target_false_reject_rate)
        )
    else:
        threshold_after = threshold_before
        notes.append(
            f"only {len(good)} held-back good images (need {options.min_good_images}): the parent's "
            "threshold is kept and the false-reject rate on good parts is not measured"
        )
    if not len(defects):
        notes.append("no confirmed defects: defect AUROC and detection rate are not measured")
    scores = _Scores(
        good_before,
        calibration_after,
        evaluation_after,
        np.asarray(taught_before),
        taught_after,
        defects_before,
        defects_after,
    )
    report = _teach_report(meta, learned, scores, (threshold_before, threshold_after), splitting, notes)
    _stamp(child, meta, report, taught, threshold_after, len(good), options)
    tracker.at("done")
    return TeachResult(child.SerializeToString(), report)


def _normal_levels(
    probe: _Probe, good: Sequence[np.ndarray], splitting: bool, options: TeachOptions, tracker: _Progress
) -> tuple[np.ndarray, float, float]:
    """The good images' scores under the parent, and from their patch distances (the calibration half's
    when the images are split) the level above which a taught patch is unusual and the radius a new
    entry covers."""
    scores, distances = [], []
    for image in good:
        score, _, patch_distances = probe.run(_as_input(image, probe.size))
        scores.append(score)
        distances.append(patch_distances)
        tracker.tick()
    calibration = np.concatenate(distances[0::2] if splitting else distances)
    select_level = float(np.quantile(calibration, options.select_quantile))
    cover_radius = float(np.quantile(calibration, options.cover_quantile))
    return np.asarray(scores), select_level, cover_radius


def open_parent(model_bytes: bytes) -> tuple[Any, GaussianLayout | None, dict[str, str], int, float]:
    """(model, its Gaussian head's layout or None for a memory bank, metadata, input size, calibrated
    threshold) of a model to teach, or a TeachError naming what the file lacks. An int8 file's bank or
    head comes back as float weights (the values its session computed), to read and rewrite: a taught
    child keeps the int8 backbone and stores its bank or head as float (the math was float already)."""
    parent = onnx_proto.load_model(model_bytes)
    onnx_proto.float_weights(parent, TAUGHT_MATRICES)
    try:
        gaussian = find_gaussian(parent)
    except ShiftedGaussianError as exc:
        raise TeachError(str(exc)) from None
    meta = onnx_proto.metadata(parent)
    try:
        size, threshold = int(meta[META_INPUT_SIZE]), float(meta[META_THRESHOLD])
    except (KeyError, ValueError) as exc:
        raise TeachError(f"the model lacks usable EdgeInspect metadata ({exc})") from exc
    return parent, gaussian, meta, size, threshold


@dataclass(frozen=True)
class _Scores:
    """Image scores before and after teaching normal: the good images (all, before), their calibration
    and evaluation halves (after), the taught images and the confirmed defects."""

    good_before: np.ndarray
    calibration_after: np.ndarray
    evaluation_after: np.ndarray
    taught_before: np.ndarray
    taught_after: np.ndarray
    defects_before: np.ndarray
    defects_after: np.ndarray


def _teach_report(
    meta: dict[str, str],
    learned: _Learned,
    scores: _Scores,
    thresholds: tuple[float, float],
    splitting: bool,
    notes: list[str],
) -> TeachReport:
    """The before/after figures of teaching normal (rates at each model's own threshold)."""
    before, after = thresholds
    all_good_after = np.concatenate([scores.calibration_after, scores.evaluation_after])
    defects = len(scores.defects_before)
    return TeachReport(
        parent_version=meta.get(META_MODEL_VERSION, ""),
        model_version=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-taught",
        taught_examples=len(scores.taught_before),
        head=learned.head,
        bank_entries_added=learned.size_after - learned.size_before,
        bank_size_before=learned.size_before,
        bank_size_after=learned.size_after,
        positions_taught=learned.positions_taught,
        uncovered_patches=learned.uncovered,
        good_images_calibration=len(scores.calibration_after) if splitting else 0,
        good_images_evaluation=len(scores.evaluation_after),
        confirmed_defects=defects,
        threshold=_before_after(before, after),
        threshold_recalibrated=splitting,
        false_reject_rate_good=(
            _before_after(_rate(scores.good_before[1::2], before), _rate(scores.evaluation_after, after))
            if splitting
            else None
        ),
        false_reject_rate_taught=_before_after(
            _rate(scores.taught_before, before), _rate(scores.taught_after, after)
        ),
        defect_auroc=_defect_auroc(
            scores.good_before, all_good_after, scores.defects_before, scores.defects_after, splitting
        ),
        defect_detection_rate=(
            _before_after(_rate(scores.defects_before, before), _rate(scores.defects_after, after))
            if defects
            else None
        ),
        notes=notes,
    )


@dataclass(frozen=True)
class _Pool:
    """Taught patches farther than normal from the head: embeddings [n, C], where on the grid they were
    seen [n], and their distance under the parent [n]."""

    patches: np.ndarray
    positions: np.ndarray
    distances: np.ndarray


def _unusual_patches(
    probe: _Probe, taught: Sequence[np.ndarray], views: list[View], level: float, tracker: _Progress
) -> tuple[list[float], _Pool]:
    """(parent scores of the taught images, their patches farther than `level` from the head in every
    view). Moved views only keep patches near what the unmoved view flagged: the mark, not the part's own
    edges nor the reflected border."""
    scores: list[float] = []
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for image in taught:
        batch = _as_input(image, probe.size)
        region = np.zeros(0, dtype=bool)
        for index, view in enumerate(views):
            score, patches, distances = probe.run(_moved(batch, view))
            unusual = distances > level
            if index == 0:
                scores.append(score)
                region = _grown(unusual)
            else:
                unusual &= region
            kept.append((patches[unusual], np.flatnonzero(unusual), distances[unusual]))
            tracker.tick()
    patches, positions, distances = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    return scores, _Pool(patches, positions, distances)


@dataclass(frozen=True)
class _Learned:
    """What the head-specific step changed (sizes are the bank's entries; 0 for a Gaussian head)."""

    head: str
    size_before: int
    size_after: int
    positions_taught: int
    uncovered: int
    notes: list[str]


def _probe(
    parent: Any, layout: BankLayout | None, gaussian: GaussianLayout | None, size: int, threads: int
) -> _Probe:
    probe_model = onnx_proto.copy_model(parent)
    if gaussian is not None:
        onnx_proto.add_float_output(probe_model, gaussian.patches)
        session = cpu_session(probe_model.SerializeToString(), threads)
        return _Probe(session, gaussian.patches, size, GaussianHead.read(parent, gaussian).distances)
    assert layout is not None
    inits = _initializers(parent)
    factors = [onnx_proto.tensor_to_array(inits[name]) for name in layout.factors]
    bias = onnx_proto.tensor_to_array(inits[layout.bias])
    onnx_proto.add_float_output(probe_model, layout.all_patches)
    session = cpu_session(probe_model.SerializeToString(), threads)
    return _Probe(session, layout.all_patches, size, functools.partial(bank_distances, factors, bias))


def _teach_bank(
    parent: Any, layout: BankLayout, pool: _Pool, radius: float, limit: int
) -> tuple[Any, _Learned]:
    """Append a greedy cover of the pool to the bank."""
    inits = _initializers(parent)
    factors = [onnx_proto.tensor_to_array(inits[name]) for name in layout.factors]
    bias = onnx_proto.tensor_to_array(inits[layout.bias])
    chosen, _ = cover_new_patches(pool.patches, pool.distances, radius, limit)
    extended = extend_bank(factors, bias, chosen)
    left = _still_far(pool.patches, pool.distances, extended.entries, radius)
    notes = []
    if not len(chosen):
        notes.append("no taught patch was farther from the bank than normal patches; the bank is unchanged")
    if extended.added_rank:
        notes.append(f"the factorized bank's space was widened by {extended.added_rank} directions")
    if left:
        why = (
            f"the limit of {limit} new entries was reached"
            if len(chosen) >= limit
            else "the widened factorized bank holds them only approximately"
        )
        notes.append(f"{left} taught patches stay farther from the bank than normal ones ({why})")
    child = _extended_model(parent, layout, extended)
    learned = _Learned("bank", int(inits[layout.bias].dims[0]), len(extended.bias), 0, left, notes)
    return child, learned


def _teach_gaussian(parent: Any, layout: GaussianLayout, pool: _Pool, radius: float) -> tuple[Any, _Learned]:
    """Blend the pool into the Gaussians of the positions where it was seen."""
    outcome = blend_taught_patches(GaussianHead.read(parent, layout), pool.patches, pool.positions, radius)
    child = onnx_proto.copy_model(parent)
    outcome.head.write(child, layout)
    notes = []
    if not outcome.positions_taught:
        notes.append("no taught patch lay outside its position's Gaussian; the model is unchanged")
    if outcome.uncovered_patches:
        notes.append(
            f"{outcome.uncovered_patches} taught patches stay farther than normal ones: a position keeps at "
            "least half of what the good parts showed"
        )
    learned = _Learned("gaussian", 0, 0, outcome.positions_taught, outcome.uncovered_patches, notes)
    return child, learned


def _defect_auroc(
    good_before: np.ndarray,
    good_after: np.ndarray,
    defects_before: np.ndarray,
    defects_after: np.ndarray,
    splitting: bool,
) -> BeforeAfter | None:
    """AUROC of confirmed defects vs every held-back good image (the threshold plays no part in it)."""
    if not len(defects_before):
        return None
    if splitting:  # `good_after` is calibration then evaluation; put `good_before` in the same order
        good_before = np.concatenate([good_before[0::2], good_before[1::2]])
    labels = np.r_[np.zeros(len(good_before)), np.ones(len(defects_before))]
    before = image_auroc(labels, np.r_[good_before, defects_before])
    after = image_auroc(labels, np.r_[good_after, defects_after])
    return _before_after(before, after)


def _stamp(
    child: Any,
    meta: dict[str, str],
    report: TeachReport,
    taught: Sequence[np.ndarray],
    threshold: float,
    good_count: int,
    options: TeachOptions,
) -> None:
    """The child's metadata: the parent's, with a new version, threshold, bank size and taught record."""
    values = dict(meta)
    values[META_MODEL_VERSION] = report.model_version
    values[META_THRESHOLD] = repr(float(threshold))
    values[META_TAUGHT_FROM] = report.parent_version
    values[META_TAUGHT_EXAMPLES] = str(int(meta.get(META_TAUGHT_EXAMPLES, "0")) + len(taught))
    values[META_TAUGHT_ENTRIES] = str(int(meta.get(META_TAUGHT_ENTRIES, "0")) + report.bank_entries_added)
    values[META_TAUGHT_SHA256] = _taught_sha256(meta.get(META_TAUGHT_SHA256, ""), taught)
    if report.head == "bank":
        values[META_BANK_SIZE] = str(report.bank_size_after)
    if report.threshold_recalibrated:
        values[META_CALIBRATION] = (
            f"good-image quantile at false-reject rate {options.target_false_reject_rate} over "
            f"{report.good_images_calibration} held-back archived good images, after teaching"
        )
    else:
        values[META_CALIBRATION] = (
            f"{meta.get(META_CALIBRATION, 'parent calibration')} (kept: {good_count} good images at teaching)"
        )
    onnx_proto.set_metadata(child, values)
