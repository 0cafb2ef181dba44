"""Run tensorly decompositions on the PyTorch backend without leaking the global backend to callers."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import tensorly as tl
import torch


@contextmanager
def torch_backend() -> Iterator[None]:
    """tensorly keeps its backend in global state; scope it so other tensorly users are unaffected.

    ALS runs thousands of tiny ops, which only lose to thread hand-offs, so they run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tl.backend_context("pytorch"), warnings.catch_warnings():
            # tensorly warns when an SVD init asks for more vectors than a mode has; it clamps, which is fine.
            warnings.filterwarnings("ignore", message=".*n_eigenvecs.*", category=UserWarning)
            yield
    finally:
        torch.set_num_threads(threads)
