"""Teaching "this is normal" on the exported ONNX model: dense and factorized banks, contract, metadata,
before/after figures, refusals, and that it runs with neither torch, onnx nor scipy importable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from vision import onnx_proto
from vision.data.stickers import paint_sticker
from vision.data.synthetic import LineSimulator
from vision.export import META_MODEL_VERSION, META_THRESHOLD, META_TRAIN_DATA_SHA256
from vision.head_fit import fit_position_gaussian
from vision.inspector import Inspector
from vision.teach import (
    META_TAUGHT_EXAMPLES,
    META_TAUGHT_SHA256,
    BeforeAfter,
    TeachError,
    TeachOptions,
    find_bank,
    teach_normal,
)
from vision.teach_gaussian import GaussianHead, blend_taught_patches, find_gaussian

REPO = Path(__file__).resolve().parents[3]
CATEGORY = "bracket"  # the `trained_model` fixture's product


def _parts(seed: int, count: int, defect_rate: float = 0.0, sticker: bool = False) -> list[np.ndarray]:
    """BGR frames as the camera delivers them, optionally with the recurring label painted on."""
    simulator = LineSimulator(CATEGORY, seed=seed, defect_rate=defect_rate)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        image = simulator.next_part().image
        if sticker:
            image = paint_sticker(image, rng, "fixed")
        frames.append(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return frames


@pytest.fixture(scope="module")
def bank_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first-run build with a memory bank head (what teach-normal appends to)."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    out = tmp_path_factory.mktemp("bank") / "bank.onnx"
    settings = ModelSettings(train_images=40, memory_bank_size=512, head="bank", neighbourhood=1)
    return build_default_model(CATEGORY, settings, out, progress=False)


def test_the_onnx_subset_round_trips_a_model_unchanged(trained_model: Path) -> None:
    data = trained_model.read_bytes()
    model = onnx_proto.load_model(data)
    assert onnx.load_from_string(model.SerializeToString()) == onnx.load_from_string(data)
    with pytest.raises(onnx_proto.OnnxFormatError, match="not an ONNX model"):
        onnx_proto.load_model(b"\x00garbage")


def test_teaching_a_dense_bank_makes_the_label_normal_and_keeps_the_contract(
    bank_model: Path, tmp_path: Path
) -> None:
    parent = bank_model.read_bytes()
    layout = find_bank(onnx_proto.load_model(parent))
    assert len(layout.factors) == 1
    taught, good = _parts(21, 6, sticker=True), _parts(22, 24)
    defects = _parts(23, 6, defect_rate=1.0)
    stages: list[tuple[float, str]] = []
    result = teach_normal(
        parent, taught, good, defects, TeachOptions(), progress=lambda f, s: stages.append((f, s))
    )
    report = result.report
    assert report.false_reject_rate_taught.before == 1.0  # the parent flags every labelled part
    assert report.false_reject_rate_taught.after == 0.0
    assert report.false_reject_rate_good is not None and report.false_reject_rate_good.after <= 0.1
    assert report.defect_auroc is not None and report.defect_auroc.after >= 0.95
    assert report.defect_detection_rate is not None and report.defect_detection_rate.after == 1.0
    assert report.good_images_calibration == report.good_images_evaluation == 12
    assert report.threshold_recalibrated and report.bank_entries_added > 0
    assert report.bank_size_after == report.bank_size_before + report.bank_entries_added
    progress = [fraction for fraction, _ in stages]
    assert progress == sorted(progress) and progress[-1] == 1.0 and stages[-1][1] == "done"
    child = tmp_path / "child.onnx"
    child.write_bytes(result.model_bytes)
    onnx.checker.check_model(onnx.load(str(child)))
    inspector = Inspector(child, threads=1)  # the box's contract checks pass
    meta = inspector.info.metadata
    parent_meta = onnx_proto.metadata(onnx_proto.load_model(parent))
    assert meta[META_TRAIN_DATA_SHA256] == parent_meta[META_TRAIN_DATA_SHA256]
    assert meta[META_MODEL_VERSION] == report.model_version != parent_meta[META_MODEL_VERSION]
    assert float(meta[META_THRESHOLD]) == pytest.approx(report.threshold.after)
    assert meta[META_TAUGHT_EXAMPLES] == "6" and len(meta[META_TAUGHT_SHA256]) == 64
    assert not any(inspector.inspect(frame).is_defect for frame in taught)
    assert all(inspector.inspect(frame).is_defect for frame in defects)
    grandchild = teach_normal(
        result.model_bytes, taught[:2], good[:4], options=TeachOptions(min_good_images=4)
    )
    grand_meta = onnx_proto.metadata(onnx_proto.load_model(grandchild.model_bytes))
    assert grand_meta[META_TAUGHT_EXAMPLES] == "8"  # a second teaching adds to the record
    assert grand_meta[META_TAUGHT_SHA256] != meta[META_TAUGHT_SHA256]


def _factorized(dense: bytes, rank: int) -> bytes:
    """The bank's [C, K] MatMul replaced by [C, r] @ [r, K] from its SVD (what compression exports)."""
    model = onnx.load_from_string(dense)
    layout = find_bank(onnx_proto.load_model(dense))
    inits = {t.name: t for t in model.graph.initializer}
    weight = numpy_helper.to_array(inits[layout.factors[0]])
    u, s, vt = np.linalg.svd(weight, full_matrices=False)
    first = (u[:, :rank] * s[:rank]).astype(np.float32)
    second = vt[:rank].astype(np.float32)
    inits[layout.factors[0]].CopyFrom(numpy_helper.from_array(second, layout.factors[0]))
    model.graph.initializer.append(numpy_helper.from_array(first, "bank_first"))
    nodes = list(model.graph.node)
    index = next(i for i, n in enumerate(nodes) if n.op_type == "MatMul" and layout.factors[0] in n.input)
    nodes[index].input[0] = "bank_projected"
    projection = helper.make_node(
        "MatMul", [layout.patches, "bank_first"], ["bank_projected"], "bank_first_mm"
    )
    del model.graph.node[:]
    model.graph.node.extend([*nodes[:index], projection, *nodes[index:]])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_factorized_bank_grows_its_last_factor(bank_model: Path, tmp_path: Path) -> None:
    factorized = _factorized(bank_model.read_bytes(), rank=48)
    layout = find_bank(onnx_proto.load_model(factorized))
    assert len(layout.factors) == 2
    taught, good = _parts(31, 4, sticker=True), _parts(32, 6)
    options = TeachOptions(min_good_images=4, augment_shift_px=0)
    result = teach_normal(factorized, taught, good, options=options)
    child = onnx_proto.load_model(result.model_bytes)
    inits = {t.name: t for t in child.graph.initializer}
    first, last = (onnx_proto.tensor_to_array(inits[name]) for name in layout.factors)
    added = result.report.bank_entries_added
    assert added > 0 and first.shape[0] == 176 and first.shape[1] > 48  # widened for the label's directions
    assert last.shape == (first.shape[1], result.report.bank_size_before + added)
    assert any("widened" in note for note in result.report.notes)
    assert result.report.false_reject_rate_taught == BeforeAfter(before=1.0, after=0.0)
    path = tmp_path / "child.onnx"
    path.write_bytes(result.model_bytes)
    Inspector(path, threads=1)


