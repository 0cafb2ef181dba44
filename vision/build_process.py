"""One station build in a process of its own, at the lowest CPU priority: what the running line needs.

A build on a thread of the line's process competes for the interpreter lock (protobuf copies of a 20 MB
graph hold it for hundreds of milliseconds) and numpy's BLAS threads, which a thread's nice value does
not reach: measured with 100 parts at 30 fps, the line's p99 rose from 76 ms to 2.2 s and 49 frames
dropped; in a child at nice 19, 0 dropped but p99 0.8 s; in the idle class, 0 dropped and p99 80 ms
(benchmarks/recipes/build_results.md). Here the build runs in a child process in Linux's idle scheduling
class (nice 19 elsewhere) with one BLAS and one ONNX Runtime thread, and reports to its parent as JSON
lines on stdout:

    {"stage": "features", "done": 12, "total": 100}      progress, any number of them
    {"result": {...}}                                      last line on success (see `result_record`)
    {"error": "..."}                                       last line when the build is refused (exit 2)

    python -m vision.build_process --template DIR --data DIR --category NAME --out FILE.onnx
"""

from __future__ import annotations

import os

# Before numpy is imported: one BLAS thread, so the build never takes a second core from the line.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

LOWEST_PRIORITY = 19


def result_record(built: Any, image_names: list[str]) -> dict[str, Any]:
    """What the parent needs of a `StationBuild`: the file, the threshold, and the held-back check."""
    return {
        "path": str(built.path),
        "threshold": built.threshold,
        "head_choice": built.head_choice.reason if built.head_choice is not None else None,
        "fit_images": built.fit_images,
        "held_back_images": [image_names[i] for i in built.held_back],
        "held_back_scores": list(built.held_back_scores),
        "seconds": built.seconds,
    }


def _lowest_priority() -> None:
    """Linux's idle class (a core only when nothing else wants it), else nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(LOWEST_PRIORITY - os.nice(0))


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--category", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    _lowest_priority()

    from vision.build_inputs import load_good_images
    from vision.station_build import build_on_station, load_kit

    try:
        kit = load_kit(args.template)
        size = next(iter(kit.values())).settings.image_size
        _emit({"stage": "loading", "done": 0, "total": 0})
        images, paths, sha256 = load_good_images(args.data, args.category, size, progress=False)
        built = build_on_station(
            kit,
            images,
            args.out,
            args.category,
            train_data_sha256=sha256,
            threads=1,
            progress=lambda stage, done, total: _emit({"stage": stage, "done": done, "total": total}),
        )
    except (ValueError, FileNotFoundError) as exc:  # StationBuildError is a ValueError
        _emit({"error": str(exc)})
        return 2
    _emit({"result": result_record(built, [p.name for p in paths])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
