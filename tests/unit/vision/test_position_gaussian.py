"""The per-position Gaussian head: position-aware where the bank is not, exact Mahalanobis distances, and a
model with it that trains, exports to ONNX, runs on ONNX Runtime alike and flags a defect in a fixture."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vision.config import ModelSettings
from vision.export import export_onnx
from vision.models import AnomalyModelConfig
from vision.models.position_gaussian import COVARIANCE_SHRINKAGE, PositionGaussian
from vision.teach import TeachError, find_bank
from vision.train import build_model_files, fit_model

SIZE = 64
METADATA = {
    "edgeinspect.threshold": "1.5",
    "edgeinspect.model_name": "unit",
    "edgeinspect.model_version": "1",
    "edgeinspect.train_data_sha256": "0" * 64,
}


def aligned_patches(rng: np.random.Generator, n: int) -> torch.Tensor:
    """[n, 4 positions, 3] good patches: position 0 is always 'bright' (+5 on channel 0), the rest 'dark'."""
    patches = rng.normal(0.0, 0.3, (n, 4, 3))
    patches[:, 0, 0] += 5.0
    return torch.tensor(patches, dtype=torch.float32)


def test_a_patch_normal_elsewhere_is_anomalous_where_it_does_not_belong() -> None:
    """What the bank cannot see: a 'bright' patch is normal at position 0 and a defect at position 3."""
    head = PositionGaussian(dim=3, components=3, grid=(2, 2))
    head.fit(aligned_patches(np.random.default_rng(0), 200))
    bright = torch.tensor([5.0, 0.0, 0.0])
    dark = torch.zeros(3)
    at_0 = torch.stack([bright, dark, dark, dark])  # [P, C], bright where it belongs
    at_3 = torch.stack([bright, dark, dark, bright])  # and a second one where it does not belong
    features = torch.stack([at_0, at_3]).reshape(2, 2, 2, 3).permute(0, 3, 1, 2)
    distances = head(features)[:, 0].reshape(2, 4)
    assert distances[0].max() < 4.0  # within a few standard deviations everywhere
    assert distances[1, 3] > 10.0 and distances[1, :3].max() < 4.0


def test_a_shift_lets_a_part_that_sits_one_cell_off_match_and_exports_alike(tmp_path) -> None:
    """`shift=1`: the bright patch one cell from its place is normal; two cells away it is not."""
    rng = np.random.default_rng(2)
    patches = rng.normal(0.0, 0.3, (200, 9, 3))
    patches[:, 0, 0] += 5.0  # bright at (0, 0) of a 3x3 grid
    good = torch.tensor(patches, dtype=torch.float32)
    strict = PositionGaussian(dim=3, components=3, grid=(3, 3))
    tolerant = PositionGaussian(dim=3, components=3, grid=(3, 3), shift=1)
    strict.fit(good)
    tolerant.fit(good)
    moved = torch.zeros(2, 9, 3)
    moved[0, 1, 0] = 5.0  # the part one cell to the right
    moved[1, 2, 0] = 5.0  # two cells
    features = moved.reshape(2, 3, 3, 3).permute(0, 3, 1, 2)
    assert strict(features)[0].max() > 10.0
    assert tolerant(features)[0].max() < strict(features)[0].max() / 2
    assert tolerant(features)[1].max() > 10.0
    with pytest.raises(ValueError, match="shift"):
        PositionGaussian(dim=3, components=3, grid=(3, 3), shift=3)
    path = tmp_path / "shift.onnx"
    torch.onnx.export(tolerant, (features,), str(path), input_names=["f"], output_names=["d"], dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"f": features.numpy()})[0]
    np.testing.assert_allclose(got, tolerant(features).detach().numpy(), rtol=1e-4, atol=1e-4)


def _on_grid(head: PositionGaussian, patches: torch.Tensor) -> np.ndarray:
    """The head's distances [N, 6] for patches [N, 6 positions, 4] on its 2 x 3 grid."""
    return head(patches.reshape(len(patches), 2, 3, 4).permute(0, 3, 1, 2))[:, 0].reshape(-1, 6).numpy()


