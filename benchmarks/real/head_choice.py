"""`model.head: auto` against the head that won, per set: the alignment ratio of each set's good images.

For every real set (`edgeinspect dataset import elpv|mtd|ksdd`) and every synthetic hard-suite DEV surface
(`edgeinspect dataset make --suite hard`), the ratio `vision.head_choice.choose_head` measures on the set's
training images, the head it picks, and the image AUROC each head scored in the searches' logs
(benchmarks/real/search.json: `gaussian_nbhd3` and the bank variants; benchmarks/vision/hard/search.json:
`w_s8_gaussian_nbhd3` and `w_s8`). A set whose images are not on this machine keeps the ratio measured in
the previous run (head_choice.json; the ratio does not depend on the boundary).

Near the boundary (`HeadChoice.near`) a build does not trust the ratio: it fits both heads and keeps the one
that better separates the held-back good images from synthetic defects drawn on them. That figure is
measured here for every set through the build's own function (`vision.train.fit_better_head`), so the
table shows whether it would pick the better head away from the boundary too. Usage:

    .venv/bin/python benchmarks/real/head_choice.py --real /work/data_real --synthetic /work/data_syn
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vision.build_inputs import split_holdout
from vision.config import ModelSettings
from vision.data.mvtec import MvtecCategory, load_image
from vision.head_choice import ALIGNED_BELOW, CHOICE_IMAGES, NEAR, PROXY_MARGIN, choose_head
from vision.train import fit_better_head

HERE = Path(__file__).resolve().parent
REAL = {
    "elpv_mono": "dev",
    "mtd_dev": "dev",
    "ksdd_dev": "dev",
    "elpv_poly": "holdout",
    "mtd_holdout": "holdout",
    "ksdd_holdout": "holdout",
}
SYNTHETIC = ("tile", "stone", "carpet", "weave", "tissue")  # the hard suite's DEV surfaces
# The variants whose figures stand for each head in the logs (a bank with 3x3 aggregation where one ran).
# Today's heads first (the truncated Gaussian since round 15; the bank with 3x3 aggregation).
REAL_HEADS = {"gaussian": ("g3_gaussian", "gaussian_nbhd3", "default"), "bank": ("nbhd3", "bank")}
SYNTHETIC_HEADS = {"gaussian": "w_s8_gaussian_nbhd3", "bank": "w_s8"}


def _real_auroc(log: dict[str, Any], category: str, head: str) -> tuple[float | None, str | None]:
    for variant in REAL_HEADS[head]:
        figures = log["variants"].get(variant, {}).get(REAL[category], {}).get(category)
        if figures:
            return figures["auroc_defective"], variant
    return None, None


def _synthetic_auroc(log: dict[str, Any], category: str, head: str) -> tuple[float | None, str | None]:
    variant = SYNTHETIC_HEADS[head]
    figures = log["variants"].get(variant, {}).get("categories", {}).get(category)
    return (figures["image_auroc"], variant) if figures else (None, None)


def measure(root: Path, category: str, previous: dict[str, Any]) -> dict[str, Any]:
    if not (root / category).is_dir() and category in previous:
        return {
            k: previous[category][k]
            for k in ("alignment", "ratio_pick", "auto", "proxy")
            if k in previous[category]
        }
    settings = ModelSettings()
    paths = MvtecCategory.load(root, category).train_good
    images = np.stack([load_image(path, settings.image_size) for path in paths])
    picks = np.linspace(0, len(paths) - 1, min(CHOICE_IMAGES, len(paths))).round().astype(int)
    choice = choose_head(images[picks], settings)
    fit_idx, held_idx = split_holdout(len(images), 0.2, settings.seed)
    _, compared, _ = fit_better_head(images[fit_idx], images[held_idx], settings, choice, progress=False)
    return {
        "alignment": choice.alignment,
        "ratio_pick": choice.head,
        "auto": compared.head if choice.near else choice.head,
        "proxy": dict(compared.tried),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("/work/data_real"))
    parser.add_argument("--synthetic", type=Path, default=Path("/work/data_syn"))
    parser.add_argument(
        "--render", action="store_true", help="keep the measured ratios and proxies; refresh the heads' AUROC"
    )
    args = parser.parse_args()
    real_log = json.loads((HERE / "search.json").read_text())
    synthetic_log = json.loads((HERE.parent / "vision" / "hard" / "search.json").read_text())
    rows = []
    old_rows = json.loads((HERE / "head_choice.json").read_text())["rows"]
    previous = {row["set"]: row for row in old_rows}
    for category in [*REAL, *SYNTHETIC]:
        real = category in REAL
        measured = (
            {
                k: previous[category][k]
                for k in ("alignment", "ratio_pick", "auto", "proxy")
                if k in previous[category]
            }
            if args.render
            else measure(args.real if real else args.synthetic, category, previous)
        )
        row: dict[str, Any] = {
            "set": category,
            "kind": "real" if real else "synthetic",
            "split": REAL[category] if real else "dev",
            **measured,
        }
        for head in ("gaussian", "bank"):
            auroc, variant = (_real_auroc if real else _synthetic_auroc)(
                real_log if real else synthetic_log, category, head
            )
            row[head] = {"image_auroc": auroc, "variant": variant}
        scored = {h: row[h]["image_auroc"] for h in ("gaussian", "bank") if row[h]["image_auroc"] is not None}
        row["better"] = max(scored, key=lambda h: scored[h]) if len(scored) == 2 else None
        proxy = row.get("proxy") or {}
        row["proxy_pick"] = max(proxy, key=proxy.__getitem__) if len(proxy) == 2 else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    (HERE / "head_choice.json").write_text(
        json.dumps({"aligned_below": ALIGNED_BELOW, "rows": rows}, indent=2)
    )
    (HERE / "head_choice.md").write_text(markdown(rows))


def _auroc(cell: dict[str, Any]) -> str:
    if cell["image_auroc"] is None:
        return "—"
    return f"{cell['image_auroc']:.3f} (`{cell['variant']}`)"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# `model.head: auto`: the alignment ratio against the head that won",
        "",
        "Alignment ratio = variance across images at a position / all variance, on the raw patch "
        f"embeddings of up to {CHOICE_IMAGES} training images at 256 px (`vision.head_choice`). The ratio "
        f"picks the per-position Gaussian below {ALIGNED_BELOW}, the bank at or above; within {NEAR} of "
        "the boundary `auto` fits both heads and measures their image AUROC on synthetic defects drawn on "
        "the held-back good images (`vision.proxy_defects`; measured here for every set, as "
        "'synthetic-defect AUROC'; 'it picks' is the higher); the other head replaces the ratio's only when "
        f"it leads by more than {PROXY_MARGIN} (since 2026-12-08). Image AUROC of each head on the real "
        "test images from the searches' "
        "logs (real: `benchmarks/real/search.json`; synthetic: `benchmarks/vision/hard/search.json`). "
        "Generated by `benchmarks/real/head_choice.py`.",
        "",
        "| set | kind | split | alignment | ratio picks | synthetic-defect AUROC (Gaussian / bank) "
        "| it picks | auto picks | Gaussian AUROC | bank AUROC | better head | auto right |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        right = "—" if row["better"] is None else ("yes" if row["better"] == row["auto"] else "**no**")
        proxy = row.get("proxy") or {}
        figures = f"{proxy['gaussian']:.3f} / {proxy['bank']:.3f}" if len(proxy) == 2 else "—"
        lines.append(
            f"| {row['set']} | {row['kind']} | {row['split']} | {row['alignment']:.3f} | "
            f"{row.get('ratio_pick', row['auto'])} | {figures} | {row.get('proxy_pick') or '—'} | "
            f"{row['auto']} | "
            f"{_auroc(row['gaussian'])} | {_auroc(row['bank'])} | {row['better'] or '—'} | {right} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
