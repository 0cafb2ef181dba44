"""Try on real DEV images: a PaDiM-like branch beside the memory bank, before building it into the model.

Aligned real parts (solar cells, machined parts in a fixture) have a place for everything: a busbar here,
a corner there. The bank asks "does this patch look like any good patch anywhere"; a per-position Gaussian
asks "does it look like what good parts show *here*", which is what PaDiM does and why it beat our head
on real parts. This script fits, on the same whitened patch embeddings the bank uses:

    bank      the default model's own map (what ships today)
    pos_mean  distance to the good parts' mean at that position, Mahalanobis with one residual covariance
    padim     per-position full covariance (PaDiM proper), for reference
    bank+pos  both maps, each standardised by its held-back good images' spread, then the larger

and reports image AUROC (good vs defective) and recall at <= 1 % false rejects on DEV (elpv_mono) only.
Usage: .venv/bin/python benchmarks/real/position_gaussian.py --data /tmp/real [--category elpv_mono]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_search import DEV, HOLDOUT_FRACTION, MAX_FALSE_REJECTS, load_category

from vision import metrics
from vision.config import ModelSettings
from vision.train import fit_model, prepare_images, split_holdout

SHRINK = 0.01


@torch.inference_mode()
def features_of(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    out = [model.extract_features(torch.from_numpy(images[i : i + 16])) for i in range(0, len(images), 16)]
    return torch.cat(out)  # [N, C, h, w]


def inverse_covariance(residuals: torch.Tensor) -> torch.Tensor:
    """residuals [M, C] -> shrunk inverse covariance [C, C]."""
    cov = torch.cov(residuals.T.double())
    cov = cov + SHRINK * torch.trace(cov) / cov.shape[0] * torch.eye(cov.shape[0], dtype=cov.dtype)
    return torch.linalg.inv(cov).float()


def mahalanobis_map(features: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """features [N, C, h, w], mean [C, h, w], precision [C, C] or [h*w, C, C] -> distances [N, h, w]."""
    n, c, h, w = features.shape
    diff = (features - mean).permute(0, 2, 3, 1).reshape(n, h * w, c)
    if precision.dim() == 2:
        d2 = torch.einsum("npc,cd,npd->np", diff, precision, diff)
    else:
        d2 = torch.einsum("npc,pcd,npd->np", diff, precision, diff)
    return d2.clamp_min(0).sqrt().reshape(n, h, w)


def image_scores(maps: torch.Tensor, model: torch.nn.Module, size: int) -> np.ndarray:
    up = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return model.blur(up).flatten(1).amax(dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/real"))
    parser.add_argument("--category", default=DEV[0], choices=DEV)
    parser.add_argument("--neighbourhood", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_category(args.data, args.category)
    settings = ModelSettings(neighbourhood=args.neighbourhood)
    size = settings.image_size
    train = prepare_images(list(data.train), size)
    fit_idx, held_idx = split_holdout(len(train), HOLDOUT_FRACTION, settings.seed)
    model = fit_model(list(train[fit_idx]), settings, progress=False)
    test = prepare_images(list(data.test), size)
    strict = np.isin(np.array(data.kinds), ["good", "defective"])
    labels = data.labels[strict]

    fit_f, held_f, test_f = (features_of(model, x) for x in (train[fit_idx], train[held_idx], test))
    mean = fit_f.mean(dim=0)
    c = fit_f.shape[1]
    shared = inverse_covariance((fit_f - mean).permute(0, 2, 3, 1).reshape(-1, c))
    per_position = torch.stack(
        [inverse_covariance(fit_f[:, :, i, j]) for i in range(fit_f.shape[2]) for j in range(fit_f.shape[3])]
    )
    with torch.inference_mode():
        bank_test = torch.cat([model(torch.from_numpy(test[i : i + 16]))[1] for i in range(0, len(test), 16)])
        bank_held = torch.cat(
            [model(torch.from_numpy(train[held_idx][i : i + 16]))[1] for i in range(0, len(held_idx), 16)]
        )
    scores = {"bank": bank_test.numpy()}
    held_scores = {"bank": bank_held.numpy()}
    for name, precision in (("pos_mean", shared), ("padim", per_position)):
        scores[name] = image_scores(mahalanobis_map(test_f, mean, precision), model, size)
        held_scores[name] = image_scores(mahalanobis_map(held_f, mean, precision), model, size)
    # Fewer dimensions (PaDiM keeps 100 random channels): the leading principal directions of the good
    # patches, or a random subset, then per-position covariance in that space.
    flat = fit_f.permute(0, 2, 3, 1).reshape(-1, c)
    _, _, vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
    generator = torch.Generator().manual_seed(0)
    for name, basis in (
        ("padim_pca32", vh[:32].T),
        ("padim_pca64", vh[:64].T),
        ("padim_rand100", torch.eye(c)[:, torch.randperm(c, generator=generator)[:100]]),
    ):
        project = lambda f, b=basis: torch.einsum("nchw,ck->nkhw", f, b)  # noqa: E731
        fit_p, held_p, test_p = project(fit_f), project(held_f), project(test_f)
        mean_p = fit_p.mean(dim=0)
        precision = torch.stack(
            [
                inverse_covariance(fit_p[:, :, i, j])
                for i in range(fit_p.shape[2])
                for j in range(fit_p.shape[3])
            ]
        )
        scores[name] = image_scores(mahalanobis_map(test_p, mean_p, precision), model, size)
        held_scores[name] = image_scores(mahalanobis_map(held_p, mean_p, precision), model, size)

    def z(name: str) -> np.ndarray:
        return (scores[name] - held_scores[name].mean()) / held_scores[name].std()

    scores["bank+pos"] = np.maximum(z("bank"), z("pos_mean"))
    scores["bank+padim"] = np.maximum(z("bank"), z("padim"))
    scores["sum bank+pos"] = z("bank") + z("pos_mean")
    report = {
        name: {
            "auroc_defective": metrics.image_auroc(labels, s[strict]),
            "recall_at_1pct_fr": metrics.recall_at_false_reject_rate(labels, s[strict], MAX_FALSE_REJECTS),
        }
        for name, s in scores.items()
    }
    print(json.dumps({"category": args.category, "neighbourhood": args.neighbourhood, **report}, indent=1))


if __name__ == "__main__":
    main()
