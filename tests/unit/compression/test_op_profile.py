"""Per-operator-class timing: convolutions are told apart by kernel and group, fused nodes map back."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.op_profile import node_classes, profile_by_class
from vision.export import export_onnx

from .conftest import toy_images
from .test_export_quantize import METADATA


def _conv(name: str, weight: str, group: int = 1) -> onnx.NodeProto:
    return helper.make_node("Conv", ["x", weight], [f"{name}_out"], name=name, group=group)


def test_convolutions_are_classed_by_kernel_and_group() -> None:
    weights = [
        numpy_helper.from_array(np.zeros((8, 8, 1, 1), np.float32), "w_pointwise"),
        numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.float32), "w_depthwise"),
        numpy_helper.from_array(np.zeros((8, 8, 3, 3), np.float32), "w_spatial"),
        numpy_helper.from_array(np.zeros((8, 8), np.float32), "w_head"),
    ]
    nodes = [
        _conv("pw", "w_pointwise"),
        _conv("dw", "w_depthwise", group=8),
        _conv("kxk", "w_spatial"),
        helper.make_node("MatMul", ["x", "w_head"], ["m"], name="/position_gaussian/MatMul"),
        helper.make_node("MatMul", ["x", "w_head"], ["b"], name="/blur/MatMul"),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])], [], weights
    )
    assert node_classes(graph) == {
        "pw": "1x1 conv",
        "dw": "depthwise conv",
        "kxk": "kxk conv",
        "/position_gaussian/MatMul": "head matmul",
        "/blur/MatMul": "map blur",
        "relu": "other",
    }


def test_an_int8_files_convolutions_are_classed_through_their_dequantized_weights() -> None:
    weights = [
        numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.int8), "w_q"),
        numpy_helper.from_array(np.ones(8, np.float32), "w_scale"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w_float"], name="dq", axis=0),
        _conv("dw", "w_float", group=8),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])], [], weights
    )
    assert node_classes(graph)["dw"] == "depthwise conv"


def test_profile_of_an_exported_model_attributes_time_to_its_convolutions(toy_model, tmp_path) -> None:
    path = export_onnx(toy_model, tmp_path / "toy.onnx", METADATA, 32)
    profile = profile_by_class(path, toy_images(1, seed=4)[0], threads=1, runs=5)
    assert all(ms >= 0 for ms in profile.values())
    assert sum(ms for cls, ms in profile.items() if cls.endswith("conv")) > 0