@pytest.fixture(scope="module")
def coarse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A coarse-to-fine model (bank 512, coarse copy of its first 128 entries) as `train` builds it."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    settings = ModelSettings(
        head="bank",
        neighbourhood=1,
        train_images=40,
        memory_bank_size=512,
        coarse_entries=128,
        refined_patches=128,
    )
    return build_default_model(
        CATEGORY, settings, tmp_path_factory.mktemp("coarse") / "coarse.onnx", progress=False
    )


def test_a_coarse_to_fine_model_grows_its_whole_bank_and_keeps_the_coarse_copy(
    coarse_model: Path, tmp_path: Path
) -> None:
    parent = coarse_model.read_bytes()
    layout = find_bank(onnx_proto.load_model(parent))
    assert layout.grid_patches and layout.grid_patches != layout.patches  # every patch vs the refined ones

    def banks(data: bytes) -> list[tuple[int, ...]]:
        inits = {t.name: t for t in onnx_proto.load_model(data).graph.initializer}
        return sorted(tuple(int(d) for d in t.dims) for t in inits.values() if 176 in t.dims[:1])

    taught, good = _parts(41, 4, sticker=True), _parts(42, 8)
    result = teach_normal(parent, taught, good, options=TeachOptions(min_good_images=4))
    added = result.report.bank_entries_added
    assert added > 0 and result.report.bank_size_after == 512 + added
    assert (176, 128) in banks(result.model_bytes) and (176, 512 + added) in banks(result.model_bytes)
    assert result.report.false_reject_rate_taught == BeforeAfter(before=1.0, after=0.0)
    path = tmp_path / "child.onnx"
    path.write_bytes(result.model_bytes)
    inspector = Inspector(path, threads=1)
    assert not any(inspector.inspect(frame).is_defect for frame in taught)