def _per_position(patches: torch.Tensor, probe: torch.Tensor, shape: np.ndarray | None = None):
    """(probe's offsets from the position's mean [n, 4], its shrunk covariance) for each of 6 positions;
    `shape`: the shrinkage's form (default: the same amount in every direction)."""
    data = patches.double().numpy()
    for position in range(6):
        samples = data[:, position]
        covariance = np.cov(samples.T)
        form = np.eye(4) if shape is None else shape
        covariance += COVARIANCE_SHRINKAGE * np.trace(covariance) / 4 * form
        yield probe[:, position].double().numpy() - samples.mean(axis=0), covariance


def test_distances_are_the_mahalanobis_distances_of_each_position() -> None:
    rng = np.random.default_rng(1)
    patches = torch.tensor(rng.normal(0, 1, (50, 6, 4)) * [1.0, 2.0, 0.5, 3.0], dtype=torch.float32)
    head = PositionGaussian(dim=4, components=4, grid=(2, 3))
    head.fit(patches)
    probe = torch.tensor(rng.normal(0, 2, (3, 6, 4)), dtype=torch.float32)
    got = _on_grid(head, probe)
    for position, (diff, covariance) in enumerate(_per_position(patches, probe)):
        expected = np.sqrt(np.einsum("nc,cd,nd->n", diff, np.linalg.inv(covariance), diff))
        np.testing.assert_allclose(got[:, position], expected, rtol=1e-3)


def test_a_rank_keeps_each_positions_least_varying_directions() -> None:
    """`rank` r: the distance is the Mahalanobis distance within the r directions each position's good
    patches vary least in, so a deviation there counts in full and one along the widest spread not at all."""
    rng = np.random.default_rng(3)
    spread = np.array([4.0, 2.0, 1.0, 0.25])  # channel 3 varies least, channel 0 most
    patches = torch.tensor(rng.normal(0, 1, (400, 6, 4)) * spread, dtype=torch.float32)
    head = PositionGaussian(dim=4, components=4, grid=(2, 3), rank=2)
    head.fit(patches)
    assert tuple(head.factor.shape) == (6, 4, 2)
    probe = torch.tensor(rng.normal(0, 2, (3, 6, 4)), dtype=torch.float32)
    got = _on_grid(head, probe)
    # A truncated head shrinks 0.8x along the leading principal direction of all patches up to 1.2x
    # along the last (so directions a position never saw keep a definite order).
    _, global_directions = np.linalg.eigh(np.cov(patches.double().numpy().reshape(-1, 4).T))
    leading_first = global_directions[:, ::-1]
    ramp = leading_first @ np.diag(np.linspace(0.8, 1.2, 4)) @ leading_first.T
    for position, (diff, covariance) in enumerate(_per_position(patches, probe, ramp)):
        variances, directions = np.linalg.eigh(covariance)
        expected = np.sqrt(((diff @ directions[:, :2]) ** 2 / variances[:2]).sum(axis=1))
        np.testing.assert_allclose(got[:, position], expected, rtol=1e-3)
    along_widest = torch.zeros(1, 6, 4)
    along_widest[0, :, 0] = 12.0  # three standard deviations along channel 0: outside the kept directions
    along_narrowest = torch.zeros(1, 6, 4)
    along_narrowest[0, :, 3] = 1.0  # about three along channel 3 (0.34 with the shrinkage)
    assert _on_grid(head, along_narrowest).max() > 2.5 and _on_grid(head, along_widest).max() < 1.0
    with pytest.raises(ValueError, match="rank must be within"):
        PositionGaussian(dim=4, components=4, grid=(2, 3), rank=5)


def test_bad_shapes_and_settings_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="components must be within"):
        PositionGaussian(dim=3, components=4, grid=(2, 2))
    head = PositionGaussian(dim=3, components=2, grid=(2, 2))
    with pytest.raises(ValueError, match="do not fit a"):
        head.fit(torch.zeros(5, 9, 3))
    with pytest.raises(ValueError, match="at least 2 good images"):
        head.fit(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="gaussian head has none"):
        AnomalyModelConfig(head="gaussian", coarse_entries=256, refined_patches=256)


