"""Measure an ONNX file the way the edge box runs it: ORT CPU, batch 1, fixed threads, after warm-up."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np


def _rss_bytes() -> int:
    """Resident set size from /proc (Linux); 0 where unavailable."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def open_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_outputs(path: str | Path, images: np.ndarray, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(maps [N,H,W], scores [N]) from an exported model, one frame at a time as deployed."""
    session = open_session(path, threads)
    name = session.get_inputs()[0].name
    maps, scores = [], []
    for image in images:
        anomaly_map, score = session.run(None, {name: np.ascontiguousarray(image[None])})
        maps.append(anomaly_map[0, 0])
        scores.append(float(np.asarray(score).ravel()[0]))
    return np.stack(maps), np.asarray(scores, dtype=np.float32)


def measure_latency(
    path: str | Path, image: np.ndarray, threads: int = 2, warmup: int = 3, runs: int = 20
) -> dict[str, float]:
    """p50/p99/mean ms and the RSS growth from opening the session through the timed runs (MiB)."""
    gc.collect()
    before = _rss_bytes()
    session = open_session(path, threads)
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(image[None] if image.ndim == 3 else image)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(1000.0 * (time.perf_counter() - start))
    peak = _rss_bytes()
    del session
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(np.mean(times)),
        "rss_delta_mib": max(0.0, (peak - before) / 2**20),
        "threads": threads,
        "runs": runs,
    }
