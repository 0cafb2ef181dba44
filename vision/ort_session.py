"""One way to set up an ONNX Runtime CPU session: the station's inspector, a model being taught or built
(from bytes, before it is a file) and the benchmarks that time them all open theirs here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort


def cpu_session_options(threads: int) -> ort.SessionOptions:
    """A fixed thread count, sequential execution, every graph optimisation, warnings only, and no
    spin-waiting between operators.

    ONNX Runtime's worker threads spin for work by default; on the 2-core box they then steal the cores
    that the camera driver and capture need between one frame and the next. Measured on Aravis's fake
    GigE camera, 1280x1024 Mono8 at 30 fps (benchmarks/camera, 2 cores, 30 s each, interleaved): spinning
    dropped 25-27 frames and gave capture -> decision p99 201-368 ms; without it 0 dropped, p99 54-73 ms,
    and the model alone as fast (12.4 ms p50 both). Several sessions in one process (recipes, benchmarks
    timing models in turn) would likewise spin against each other.

    Spinning only inside a run (`session.force_spinning_stop`, no CPU after it) was tried on 2026-12-07:
    the model alone up to 1.3x faster in a quiet process, but with the camera running it still takes the
    driver's core during inference (3 interleaved runs each: free-run p99 23-31 ms against 21-26, trigger
    p99 29-72 against 31-60); the camera path's tails are the targets, so no spinning at all."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_session(data: bytes, threads: int) -> ort.InferenceSession:
    """A CPU session on a serialized model held in memory."""
    return ort.InferenceSession(
        data, sess_options=cpu_session_options(threads), providers=["CPUExecutionProvider"]
    )


def run_each(
    session: ort.InferenceSession,
    output: str,
    images: np.ndarray,
    done: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """One named output per uint8 NHWC image, each fed alone (the deployed batch of one); `done(i, n)`
    after each image, for progress."""
    name = session.get_inputs()[0].name
    rows = []
    for index, image in enumerate(images):
        rows.append(session.run([output], {name: np.ascontiguousarray(image[None])})[0])
        if done is not None:
            done(index + 1, len(images))
    return rows


def image_scores(
    data: bytes, images: np.ndarray, threads: int, done: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """The image score of each uint8 NHWC image under the serialized model `data`."""
    rows = run_each(cpu_session(data, threads), "score", images, done)
    return np.array([float(np.ravel(row)[0]) for row in rows])
