"""Measure an ONNX file the way the edge box runs it: ORT CPU, batch 1, fixed threads, after warm-up."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vision.ort_session import cpu_session, cpu_session_options

if TYPE_CHECKING:
    import onnxruntime as ort

# Run in a fresh interpreter: in the benchmark's own process, memory freed by earlier sessions and by
# PyTorch is reused, so an RSS difference there reads ~0.
# VmHWM, not ru_maxrss: the latter is inherited from the (large) parent across fork and exec.
_MEMORY_PROBE = """
import sys, numpy as np, onnxruntime as ort
def kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
before = kib("VmRSS")
options = ort.SessionOptions()
options.intra_op_num_threads = int(sys.argv[1])
size = int(sys.argv[2])
sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in sys.argv[3:]]
for session in sessions:
    model_input = session.get_inputs()[0]
    side = model_input.shape[1] if isinstance(model_input.shape[1], int) else size
    frame = np.zeros((1, side, side, 3), dtype=np.uint8)
    for _ in range(5):
        session.run(None, {model_input.name: frame})
print(kib("VmHWM") - before)
"""


def session_peak_mib(path: str | Path, image_size: int, threads: int = 2) -> float:
    """Peak resident memory that loading and running the model adds to a fresh process (MiB)."""
    return sessions_peak_mib([path], image_size, threads)


def sessions_peak_mib(paths: Sequence[str | Path], image_size: int, threads: int = 2) -> float:
    """Peak resident memory that loading and running all these models, each in its own session (as a
    station holding several recipes' models does), adds to a fresh process (MiB)."""
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(threads), str(image_size), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(result.stdout.strip().splitlines()[-1]) / 1024.0


def open_session(path: str | Path, threads: int = 2) -> ort.InferenceSession:
    """A session set up as the station's inspector sets its own up (`vision.ort_session`)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), cpu_session_options(threads), providers=["CPUExecutionProvider"])


def session_from_bytes(model: bytes, threads: int = 2) -> ort.InferenceSession:
    """A session on a serialized model (layer micro-benchmarks never touch the disk)."""
    return cpu_session(model, threads)


def interleaved_times(
    paths: list[Path], image: np.ndarray, threads: int = 2, warmup: int = 3, runs: int = 30
) -> list[list[float]]:
    """ms per run of several models on one frame, run in turn, so background load hits them alike;
    entry i of every list comes from the same round. A model with another input size gets the frame
    resized to it, as the inspector would (resizing is not timed)."""
    from vision.inspector import resize_to_input

    sessions = [open_session(path, threads) for path in paths]
    frame = np.ascontiguousarray(image[None] if image.ndim == 3 else image)
    feeds = []
    for session in sessions:
        size = session.get_inputs()[0].shape[1]
        sized = (
            frame
            if not isinstance(size, int) or size == frame.shape[1]
            else resize_to_input(frame[0], size)[None]
        )
        feeds.append({session.get_inputs()[0].name: np.ascontiguousarray(sized)})
    for session, feed in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    for round_index in range(runs):
        # alternate the order so no model always runs right after another (caches, frequency, load)
        for index in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            sessions[index].run(None, feeds[index])
            times[index].append(1000.0 * (time.perf_counter() - start))
    return times


def interleaved_p50(
    paths: list[Path], image: np.ndarray, threads: int = 2, warmup: int = 3, runs: int = 30
) -> list[float]:
    """p50 ms of several models on one frame, interleaved (see `interleaved_times`)."""
    return [float(np.percentile(t, 50)) for t in interleaved_times(paths, image, threads, warmup, runs)]


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
    path: str | Path,
    image: np.ndarray,
    threads: int = 2,
    warmup: int = 3,
    runs: int = 20,
    peak_memory: bool = True,
) -> dict[str, float | None]:
    """p50/p99/mean ms, and (`peak_memory`) the peak memory of the model in a fresh process (MiB)."""
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
    del session
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(np.mean(times)),
        "peak_mib": session_peak_mib(path, feed[name].shape[1], threads) if peak_memory else None,
        "threads": threads,
        "runs": runs,
    }
