"""Healing: distil the uncompressed model into the factorized one on good images only.

The student learns the teacher's patch embeddings (`extract_features`) and its anomaly map, so no defect
labels are needed; held-out good images decide early stopping and the best weights are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


@dataclass
class HealingResult:
    steps_run: int = 0
    best_step: int = 0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    kept: bool = True  # False: the healed weights scored worse than the unhealed ones and were dropped
    check: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def _teacher_targets(teacher: nn.Module, images: np.ndarray, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    features, maps = [], []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
        f = teacher.extract_features(x)
        features.append(f)
        maps.append(teacher.score_features(f, (x.shape[1], x.shape[2]))[0])
    return torch.cat(features), torch.cat(maps)


def distillation_loss(
    student: nn.Module,
    images: torch.Tensor,
    features: torch.Tensor,
    maps: torch.Tensor,
    map_weight: float,
    scales: tuple[float, float],
) -> torch.Tensor:
    """Feature MSE + anomaly-map MSE, each divided by a fixed teacher energy (`scales`) so neither term
    dominates. The scales are constants: the teacher's maps on its own bank images are ~0, so a per-batch
    normalization would blow the map term up."""
    predicted = student.extract_features(images)
    loss = ((predicted - features) ** 2).mean() / scales[0]
    if map_weight > 0:
        predicted_map = student.score_features(predicted, (images.shape[1], images.shape[2]))[0]
        loss = loss + map_weight * ((predicted_map - maps) ** 2).mean() / scales[1]
    return loss


@dataclass
class _Targets:
    """Good images and what the teacher makes of them: what the student must reproduce."""

    images: torch.Tensor
    features: torch.Tensor
    maps: torch.Tensor

    @classmethod
    def of(cls, teacher: nn.Module, images: np.ndarray, batch_size: int) -> _Targets:
        features, maps = _teacher_targets(teacher, images, batch_size)
        return cls(torch.from_numpy(np.ascontiguousarray(images)), features, maps)

    def loss(
        self, student: nn.Module, index: torch.Tensor | slice, map_weight: float, scales: tuple[float, float]
    ) -> torch.Tensor:
        return distillation_loss(
            student, self.images[index], self.features[index], self.maps[index], map_weight, scales
        )

    @torch.no_grad()
    def mean_loss(
        self, student: nn.Module, batch_size: int, map_weight: float, scales: tuple[float, float]
    ) -> float:
        total = 0.0
        for start in range(0, len(self.images), batch_size):
            batch = slice(start, start + batch_size)
            total += float(self.loss(student, batch, map_weight, scales)) * len(self.images[batch])
        return total / len(self.images)


def heal(
    student: nn.Module,
    teacher: nn.Module,
    train_images: np.ndarray,
    val_images: np.ndarray,
    steps: int,
    lr: float = 3e-4,
    batch_size: int = 8,
    eval_every: int = 25,
    patience: int = 4,
    map_weight: float = 1.0,
    seed: int = 0,
    track: Callable[[nn.Module], dict[str, float]] | None = None,
    frozen_prefixes: tuple[str, ...] = ("memory_bank.",),
    progress: bool = True,
) -> HealingResult:
    """Fine-tune `student` in place for up to `steps` Adam steps; BatchNorm statistics stay frozen
    (eval mode) because a few hundred good images would only make them worse. Parameters under
    `frozen_prefixes` stay fixed: the bank is data, not weights, and training its distance terms lets
    them go negative (clamped to 0, so the map goes blank)."""
    result = HealingResult()
    if steps <= 0:
        return result
    if len(train_images) == 0 or len(val_images) == 0:
        raise ValueError("healing needs at least one training and one validation image")
    generator = torch.Generator().manual_seed(seed)
    train = _Targets.of(teacher, train_images, batch_size)
    val = _Targets.of(teacher, val_images, batch_size)
    scales = (
        max(float((train.features**2).mean()), 1e-12),
        max(float((val.maps**2).mean()), 1e-12),  # held-out maps: a typical good-image anomaly level
    )
    params = [
        p
        for name, p in student.named_parameters()
        if p.requires_grad and not name.startswith(frozen_prefixes)
    ]
    optimizer = torch.optim.Adam(params, lr=lr)
    student.eval()

    def validate() -> float:
        return val.mean_loss(student, batch_size, map_weight, scales)

    best_state = copy.deepcopy(student.state_dict())
    result.best_val_loss = validate()
    result.history.append({"step": 0, "val_loss": result.best_val_loss, **(track(student) if track else {})})
    stale = 0
    bar = tqdm(range(1, steps + 1), desc="healing", disable=not progress, leave=False)
    running = 0.0
    for step in bar:
        index = torch.randint(len(train.images), (min(batch_size, len(train.images)),), generator=generator)
        loss = train.loss(student, index, map_weight, scales)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.item() if step == 1 else 0.9 * running + 0.1 * loss.item()
        result.steps_run = step
        if step % eval_every == 0 or step == steps:
            val_loss = validate()
            entry = {"step": step, "train_loss": running, "val_loss": val_loss}
            entry.update(track(student) if track else {})
            result.history.append(entry)
            bar.set_postfix(train=f"{running:.4f}", val=f"{val_loss:.4f}")
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_step, stale = val_loss, step, 0
                best_state = copy.deepcopy(student.state_dict())
            else:
                stale += 1
                if stale >= patience:
                    result.stopped_early = True
                    break
    student.load_state_dict(best_state)
    return result
