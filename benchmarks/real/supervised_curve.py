"""Recall at 1 % false rejects against the number of confirmed defects taught (`vision.teach_defects`).

For each real category: the default model is built on train/good (`edgeinspect train`'s path), then for
k = 0, 5, 10, 20, 50 confirmed defects drawn at random (3 draws; MTD with its masks, and again as a line
gives them, `<set>:nomask`: confirmed, nobody drew the defect; ELPV has no masks) the
classifier branch is taught against the test good images' first third; the figures are measured on the
defects NOT taught and on the last third of the good images (never seen by the classifier nor the
calibration). k = 0 is the unsupervised model. DEV categories choose (the branch's scale); HOLDOUT
categories are run once with `--holdout`, taught from their own split's defects the same way.

    .venv/bin/python benchmarks/real/supervised_curve.py --data /work/data_real
    .venv/bin/python benchmarks/real/supervised_curve.py --data /work/data_real --holdout

Writes `benchmarks/real/supervised.json` and `supervised.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from compression.onnx_bench import interleaved_times
from vision import metrics
from vision.config import ModelSettings
from vision.data.mvtec import MvtecCategory
from vision.ort_session import cpu_session
from vision.teach import _as_input
from vision.teach import _scores as scores_of
from vision.teach_defects import DefectTeachOptions, LabelledDefect, teach_defects
from vision.train import train_model

HERE = Path(__file__).resolve().parent
NO_MASK = ":nomask"  # a category name's suffix: its confirmed defects are taught without their masks
DEV = ("mtd_dev", "mtd_dev" + NO_MASK, "elpv_mono")
HOLDOUT = ("mtd_holdout", "mtd_holdout" + NO_MASK, "elpv_poly")
COUNTS = (0, 5, 10, 20, 50)
# Tries around the branch, kept with the generator so the report and its reading stay together.
NOTES = (
    "- 2026-12-07, MTD dev, k=20, 3 draws: the branch adds nothing below the highest logit of any good "
    "image it was shown. Clamping at the 90th or 75th percentile of those images instead (a bolder "
    "branch, the threshold recalibrated as before): image AUROC 0.941 / 0.930 and recall at 1 % false "
    "rejects 0.44 / 0.44, against 0.945 / 0.41 with the max; dropped. A linear classifier over a patch's "
    "embedding and whitened residual separates 20 defects' patches from every good patch only this far; "
    "the 97 % target at 20 defects is missed by the features, as the unsupervised head is.",
    "- 2026-12-07, evening: the classifier got one hidden layer (64 ReLU units, Adam, at most 20,000 good "
    "patches; `vision.teach_defects.fit_classifier`), since a line confirms several kinds of defect that "
    "one straight cut does not separate. Chosen on DEV (tables above; the linear branch before it, same "
    "draws, AUROC / recall at 1 % false rejects for k = 5 / 10 / 20 / 50: MTD 0.941 / 0.41, 0.914 / 0.44, "
    "0.945 / 0.41, 0.942 / 0.41; ELPV mono 0.955 / 0.79, 0.956 / 0.78, 0.959 / 0.78, 0.960 / 0.78): DEV "
    "mean over both sets and the four k 0.947 -> 0.952 AUROC, 0.60 -> 0.62 recall; 16 units, or weight "
    "decay 0.01 instead of 0.001, were level or worse in a throw-away run. HOLDOUT, scored once: MTD gains "
    "at every k "
    "(linear 0.918 / 0.40, 0.902 / 0.25, 0.929 / 0.34, 0.940 / 0.47: the linear branch had taught MTD into "
    "more misses than teaching nothing, 0.934 / 0.48; now 0.937-0.943 and 0.43-0.53), ELPV poly loses "
    "(linear 0.918 / 0.44, 0.920 / 0.55, 0.921 / 0.46, 0.905 / 0.39; now 0.891-0.897 and 0.35-0.38, level "
    "with teaching nothing): HOLDOUT mean 0.919 -> 0.917 AUROC, 0.41 -> 0.42 recall. Kept: chosen on DEV, "
    "and no HOLDOUT cell is now worse than the untaught model by more than 0.4 points of AUROC (the linear "
    "branch's worst was -3.2). ELPV's defects carry no mask (each image's 2 % most unusual patches are the "
    "positives), which a wider classifier fits more tightly. The branch costs 0.5-0.6 ms per frame.",
    "- 2026-12-07, night: which patches of a confirmed defect WITHOUT a mask are the positives. A real line "
    "has no masks (an operator confirms an alert; nobody draws it), so MTD is now also taught with its "
    "masks hidden (`mtd_dev:nomask`). Tried on DEV with a throw-away script (3 draws, recall at 1 % false "
    "rejects / positives per defect, MTD dev without masks and ELPV mono, k = 20): the image's 2 % most "
    "unusual patches (before) 0.43 / 20 and 0.80 / 20; 1 % 0.49 on MTD; 5 % 0.47 on MTD; the connected "
    "region around the most unusual patch on the grid smoothed over one patch, above a share of the way "
    "from the image's lowest to its highest distance, at most 10 % of the patches: share 0.3 0.51 / 96 "
    "and 0.77 / 94, 0.5 0.53 / 55 and 0.75 / 73, 0.7 0.51 / 25 and 0.78 / 45; every region above 0.5 "
    "0.49 and 0.78; the 0.5 region plus the 2 % 0.49 and 0.76; MTD with its true masks 0.49 / 101. "
    "Chosen: the region at 0.7 (`unmasked_level`, best DEV mean at k = 20: 0.65 against 0.61; MTD gains "
    "in every draw, ELPV's spread cracks lose 1.4 points). Tables above re-run on DEV for the unmasked "
    "sets, and HOLDOUT once (k = 5 / 10 / 20 / 50): ELPV poly 0.38 / 0.36 / 0.36 / 0.35 -> 0.40 / "
    "0.39 / 0.39 / 0.41 (AUROC 0.891-0.897 -> 0.894-0.903), MTD holdout without masks 0.45 / 0.59 / 0.56 / "
    "0.50 against 0.48 untaught (with its masks 0.42-0.54). DEV ELPV mono 0.77 / 0.77 / 0.80 / 0.81 -> "
    "0.79 / 0.78 / 0.78 / 0.77; MTD dev without masks 0.45 / 0.42 / 0.51 / 0.57 (0.43 at k = 20 before). "
    "The MTD rows with masks are the same code path as before (within 0.01 of the last run).",
    "- 2026-12-08, night: re-run with today's default head (128 principal directions, each position "
    "keeping its 32 strongest; real/search.md round 15), so the tables above are that head's; the branch "
    "now reads a 32-wide whitened residual instead of 64. Against the previous head's run (AUROC / recall "
    "at 1 % false rejects at k = 0 / 20 / 50): DEV MTD 0.939 / 0.30, 0.949 / 0.48, 0.954 / 0.55 -> "
    "0.947 / 0.22, 0.949 / 0.48, 0.951 / 0.49; MTD without masks 0.943 / 0.51 and 0.952 / 0.57 at 20 / 50 "
    "-> 0.951 / 0.51 and 0.956 / 0.57; ELPV mono 0.954 / 0.78, 0.959 / 0.78, 0.958 / 0.77 -> 0.952 / "
    "0.80, 0.958 / 0.81, 0.957 / 0.78. HOLDOUT (once): ELPV poly 0.895 / 0.33, 0.896 / 0.39, 0.894 / 0.41 "
    "-> 0.910 / 0.33, 0.916 / 0.39, 0.912 / 0.39; MTD without masks (how a line teaches) 0.940 / 0.56 and "
    "0.940 / 0.50 at 20 / 50 -> 0.942 / 0.56 and 0.942 / 0.55; MTD WITH masks loses recall: 0.940 / "
    "0.52, 0.943 / 0.54 -> 0.944 / 0.38, 0.943 / 0.46 (k = 10: 0.44 -> 0.23). Untaught, the new head "
    "ranks better (AUROC up 0.8-1.5 points on MTD dev and ELPV poly) but its recall at 1 % on MTD dev's "
    "last third of good tiles is lower (0.22 vs 0.30: one or two good tiles set that threshold). The "
    "masked MTD HOLDOUT loss is the branch's, with half the residual width; left as measured.",
    "- 2026-12-08: which patches of a MASKED confirmed defect are the positives (the masked MTD rows lose "
    "recall to the unmasked ones on both splits). Throw-away script on MTD dev, the draws above, recall at "
    "1 % false rejects (AUROC) at k = 5 / 10 / 20 / 50, against every patch holding a masked pixel (today: "
    "0.39 / 0.48 / 0.48 / 0.49): patches at least half masked 0.39 / 0.42 / 0.44 / 0.47 (0.948-0.950); "
    "the unmasked rule's region around the most unusual patch, kept inside the mask, 0.37 / 0.45 / 0.44 "
    "/ 0.49 (0.948-0.955). Neither is better on DEV; dropped, the mask rule stays.",
)
DRAWS = 3
SIZE = 256


def _read(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image


def _scores(model: bytes, images: list[np.ndarray]) -> np.ndarray:
    return scores_of(cpu_session(model, 2), images, SIZE, lambda: None)


def interleaved_p50_ms(paths: list[Path], image: np.ndarray, rounds: int = 200) -> list[float]:
    """Median ms per frame of each model on one BGR image, 2 threads, the models taking turns each round."""
    rgb = _as_input(image, SIZE)[0]
    return [float(np.median(t)) for t in interleaved_times(paths, rgb, 2, 20, rounds)]


def run_category(root: Path, category: str, work: Path, scale: float) -> dict[str, Any]:
    name, hide_masks = category.removesuffix(NO_MASK), category.endswith(NO_MASK)
    model_path = work / f"{name}.onnx"
    if not model_path.exists():
        train_model(root, name, model_path, ModelSettings(), progress=False)
    parent = model_path.read_bytes()
    dataset = MvtecCategory.load(root, name)
    good = [_read(s.path) for s in dataset.test if s.label == 0]
    strict = [s for s in dataset.test if s.label == 1 and s.defect_type not in ("likely", "unlikely")]
    defects = [
        LabelledDefect(_read(s.path), None if hide_masks else _read(s.mask_path))  # type: ignore[arg-type]
        for s in strict
    ]
    evaluation = good[2::3]
    rows: dict[str, Any] = {}
    for count in COUNTS:
        draws = []
        for draw in range(DRAWS if count else 1):
            order = np.random.default_rng(draw).permutation(len(defects))
            taught, held = [defects[i] for i in order[:count]], [defects[i] for i in order[count:]]
            started = time.perf_counter()
            model = parent
            if count:
                options = DefectTeachOptions(scale=scale, threads=2)
                model = teach_defects(parent, taught, good, options=options).model_bytes  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
            good_scores = _scores(model, evaluation)  # type: ignore[arg-type]
            defect_scores = _scores(model, [d.image for d in held])
            labels = np.r_[np.zeros(len(good_scores)), np.ones(len(defect_scores))]
            values = np.r_[good_scores, defect_scores]
            draws.append(
                {
                    "auroc": metrics.image_auroc(labels, values),
                    "recall_at_1pct_fr": metrics.recall_at_false_reject_rate(labels, values, 0.01),
                    "teach_s": seconds,
                    "held_defects": len(held),
                }
            )
            if count == 20 and draw == 0:
                taught_path = work / f"{name}{'_nomask' if hide_masks else ''}_k20.onnx"
                taught_path.write_bytes(model)
                p50 = interleaved_p50_ms([model_path, taught_path], evaluation[0])  # type: ignore[arg-type]
                draws[-1]["p50_ms_before_after"] = p50
            print(json.dumps({"category": category, "k": count, "draw": draw, **draws[-1]}), flush=True)
        rows[str(count)] = {
            "auroc": float(np.mean([d["auroc"] for d in draws])),
            "recall_at_1pct_fr": float(np.mean([d["recall_at_1pct_fr"] for d in draws])),
            "teach_s": float(np.median([d["teach_s"] for d in draws])),
            "draws": draws,
        }
    return {
        "good_eval": len(evaluation),
        "defects": len(defects),
        "with_mask": sum(d.mask is not None for d in defects),
        "by_k": rows,
    }


def markdown(log: dict[str, Any]) -> str:
    lines = [
        "# Teaching confirmed defects: recall against the number taught",
        "",
        "Default model (`ModelSettings()`: per-position Gaussian head) built on each train/good, then "
        "`vision.teach_defects.teach_defects` with k confirmed defects drawn at random (mean of 3 draws). "
        "Measured on the defects not taught against the last third of the test good images (neither the "
        "classifier nor the calibration saw them): image AUROC / recall at <= 1 % false rejects. "
        "p50 ms: the untaught and the taught model (k=20, first draw) on one image, 2 threads, taking "
        "turns for 200 rounds. Generated by `benchmarks/real/supervised_curve.py`.",
        "",
        f"Machine: {log['machine']}.",
        "",
    ]
    for split, entry in log["splits"].items():
        lines += [
            f"## {split.upper()} (branch scale {entry['scale']})",
            "",
            "| category | "
            + " | ".join(f"k={k}" for k in COUNTS)
            + " | teach s (k=20) | p50 ms before / after |",
            "|---|" + "---|" * (len(COUNTS) + 2),
        ]
        for name, result in entry["categories"].items():
            cells = [
                f"{result['by_k'][str(k)]['auroc']:.3f} / {result['by_k'][str(k)]['recall_at_1pct_fr']:.2f}"
                for k in COUNTS
            ]
            timed = result["by_k"]["20"]["draws"][0].get("p50_ms_before_after")
            p50 = f"{timed[0]:.1f} / {timed[1]:.1f}" if timed else "-"
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {result['by_k']['20']['teach_s']:.0f} | {p50} |"
            )
        lines.append("")
    lines += ["## Notes", "", *NOTES]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data_real"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/supervised_work"))
    parser.add_argument("--holdout", action="store_true")
    parser.add_argument("--scale", type=float, default=DefectTeachOptions().scale)
    parser.add_argument("--categories", default=None)
    parser.add_argument("--report", action="store_true", help="only re-render supervised.md from the log")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    split = "holdout" if args.holdout else "dev"
    categories = args.categories.split(",") if args.categories else (HOLDOUT if args.holdout else DEV)
    out = HERE / "supervised.json"
    log = json.loads(out.read_text()) if out.exists() else {"splits": {}}
    if args.report:
        (HERE / "supervised.md").write_text(markdown(log))
        return
    log["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
    entry = log["splits"].setdefault(split, {"scale": args.scale, "categories": {}})
    entry["scale"] = args.scale
    for name in categories:
        entry["categories"][name] = run_category(args.data, name, args.work, args.scale)
        out.write_text(json.dumps(log, indent=1) + "\n")
        (HERE / "supervised.md").write_text(markdown(log))


if __name__ == "__main__":
    main()
