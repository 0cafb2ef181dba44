"""Per-layer latency on ONNX Runtime: each candidate factorization timed alone at the layer's real input.

MAC counts do not predict CPU time across methods (a TT chain of small GEMMs with transposes, or CP's
depthwise convs, can be slower than fewer, larger GEMMs), so `auto` compares methods by measured time.
The modules timed have the factorized structure with random weights (no decomposition is needed to
time them); candidates of one layer run interleaved so load from other processes hits all alike.
Results are cached in memory and, optionally, in a JSON file keyed by layer shape, method, rank and
ORT threads/version.
"""

from __future__ import annotations

import copy
import io
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from compression.layers import CPConv2d, SVDLinear, TTLinear, Tucker2Conv2d

if TYPE_CHECKING:
    import onnxruntime as ort

Option = tuple[str, int]  # (method, rank); ("dense", 0) is the layer itself
DENSE: Option = ("dense", 0)
_MEMORY: dict[str, float] = {}


@dataclass
class LayerTiming:
    """Measured p50 ms of a layer: dense, and per method at the ranks that were timed."""

    dense_ms: float
    points: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, method: str, rank: int, ms: float) -> None:
        self.points.setdefault(method, {})[rank] = ms

    def estimate(self, method: str, rank: int, macs: dict[int, int]) -> float | None:
        """ms at `rank`: the measurement if there is one, else interpolated in MACs between the method's
        measured ranks (`macs` maps each rank to its MACs): flat below the cheapest (fixed per-op costs
        dominate there), linear beyond the largest. None if the method was never timed."""
        measured = self.points.get(method, {})
        if rank in measured:
            return measured[rank]
        if not measured:
            return None
        xs = np.array([macs[r] for r in sorted(measured, key=lambda r: macs[r])], dtype=np.float64)
        ys = np.array([measured[r] for r in sorted(measured, key=lambda r: macs[r])], dtype=np.float64)
        x = float(macs[rank])
        if x <= xs[-1] or len(xs) < 2 or xs[-1] == xs[-2]:
            return float(np.interp(x, xs, ys))  # clamps to the end values outside the measured range
        slope = max((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 0.0)
        return float(ys[-1] + slope * (x - xs[-1]))

    def as_dict(self) -> dict[str, object]:
        return {
            "dense_ms": self.dense_ms,
            "candidates": {m: {str(r): ms for r, ms in sorted(p.items())} for m, p in self.points.items()},
        }


def shaped_module(layer: nn.Module, method: str, rank: int) -> nn.Module:
    """A module with `method`'s structure at `rank` for `layer`, random weights (timing only)."""
    if method == "dense":
        return copy.deepcopy(layer)
    if method == "tt":
        return TTLinear.shaped_like(layer, rank)
    if isinstance(layer, nn.Linear) and method == "svd":
        rank = min(rank, layer.in_features, layer.out_features)
        return SVDLinear(layer.in_features, layer.out_features, rank, bias=layer.bias is not None)
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"{method} cannot factorize {type(layer).__name__}")
    if method == "svd":
        if isinstance(layer.padding, str):
            raise ValueError(f"string padding {layer.padding!r} is not supported")
        (sh, sw), (ph, pw) = layer.stride, layer.padding[:2]
        return SVDLinear(
            layer.in_channels,
            layer.out_channels,
            min(rank, layer.in_channels, layer.out_channels),
            bias=layer.bias is not None,
            conv=True,
            stride=(int(sh), int(sw)),
            padding=(int(ph), int(pw)),
        )
    if method == "tucker2":
        return Tucker2Conv2d(layer, min(rank, layer.out_channels), min(rank, layer.in_channels))
    if method == "cp":
        return CPConv2d(layer, rank)
    raise ValueError(f"unknown factorization method {method!r}")


def _onnx_session(module: nn.Module, input_shape: tuple[int, ...], threads: int) -> ort.InferenceSession:
    from compression.onnx_bench import session_from_bytes

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(input_shape),),
            buffer,  # type: ignore[arg-type]  # a file-like object works; the stub says path only
            input_names=["x"],
            opset_version=17,
            dynamo=False,
        )
    return session_from_bytes(buffer.getvalue(), threads)


def _signature(layer: nn.Module) -> list[object]:
    if isinstance(layer, nn.Conv2d):
        return [
            "conv",
            layer.in_channels,
            layer.out_channels,
            list(layer.kernel_size),
            list(layer.stride),
            list(layer.padding),
            list(layer.dilation),
            layer.groups,
            layer.bias is not None,
        ]
    return ["linear", layer.in_features, layer.out_features, layer.bias is not None]


class LatencyCache:
    """Measured ms by key, in memory (per process) and optionally in a JSON file shared across runs."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.values: dict[str, float] = _MEMORY
        if self.path is not None and self.path.is_file():
            try:
                stored = json.loads(self.path.read_text())
            except (OSError, ValueError):
                stored = {}  # an unreadable cache is only a slower run
            self.values.update({str(k): float(v) for k, v in stored.items() if isinstance(v, (int, float))})

    @staticmethod
    def key(layer: nn.Module, input_shape: Sequence[int], option: Option, threads: int) -> str:
        import onnxruntime

        return json.dumps(
            [_signature(layer), list(input_shape), list(option), threads, onnxruntime.__version__]
        )

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.values, indent=0, sort_keys=True))


def time_options(
    layer: nn.Module,
    input_shape: Sequence[int],
    options: Sequence[Option],
    threads: int = 2,
    runs: int = 15,
    warmup: int = 2,
    cache: LatencyCache | None = None,
) -> dict[Option, float]:
    """p50 ms of each option of one layer (interleaved runs); cached options are not re-timed."""
    cache = cache or LatencyCache()
    shape = tuple(int(d) for d in input_shape)
    keys = {option: cache.key(layer, shape, option, threads) for option in dict.fromkeys(options)}
    todo = [option for option, key in keys.items() if key not in cache.values]
    if todo:
        sessions = [_onnx_session(shaped_module(layer, *option), shape, threads) for option in todo]
        feed = {"x": np.zeros(shape, dtype=np.float32)}
        for session in sessions:
            for _ in range(warmup):
                session.run(None, feed)
        times: list[list[float]] = [[] for _ in todo]
        order = list(range(len(sessions)))
        for round_index in range(runs):
            for index in order if round_index % 2 == 0 else order[::-1]:  # no fixed neighbour
                start = time.perf_counter()
                sessions[index].run(None, feed)
                times[index].append(1000.0 * (time.perf_counter() - start))
        for option, samples in zip(todo, times, strict=True):
            cache.values[keys[option]] = float(np.median(samples))
    return {option: cache.values[key] for option, key in keys.items()}
