"""ONNX export with the metadata the edge box needs to trust and use a model file.

Fixed batch 1, uint8 NHWC RGB input named `image`, outputs `anomaly_map` and `score`: the inspector
checks exactly this contract before it loads a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("anomaly_map", "score")
INPUT_FORMAT = "uint8 NHWC RGB"
META_THRESHOLD = "edgeinspect.threshold"
META_INPUT_SIZE = "edgeinspect.input_size"
META_MODEL_NAME = "edgeinspect.model_name"
META_MODEL_VERSION = "edgeinspect.model_version"
META_TRAIN_DATA_SHA256 = "edgeinspect.train_data_sha256"
META_INPUT_FORMAT = "edgeinspect.input_format"
# A build template (`vision.build_template`): an unfitted Gaussian-head model a station fits without torch.
META_BUILD_TEMPLATE = "edgeinspect.build_template"
META_BUILD_SETTINGS = "edgeinspect.build_settings"  # the ModelSettings (JSON) the template was exported for
META_QUANTIZATION = "edgeinspect.quantization"  # an int8 file's: what was quantized and how
META_FEATURE_GROUPS = "edgeinspect.feature_groups"  # channels per tapped backbone block, comma-separated
REQUIRED_METADATA = (
    META_THRESHOLD,
    META_INPUT_SIZE,
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_TRAIN_DATA_SHA256,
    META_INPUT_FORMAT,
)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (model files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(model: nn.Module, path: str | Path, metadata: dict[str, str], image_size: int) -> Path:
    """Export `model` for a [1, image_size, image_size, 3] uint8 input; write atomically, return the path.

    `metadata` must hold every `REQUIRED_METADATA` key except `edgeinspect.input_size` and
    `edgeinspect.input_format`, which are filled in here from what was exported.
    """
    import onnx  # training-side dependencies; the edge box imports this module only for its constants
    import torch

    path = Path(path)
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    props = {str(k): str(v) for k, v in metadata.items()}
    props[META_INPUT_SIZE] = str(image_size)
    props[META_INPUT_FORMAT] = INPUT_FORMAT
    missing = [key for key in REQUIRED_METADATA if key not in props]
    if missing:
        raise ValueError(f"export metadata lacks {missing}")
    float(props[META_THRESHOLD])  # a non-numeric threshold fails here, not on the edge box

    model = model.eval()
    dummy = torch.zeros((1, image_size, image_size, 3), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # One plain pass first: fixed matrices a module builds on first use (the map's upsampling
            # and blur) are then cached tensors, which the tracer writes as constants, not as the ops
            # that built them.
            model(dummy)
            # Shape checks become constants under tracing: intended, the input size is fixed.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(raw),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(str(raw))
        share_equal_constants(proto)
        del proto.metadata_props[:]
        for key, value in sorted(props.items()):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        final = Path(tmp) / "final.onnx"
        onnx.save(proto, str(final))
        os.replace(final, path)
    return path


def share_equal_constants(proto: Any, min_bytes: int = 1024) -> int:
    """Keep one `Constant` node per distinct tensor of at least `min_bytes`: the tracer writes a cached
    tensor into the file once per use (the map blur's 256 KiB matrix, used by both of its products).
    Later users read the first copy, which precedes them in the (topologically sorted) node list.
    Returns the nodes removed."""
    first: dict[tuple[int, tuple[int, ...], bytes], str] = {}
    renamed: dict[str, str] = {}
    kept = []
    for node in proto.graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
        tensor = node.attribute[0].t if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if tensor is not None and len(tensor.raw_data) >= min_bytes:
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(tensor.raw_data).digest())
            if key in first:
                renamed[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        kept.append(node)
    for output in proto.graph.output:
        if output.name in renamed:
            raise ValueError(f"graph output {output.name!r} is a duplicated constant")
    removed = len(proto.graph.node) - len(kept)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return removed
