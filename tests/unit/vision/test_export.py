"""ONNX export: the file runs on real ONNX Runtime, matches PyTorch and carries the metadata contract."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vision.config import ModelSettings
from vision.export import REQUIRED_METADATA, export_onnx, sha256_file
from vision.models import AnomalyModel, AnomalyModelConfig, read_checkpoint
from vision.train import build_model_files, fit_model

SIZE = 64


def make_part(rng: np.random.Generator, defect: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image = np.full((SIZE, SIZE, 3), 150, np.uint8)
    image[((xx // 8 + yy // 8) % 2) == 0] = (90, 110, 130)
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    if defect:
        image[10:18, 44:52] = (250, 30, 30)
    return image


METADATA = {
    "edgeinspect.threshold": "1.5",
    "edgeinspect.model_name": "unit",
    "edgeinspect.model_version": "1",
    "edgeinspect.train_data_sha256": "0" * 64,
}


@pytest.mark.integration
def test_onnx_matches_pytorch_and_keeps_metadata(tmp_path) -> None:
    rng = np.random.default_rng(1)
    model = fit_model(
        [make_part(rng) for _ in range(4)], ModelSettings(image_size=SIZE, memory_bank_size=32), False
    )
    path = export_onnx(model, tmp_path / "m.onnx", METADATA, SIZE)

    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert set(REQUIRED_METADATA) <= set(props)
    assert props["edgeinspect.input_format"] == "uint8 NHWC RGB" and props["edgeinspect.input_size"] == "64"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)", [1, 64, 64, 3])
    ]
    for image in (make_part(rng), make_part(rng, defect=True)):
        onnx_map, onnx_score = session.run(["anomaly_map", "score"], {"image": image[None]})
        with torch.no_grad():
            torch_map, torch_score = model(torch.from_numpy(image[None]))
        np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-3, atol=1e-3)


def test_export_refuses_missing_metadata(tmp_path) -> None:
    model = AnomalyModel(AnomalyModelConfig(image_size=SIZE, memory_bank_size=16), pretrained=False)
    with pytest.raises(ValueError, match=r"edgeinspect\.model_name"):
        export_onnx(model, tmp_path / "m.onnx", {"edgeinspect.threshold": "1"}, SIZE)
    with pytest.raises(ValueError):
        export_onnx(model, tmp_path / "m.onnx", {**METADATA, "edgeinspect.threshold": "high"}, SIZE)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_build_model_files_calibrates_above_held_back_good_scores(tmp_path) -> None:
    rng = np.random.default_rng(2)
    settings = ModelSettings(image_size=SIZE, memory_bank_size=32)
    path = build_model_files(
        [make_part(rng) for _ in range(20)], tmp_path / "m.onnx", settings, "unit", progress=False
    )
    assert path.is_file() and len(sha256_file(path)) == 64
    checkpoint = read_checkpoint(path.with_suffix(".pt"))
    threshold = checkpoint["extra"]["threshold"]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["edgeinspect.threshold"]) == pytest.approx(threshold)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    good = [float(session.run(["score"], {"image": make_part(rng)[None]})[0][0]) for _ in range(3)]
    bad = float(session.run(["score"], {"image": make_part(rng, defect=True)[None]})[0][0])
    assert max(good) < threshold < bad


def test_the_maps_upsampling_and_blur_matrix_is_stored_once(tmp_path) -> None:
    """After a forward pass (calibration runs one) the map's upsampling-and-blur matrix is a cached tensor,
    which the tracer writes once per use; the file keeps one copy for both products and scores the same."""
    rng = np.random.default_rng(2)
    model = fit_model(
        [make_part(rng) for _ in range(4)], ModelSettings(image_size=SIZE, memory_bank_size=32), False
    )
    part = make_part(rng, defect=True)
    with torch.no_grad():
        _, torch_score = model(torch.from_numpy(part[None]))
    path = export_onnx(model, tmp_path / "m.onnx", METADATA, SIZE)
    proto = onnx.load(str(path))
    constants = [n.attribute[0].t for n in proto.graph.node if n.op_type == "Constant"]
    grid = SIZE // model.config.patch_stride
    matrices = [t for t in constants if tuple(t.dims) == (SIZE, grid)]  # frame rows x grid rows
    assert len(matrices) == 1
    blur_products = [n for n in proto.graph.node if n.op_type == "MatMul" and n.name.startswith("/blur/")]
    assert (
        len(blur_products) == 2
        and len(
            {n.input[0] for n in blur_products}
            & {n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
        )
        == 1
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_score,) = session.run(["score"], {"image": part[None]})
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-3, atol=1e-3)