def fixture_part(rng: np.random.Generator, defect: bool = False) -> np.ndarray:
    """A part in a fixture: a dark bar always at the same place; a defect is the same bar elsewhere."""
    image = np.full((SIZE, SIZE, 3), 170, np.uint8)
    image[:, 8:14] = 40
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    if defect:
        image[:, 44:50] = image[:, 8:14]
    return image


@pytest.mark.integration
def test_a_gaussian_head_model_trains_exports_and_runs_on_onnx_runtime(tmp_path) -> None:
    rng = np.random.default_rng(3)
    settings = ModelSettings(image_size=SIZE, head="gaussian", gaussian_components=16)
    assert not settings.searches_coarse_first()
    model = fit_model([fixture_part(rng) for _ in range(12)], settings, progress=False)
    assert model.memory_bank is None and model.position_gaussian is not None
    path = export_onnx(model, tmp_path / "g.onnx", METADATA, SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = {}
    for name, image in (("good", fixture_part(rng)), ("moved bar", fixture_part(rng, defect=True))):
        onnx_map, onnx_score = session.run(["anomaly_map", "score"], {"image": image[None]})
        with torch.no_grad():
            torch_map, _ = model(torch.from_numpy(image[None]))
        np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3)
        scores[name] = float(onnx_score[0])
    # The extra bar is made of pixels that are normal elsewhere in the frame: only position tells.
    assert scores["moved bar"] > 2 * scores["good"]


@pytest.mark.slow
def test_build_model_files_calibrates_a_gaussian_head(tmp_path) -> None:
    rng = np.random.default_rng(4)
    settings = ModelSettings(image_size=SIZE, head="gaussian", gaussian_components=16)
    path = build_model_files(
        [fixture_part(rng) for _ in range(20)], tmp_path / "g.onnx", settings, "unit", progress=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    threshold = float(session.get_modelmeta().custom_metadata_map["edgeinspect.threshold"])
    good = [float(session.run(["score"], {"image": fixture_part(rng)[None]})[0][0]) for _ in range(3)]
    bad = float(session.run(["score"], {"image": fixture_part(rng, defect=True)[None]})[0][0])
    assert max(good) < threshold < bad


@pytest.mark.integration
def test_find_bank_says_a_gaussian_head_has_none(tmp_path) -> None:
    rng = np.random.default_rng(5)
    settings = ModelSettings(image_size=SIZE, head="gaussian", gaussian_components=8)
    model = fit_model([fixture_part(rng) for _ in range(6)], settings, progress=False)
    path = export_onnx(model, tmp_path / "g.onnx", METADATA, SIZE)
    with pytest.raises(TeachError, match=r"per-position Gaussian .* no memory bank"):
        find_bank(onnx.load(str(path)))


@pytest.mark.integration
def test_teaching_a_shifted_head_is_refused_with_what_to_do(tmp_path) -> None:
    from vision.teach import teach_normal
    from vision.teach_defects import LabelledDefect, teach_defects

    rng = np.random.default_rng(6)
    settings = ModelSettings(image_size=SIZE, gaussian_components=8, gaussian_shift=1)
    model = fit_model([fixture_part(rng) for _ in range(6)], settings, progress=False)
    data = export_onnx(model, tmp_path / "s.onnx", {**METADATA, "edgeinspect.input_size": str(SIZE)}, SIZE)
    frames = [fixture_part(rng)[:, :, ::-1].copy() for _ in range(8)]
    with pytest.raises(TeachError, match="gaussian_shift 0"):
        teach_normal(data.read_bytes(), frames[:1], frames[1:])
    with pytest.raises(TeachError, match="gaussian_shift 0"):
        teach_defects(data.read_bytes(), [LabelledDefect(frames[0])], frames[1:])
