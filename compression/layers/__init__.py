"""Factorized drop-in replacements for dense layers; each exports to ONNX as plain Conv/MatMul nodes."""

from compression.layers.cp import CPConv2d
from compression.layers.svd import SVDLinear
from compression.layers.tt import TTLinear, balanced_factors, tt_layout
from compression.layers.tucker import Tucker2Conv2d

__all__ = ["CPConv2d", "SVDLinear", "TTLinear", "Tucker2Conv2d", "balanced_factors", "tt_layout"]
