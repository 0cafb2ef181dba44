"""int8 storage for a model file's constant weights, the math left in float: the file shrinks 4x (the
Gaussian head's Cholesky factors 8x), the scores barely move.

Each weight becomes int8 + one float scale per output column (per matrix and column for a batched
MatMul), dequantized by Cast (+ Gather) + Mul, which ONNX Runtime folds back into a constant float weight
when a session starts: the kernels run as fast as before. Used where int8 activations would not do: the
memory bank (a distance is a difference of large terms) and the per-position Gaussian's projection and
precision factors; and for kxk convs whose QDQ form damages scores (`vision.int8_export`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
import onnx

from vision.onnx_proto import behind_identities


def _quantize_columns(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column; returns (int8 values, scales)."""
    scale = np.maximum(np.abs(weight).max(axis=1 - axis), 1e-12) / 127.0
    shaped = scale[:, None] if axis == 0 else scale[None, :]
    return np.clip(np.round(weight / shaped), -127, 127).astype(np.int8), scale.astype(np.float32)


def _quantize_batched(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 for a batched MatMul's [B, K, N] weight, one scale per matrix and output column
    (shape [B, 1, N]); returns (int8 values, scales)."""
    scale = (np.maximum(np.abs(weight).max(axis=1, keepdims=True), 1e-12) / 127.0).astype(np.float32)
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale


def _dequantize(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    quantized: np.ndarray,
    scale: np.ndarray,
    axis: int,
    lower_triangles: bool = False,
) -> None:
    """Feed `node` its weight as float(int8 `quantized`) * `scale` (per slice along `axis`, or already
    shaped to broadcast). With `lower_triangles` ([B, K, K] Cholesky factors) only each matrix's lower
    triangle is stored, half the bytes: a Gather with a constant [K, K] index table (the upper entries
    read a stored zero) rebuilds the squares.

    Cast (+ Gather) + Mul, not DequantizeLinear: ORT constant-folds these at session start, so the kernel
    sees a constant float weight (pre-packed, NCHWc convs) and runs as fast as before; a DequantizeLinear
    is kept for QDQ fusion, runs every frame and makes the weight non-constant (measured 12.8 -> 31.7 ms)."""
    from onnx import numpy_helper

    base = node.input[1]
    if scale.ndim == 1:
        shape = [1] * quantized.ndim
        shape[axis] = len(scale)
        scale = scale.reshape(shape)
    stored, as_float = quantized, f"{base}_int8_as_float"
    nodes = [
        onnx.helper.make_node(
            "Cast", [f"{base}_int8"], [as_float], name=f"{node.name}_weight_cast", to=onnx.TensorProto.FLOAT
        )
    ]
    if lower_triangles:
        size = quantized.shape[1]
        rows, cols = np.tril_indices(size)
        stored = np.concatenate([quantized[:, rows, cols], np.zeros((len(quantized), 1), np.int8)], axis=1)
        index = np.full((size, size), len(rows), dtype=np.int64)  # the appended zero
        index[rows, cols] = np.arange(len(rows))
        model.graph.initializer.append(numpy_helper.from_array(index, f"{base}_triangle_index"))
        nodes.append(
            onnx.helper.make_node(
                "Gather",
                [as_float, f"{base}_triangle_index"],
                [f"{base}_int8_square"],
                name=f"{node.name}_weight_unpack",
                axis=1,
            )
        )
        as_float = f"{base}_int8_square"
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(stored, f"{base}_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
        ]
    )
    nodes.append(
        onnx.helper.make_node(
            "Mul", [as_float, f"{base}_scale"], [f"{base}_dequantized"], name=f"{node.name}_weight_scale"
        )
    )
    position = list(model.graph.node).index(node)
    for new_node in reversed(nodes):
        model.graph.node.insert(position, new_node)
    node.input[1] = f"{base}_dequantized"


def _triangular(weight: np.ndarray) -> bool:
    """Whether every square matrix of a [B, K, K] weight is lower-triangular (a Cholesky factor)."""
    return weight.shape[1] == weight.shape[2] and not np.triu(weight, 1).any()


def _conv_weight_only(model: onnx.ModelProto, node: onnx.NodeProto, weight: np.ndarray) -> None:
    """Symmetric int8 per output channel for a conv kernel [out, in, kh, kw]."""
    scale = (np.maximum(np.abs(weight).reshape(len(weight), -1).max(axis=1), 1e-12) / 127.0).astype(
        np.float32
    )
    quantized = np.clip(np.round(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
    _dequantize(model, node, quantized, scale, 0)


def weight_only_int8(model: onnx.ModelProto, node_names: Sequence[str], distance_bias: bool = True) -> int:
    """Store the constant weight of the named MatMul/Gemm/Conv nodes as int8 + per-output scale (folded
    back to float when the session starts; a batched MatMul's [B, K, N] weight gets one scale per matrix
    and column, and only its lower triangles when they are Cholesky factors): the file shrinks 4x (8x),
    the math stays float. Returns nodes
    changed. A weight two nodes share (the exporter passes it through an Identity) is stored once.

    Used for the memory bank: distances are |f|^2 - 2 (f.m - |m|^2/2), a difference of large terms, so
    int8 activations would drown them in rounding noise. With `distance_bias`, the bias closing each
    chain of factors (a coarse-to-fine bank has two: its coarse copy and the whole bank) is recomputed
    as -|m~|^2/2 from the int8 bank m~ (the product of the chain's dequantized matrices), so the graph
    computes exact distances to the int8 bank and never goes negative."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    producers = {output: n for n in model.graph.node for output in n.output}
    stored: dict[str, tuple[str, np.ndarray]] = {}  # initializer -> (dequantized tensor, [in, out] weight)
    matrices: dict[str, np.ndarray] = {}  # changed MatMul/Gemm node -> its dequantized [in, out] weight
    changed = 0
    for node in nodes_named(model, set(node_names).__contains__, ("MatMul", "Gemm", "Conv")):
        source = behind_identities(node.input[1], producers) if len(node.input) >= 2 else ""
        if source in stored:
            node.input[1], matrices[node.name] = stored[source]
            changed += 1
            continue
        if source not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[source]).astype(np.float32)
        if node.op_type == "Conv":
            if weight.ndim == 4:
                _conv_weight_only(model, node, weight)
                changed += 1
            continue
        if weight.ndim == 3 and node.op_type == "MatMul":  # batched: the Gaussian head's precision factors
            quantized, scale = _quantize_batched(weight)
            node.input[1] = source
            _dequantize(model, node, quantized, scale, 0, lower_triangles=_triangular(weight))
            changed += 1
            continue
        if weight.ndim != 2:
            continue
        axis = 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
        quantized, scale = _quantize_columns(weight, axis)
        node.input[1] = source
        _dequantize(model, node, quantized, scale, axis)
        changed += 1
        dequantized = quantized.astype(np.float32) * (scale[:, None] if axis == 0 else scale[None, :])
        matrices[node.name] = dequantized.T if axis == 0 else dequantized
        stored[source] = (node.input[1], matrices[node.name])
    if distance_bias:
        for chain in _factor_chains(model, matrices):
            _refresh_distance_bias(model, chain)
    consumed = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    for bypassed in [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in consumed]:
        model.graph.node.remove(bypassed)  # it passed a float weight that both users now read as int8
    used = {name for n in model.graph.node for name in n.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return changed


SHAPE_ONLY_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def _factor_chains(
    model: onnx.ModelProto, matrices: dict[str, np.ndarray]
) -> list[list[tuple[onnx.NodeProto, np.ndarray]]]:
    """The changed MatMul/Gemm nodes grouped into chains (each feeding the next, perhaps through a
    reshape: ONNX Runtime's MatMul+Add fusion flattens a Gemm's input), in graph order."""
    producers = {output: n for n in model.graph.node for output in n.output}

    def feeder(node: onnx.NodeProto) -> str:
        source = producers.get(node.input[0])
        while source is not None and source.op_type in SHAPE_ONLY_OPS:
            source = producers.get(source.input[0])
        return source.name if source is not None and source.name in matrices else ""

    nodes = [n for n in model.graph.node if n.name in matrices]
    feeders = {n.name: feeder(n) for n in nodes}
    fed_by = {feeders[n.name]: n for n in nodes if feeders[n.name]}
    chains = []
    for head in (n for n in nodes if not feeders[n.name]):
        chain = [head]
        while chain[-1].name in fed_by:
            chain.append(fed_by[chain[-1].name])
        chains.append([(n, matrices[n.name]) for n in chain])
    return chains


def _refresh_distance_bias(model: onnx.ModelProto, chain: list[tuple[onnx.NodeProto, np.ndarray]]) -> None:
    """Set the bias after the chain's last node to -|m~|^2/2 of the entries the chain really holds."""
    from onnx import numpy_helper

    effective = chain[0][1]
    for _, weight in chain[1:]:
        if weight.shape[0] != effective.shape[1]:
            return  # not one chain of factors: leave the biases alone
        effective = effective @ weight
    last = chain[-1][0]
    initializers = {init.name: init for init in model.graph.initializer}
    bias = (-0.5 * (effective.astype(np.float64) ** 2).sum(axis=0)).astype(np.float32)
    if last.op_type == "Gemm" and len(last.input) >= 3 and last.input[2] in initializers:
        holder, slot = last, 2
    else:  # batched MatMul + Add(bias), as exported for [N, positions, C] patches
        consumers = [n for n in model.graph.node if last.output[0] in n.input]
        if len(consumers) != 1 or consumers[0].op_type != "Add":
            return
        holder = consumers[0]
        slot = 1 - list(holder.input).index(last.output[0])
        if holder.input[slot] not in initializers:
            return
        if tuple(initializers[holder.input[slot]].dims) != bias.shape:
            return
    name = f"{holder.input[slot]}_int8_bank_norms"
    model.graph.initializer.append(numpy_helper.from_array(bias, name))
    holder.input[slot] = name


def nodes_named(
    model: onnx.ModelProto, named: Callable[[str], bool], op_types: Collection[str] | None = None
) -> list[onnx.NodeProto]:
    """The nodes whose name passes `named` (and whose op is one of `op_types`), in graph order: how the
    op groups, the bank and the weights to store as int8 are picked. A list, so callers may insert nodes
    into the graph while they go through it."""
    return [n for n in model.graph.node if named(n.name) and (op_types is None or n.op_type in op_types)]