def test_a_compressed_coarse_to_fine_bank_widens_its_coarse_copy_with_it(
    coarse_model: Path, tmp_path: Path
) -> None:
    """An SVD bank's coarse copy shares the first factor; widening it pads the copy with zero rows."""
    from compression.layers import SVDLinear
    from vision.export import export_onnx
    from vision.models.checkpoint import load_checkpoint, read_checkpoint

    model = load_checkpoint(coarse_model.with_suffix(".pt"))
    bank = model.memory_bank
    bank.similarity = SVDLinear.from_layer(bank.similarity, 32)
    bank.sync_bias()
    assert bank.searches_coarse_first
    metadata = dict(read_checkpoint(coarse_model.with_suffix(".pt"))["extra"]["metadata"])
    parent = export_onnx(model, tmp_path / "svd.onnx", metadata, model.config.image_size).read_bytes()
    layout = find_bank(onnx_proto.load_model(parent))
    assert len(layout.factors) == 2 and layout.coarse_factors[0] == layout.factors[0]  # shared projection

    taught, good = _parts(41, 4, sticker=True), _parts(42, 8)
    result = teach_normal(parent, taught, good, options=TeachOptions(min_good_images=4))
    inits = {t.name: t for t in onnx_proto.load_model(result.model_bytes).graph.initializer}
    first, copy = (onnx_proto.tensor_to_array(inits[name]) for name in layout.coarse_factors)
    assert first.shape[1] > 32 and copy.shape == (first.shape[1], 128)  # widened, and still chained
    assert not copy[32:].any()  # the coarse entries gain no component along the new directions
    assert result.report.false_reject_rate_taught == BeforeAfter(before=1.0, after=0.0)
    path = tmp_path / "child.onnx"
    path.write_bytes(result.model_bytes)
    inspector = Inspector(path, threads=1)
    assert not any(inspector.inspect(frame).is_defect for frame in taught)


def test_refusals_name_the_reason(bank_model: Path) -> None:
    parent = bank_model.read_bytes()
    model = onnx.load_from_string(parent)
    layout = find_bank(onnx_proto.load_model(parent))
    for node in model.graph.node:  # the bank as an Einsum, as a tensor-train export would hold it
        if node.op_type == "MatMul" and layout.factors[0] in node.input:
            node.op_type = "Einsum"
            node.attribute.append(helper.make_attribute("equation", "bpc,ck->bpk"))
    with pytest.raises(TeachError, match="not MatMul factors"):
        find_bank(onnx_proto.load_model(model.SerializeToString()))
    frames = _parts(41, 2)
    with pytest.raises(TeachError, match="at least 2 held-back good images"):
        teach_normal(parent, frames[:1], frames[1:])
    with pytest.raises(TeachError, match="nothing to teach"):
        teach_normal(parent, [], frames)
    with pytest.raises(ValueError, match="cover_quantile"):
        TeachOptions(cover_quantile=0.999, select_quantile=0.9)


def test_few_good_images_keep_the_threshold_and_say_so(bank_model: Path) -> None:
    parent = bank_model.read_bytes()
    options = TeachOptions(min_good_images=20, augment_shift_px=0)
    report = teach_normal(parent, _parts(51, 2, sticker=True), _parts(52, 4), options=options).report
    assert report.false_reject_rate_good is None and not report.threshold_recalibrated
    assert report.threshold.after == report.threshold.before
    assert report.defect_auroc is None
    assert any("only 4 held-back good images" in note for note in report.notes)
    assert any("no confirmed defects" in note for note in report.notes)


