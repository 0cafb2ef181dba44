"""`model.int8`: the built file is the int8 one, with a threshold that holds on its own scores."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from compression.onnx_bench import onnx_outputs
from vision.build_inputs import prepare_images, split_holdout
from vision.config import ModelSettings
from vision.data.synthetic import LineSimulator
from vision.inspector import Inspector
from vision.int8_export import quantize_deployed
from vision.train import build_model_files

SIZE = 64


def _good(count: int) -> list[np.ndarray]:
    simulator = LineSimulator("pcb", seed=3, defect_rate=0.0, image_size=SIZE)
    return [simulator.next_part().image for _ in range(count)]


def test_an_int8_build_deploys_the_quantized_file_calibrated_on_its_own_scores(tmp_path) -> None:
    settings = ModelSettings(head="gaussian", image_size=SIZE, int8=True, target_false_reject_rate=0.1)
    good = _good(20)
    path = build_model_files(good, tmp_path / "m.onnx", settings, "t", progress=False)
    model = onnx.load(str(path))
    assert any(node.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for node in model.graph.node)
    # The Gaussian head's precision factors (each position's strongest directions) travel as int8.
    assert any(
        init.name.startswith("position_gaussian.factor") and init.data_type == onnx.TensorProto.INT8
        for init in model.graph.initializer
    )
    info = Inspector(path).info
    assert info.version.endswith("-int8")
    _, held_back = split_holdout(len(good), 0.2, settings.seed)  # the build's own split
    _, scores = onnx_outputs(path, prepare_images(good, SIZE)[held_back])
    # At most the target share of the held-back good images (plus one image of rounding) lies above it.
    assert np.mean(scores >= info.threshold) <= 0.1 + 1 / len(scores)
    assert not list(tmp_path.glob("*staging*"))


@pytest.mark.parametrize(("head", "quantized"), [("gaussian", True), ("bank", False)])
def test_int8_auto_quantizes_a_gaussian_build_and_keeps_a_bank_float(
    tmp_path, head: str, quantized: bool
) -> None:
    # The shipped config's `int8: auto`: int8 costs the Gaussian 0.1-0.3 points of image AUROC on real
    # DEV sets, the bank 1.2 (KolektorSDD), and an int8 bank cannot be taught.
    settings = ModelSettings(head=head, image_size=SIZE, int8="auto", memory_bank_size=256)
    assert settings.quantizes(head) is quantized and ModelSettings(int8=True).quantizes("bank")
    assert not ModelSettings().quantizes("gaussian")  # off unless asked for
    path = build_model_files(_good(12), tmp_path / "m.onnx", settings, "t", progress=False)
    model = onnx.load(str(path))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node) is quantized
    assert Inspector(path).info.version.endswith("-int8") is quantized


def test_a_failed_quantization_leaves_the_float_file_as_it_was(tmp_path) -> None:
    settings = ModelSettings(head="gaussian", image_size=SIZE)
    path = build_model_files(_good(10), tmp_path / "m.onnx", settings, "t", progress=False)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="at least one good image"):
        quantize_deployed(path, np.zeros((0, SIZE, SIZE, 3), np.uint8), 0.1)
    assert path.read_bytes() == before and not list(tmp_path.glob("*staging*"))


def test_the_quantizers_notes_stay_off_the_console_and_nothing_else_does(caplog) -> None:
    import os

    from vision.int8_export import _quantizer_notes_hidden

    quantizer = os.path.join("site-packages", "onnxruntime", "quantization", "base_quantizer.py")
    caplog.set_level(logging.INFO)
    root = logging.getLogger()
    with _quantizer_notes_hidden():
        for level, path, msg in [
            (logging.INFO, quantizer, "Increased scale[3] for weight"),
            (logging.WARNING, quantizer, "a quantizer warning"),
            (logging.INFO, __file__, "the line's own note"),
        ]:
            root.handle(logging.makeLogRecord({"levelno": level, "pathname": path, "msg": msg}))
    root.handle(logging.makeLogRecord({"levelno": logging.INFO, "pathname": quantizer, "msg": "after"}))
    assert [r.getMessage() for r in caplog.records] == ["a quantizer warning", "the line's own note", "after"]
