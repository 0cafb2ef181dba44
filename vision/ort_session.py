"""One way to open an ONNX Runtime CPU session from model bytes held in memory (a model being taught or
built, before it is a file): a fixed thread count and warnings only."""

from __future__ import annotations

import onnxruntime as ort


def cpu_session(data: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