EDGE_SCRIPT = """
import json, sys
for name in ("torch", "onnx", "scipy", "torchvision", "timm"):
    sys.modules[name] = None  # the station image has none of them
import cv2, numpy as np
from vision.data.stickers import paint_sticker
from vision.data.synthetic import LineSimulator
from vision.teach import TeachOptions, teach_normal
sim = LineSimulator("bracket", seed=61)
rng = np.random.default_rng(0)
bgr = lambda image: cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
taught = [bgr(paint_sticker(sim.next_part().image, rng)) for _ in range(2)]
good = [bgr(sim.next_part().image) for _ in range(4)]
options = TeachOptions(min_good_images=4, augment_shift_px=0)
result = teach_normal(open(sys.argv[1], "rb").read(), taught, good, options=options)
print(json.dumps(result.report.model_dump()))
"""


def test_teaching_runs_without_torch_onnx_or_scipy(bank_model: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", EDGE_SCRIPT, str(bank_model)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["false_reject_rate_taught"]["after"] < report["false_reject_rate_taught"]["before"]


@pytest.fixture(scope="module")
def gaussian_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first-run build with a per-position Gaussian head (no memory bank)."""
    from app.bootstrap import build_default_model
    from vision.config import ModelSettings

    out = tmp_path_factory.mktemp("gaussian") / "gaussian.onnx"
    settings = ModelSettings(train_images=40, head="gaussian", neighbourhood=3)
    return build_default_model(CATEGORY, settings, out, progress=False)


def test_teaching_a_gaussian_head_widens_the_positions_the_label_covers(
    gaussian_model: Path, tmp_path: Path
) -> None:
    parent = gaussian_model.read_bytes()
    parent_model = onnx_proto.load_model(parent)
    assert find_gaussian(parent_model) is not None
    with pytest.raises(TeachError, match="per-position Gaussian"):
        find_bank(parent_model)
    taught, good = _parts(71, 6, sticker=True), _parts(72, 24)
    defects = _parts(73, 6, defect_rate=1.0)
    result = teach_normal(parent, taught, good, defects, TeachOptions())
    report = result.report
    assert report.head == "gaussian" and report.bank_entries_added == 0
    assert report.false_reject_rate_taught.before == 1.0  # the parent flags every labelled part
    assert report.false_reject_rate_taught.after == 0.0
    assert report.false_reject_rate_good is not None and report.false_reject_rate_good.after <= 0.1
    assert report.defect_detection_rate is not None and report.defect_detection_rate.after == 1.0
    grid = onnx_proto.tensor_to_array(
        next(t for t in parent_model.graph.initializer if t.name == "position_gaussian.mean")
    ).shape[0]
    assert 0 < report.positions_taught < grid / 2  # the label's neighbourhood, not the whole part
    child = tmp_path / "child.onnx"
    child.write_bytes(result.model_bytes)
    assert abs(len(result.model_bytes) - len(parent)) < 4096  # same graph, same tensors, new numbers
    inspector = Inspector(child, threads=1)
    assert not any(inspector.inspect(frame).is_defect for frame in taught)
    assert all(inspector.inspect(frame).is_defect for frame in defects)


@pytest.mark.parametrize("rank", [0, 2])  # a whole Cholesky factor; each position's 2 strongest directions
def test_blending_leaves_untouched_positions_exactly_as_they_were(rank: int) -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(size=(200, 4, 6))  # 200 images, 4 positions, 6 channels
    basis, mean, factor = fit_position_gaussian(good, 3, rank=rank)
    assert factor.shape == (4, 3, rank or 3)
    head = GaussianHead(basis, mean, factor)
    far = np.full((2, 6), 6.0)  # two taught patches far out, both at position 2
    radius = float(np.quantile(head.distances(good.reshape(-1, 6), np.tile(np.arange(4), 200)), 0.9))
    assert head.distances(far, np.array([2, 2])).min() > radius
    outcome = blend_taught_patches(head, far, np.array([2, 2]), radius)
    assert outcome.positions_taught == 1 and outcome.uncovered_patches == 0
    assert outcome.head.distances(far, np.array([2, 2])).max() <= radius
    for position in (0, 1, 3):
        assert np.array_equal(outcome.head.mean[position], mean[position])
        assert np.array_equal(outcome.head.factor[position], factor[position])
    if not rank:  # a Cholesky factor stays lower-triangular (int8 files store only its triangle)
        assert not np.triu(outcome.head.factor[2], 1).any()


def _int8_copy(model: Path, tmp_path: Path) -> bytes:
    """The model as a line with `model.int8: true` deploys it: int8 backbone, bank or head as int8 weights."""
    from vision.int8_export import quantize_deployed
    from vision.teach import _as_input

    copy = tmp_path / f"{model.stem}-int8.onnx"
    copy.write_bytes(model.read_bytes())
    quantize_deployed(copy, np.concatenate([_as_input(frame, 256) for frame in _parts(81, 12)]), 0.1)
    return copy.read_bytes()


def test_an_int8_gaussian_model_is_taught_like_a_float_one(gaussian_model: Path, tmp_path: Path) -> None:
    from vision.ort_session import cpu_session
    from vision.teach import TAUGHT_MATRICES, _scores
    from vision.teach_defects import LabelledDefect, teach_defects

    parent = _int8_copy(gaussian_model, tmp_path)
    # Read back as float, the head gives exactly the scores of the int8 file a station runs.
    restored = onnx_proto.load_model(parent)
    assert onnx_proto.float_weights(restored, TAUGHT_MATRICES) == 2  # projection and precision factors
    frames = _parts(82, 4, defect_rate=0.5)
    before = _scores(cpu_session(parent, 1), frames, 256, lambda: None)
    after = _scores(cpu_session(restored.SerializeToString(), 1), frames, 256, lambda: None)
    np.testing.assert_allclose(after, before, rtol=1e-5)

    taught, good = _parts(83, 6, sticker=True), _parts(84, 24)
    result = teach_normal(parent, taught, good, _parts(85, 6, defect_rate=1.0), TeachOptions())
    report = result.report
    assert report.head == "gaussian" and report.positions_taught > 0
    assert report.false_reject_rate_taught.before == 1.0 and report.false_reject_rate_taught.after == 0.0
    assert report.defect_detection_rate is not None and report.defect_detection_rate.after == 1.0
    child = tmp_path / "child.onnx"
    child.write_bytes(result.model_bytes)
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(child)).graph.node)  # still int8
    inspector = Inspector(child, threads=1)
    assert not any(inspector.inspect(frame).is_defect for frame in taught)
    # Confirmed defects are taught on the same int8 file.
    defects = [LabelledDefect(frame) for frame in _parts(86, 4, defect_rate=1.0)]
    taught_defects = teach_defects(parent, defects, _parts(87, 12)).report
    assert taught_defects.defects_taught == 4 and taught_defects.positive_patches > 0


def test_an_int8_bank_model_is_refused_with_the_reason(bank_model: Path, tmp_path: Path) -> None:
    parent = _int8_copy(bank_model, tmp_path)
    with pytest.raises(TeachError, match=r"int8 model file .* teach the float model and quantize it again"):
        teach_normal(parent, _parts(88, 2, sticker=True), _parts(89, 4))


@pytest.mark.parametrize("triangular", [True, False])
def test_int8_weights_read_back_as_the_floats_a_session_computes(triangular: bool) -> None:
    """Cholesky factors travel as int8 lower triangles (a Gather unpacks them), truncated ones whole."""
    from vision.int8_weights import weight_only_int8
    from vision.ort_session import cpu_session

    rng = np.random.default_rng(0)
    factor = rng.normal(size=(4, 6, 6)).astype(np.float32)
    if triangular:
        factor = np.tril(factor)
    graph = helper.make_graph(
        [
            helper.make_node(
                "MatMul", ["x", "position_gaussian.factor"], ["y"], name="/position_gaussian/MatMul"
            )
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 3, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 3, 6])],
        [numpy_helper.from_array(factor, "position_gaussian.factor")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert weight_only_int8(model, ["/position_gaussian/MatMul"], distance_bias=False) == 1
    assert any(node.op_type == "Gather" for node in model.graph.node) is triangular
    x = rng.normal(size=(4, 3, 6)).astype(np.float32)
    as_int8 = cpu_session(model.SerializeToString(), 1).run(None, {"x": x})[0]
    restored = onnx_proto.load_model(model.SerializeToString())
    assert onnx_proto.float_weights(restored, ("position_gaussian",)) == 1
    assert [node.op_type for node in restored.graph.node] == ["MatMul"]
    weight = next(t for t in restored.graph.initializer if t.name == "position_gaussian.factor")
    assert np.abs(onnx_proto.tensor_to_array(weight) - factor).max() < np.abs(factor).max() / 127
    np.testing.assert_allclose(
        cpu_session(restored.SerializeToString(), 1).run(None, {"x": x})[0], as_int8, rtol=1e-6
    )
