"""`model.int8`: the built file is the int8 one, with a threshold that holds on its own scores."""

from __future__ import annotations

import numpy as np
import onnx

from compression.deploy_int8 import finisher
from compression.onnx_bench import onnx_outputs
from vision.config import ModelSettings
from vision.data.synthetic import LineSimulator
from vision.inspector import Inspector
from vision.train import build_model_files

SIZE = 64


def _good(count: int) -> list[np.ndarray]:
    simulator = LineSimulator("pcb", seed=3, defect_rate=0.0, image_size=SIZE)
    return [simulator.next_part().image for _ in range(count)]


def test_an_int8_build_deploys_the_quantized_file_calibrated_on_its_own_scores(tmp_path) -> None:
    settings = ModelSettings(head="gaussian", image_size=SIZE, int8=True, target_false_reject_rate=0.1)
    held_back: list[np.ndarray] = []

    def finish(path, images) -> None:
        held_back.append(images)
        step = finisher(settings)
        assert step is not None
        step(path, images)

    path = build_model_files(_good(20), tmp_path / "m.onnx", settings, "t", progress=False, finish=finish)
    model = onnx.load(str(path))
    assert any(node.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for node in model.graph.node)
    # The Gaussian head's precision factors travel as int8 lower triangles, rebuilt when the session starts.
    assert any(init.name.endswith("_triangle_index") for init in model.graph.initializer)
    info = Inspector(path).info
    assert info.version.endswith("-int8")
    _, scores = onnx_outputs(path, held_back[0])
    # At most the target share of the held-back good images (plus one image of rounding) lies above it.
    assert np.mean(scores >= info.threshold) <= 0.1 + 1 / len(scores)
    assert not list(tmp_path.glob("*staging*"))


def test_a_float_build_has_no_finishing_step() -> None:
    assert finisher(ModelSettings()) is None
