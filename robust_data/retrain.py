"""The training sets a curation is judged by, and the models trained on them, per seed.

For one seed s a preset gives four training sets of the same training split:

``reference``           every original, no variants (the recipe as the reference model uses it)
``curated``             the kept originals plus the plan's variants (fragile points get more
                        under ``focus``), class weights when the preset balances by weights
``random_subset``       as many originals as curated, drawn at random (seed s), plus the same
                        number of variant images of the same transforms spread evenly over them
``all_with_variants``   every original plus that same number of variant images, spread evenly

so that curated and random_subset have exactly the same number of training images and differ
only in which originals (and which of them get the variants) were chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from robust_data.arrays import SampleArrays
from robust_data.models import ModelConfig, TrainedModel, train_model
from robust_data.policies import Preset, class_weights, spread
from robust_data.report import random_subset
from robust_data.variants import apply_transform, parse_transform

TRAINING_SETS = ("reference", "curated", "random_subset", "all_with_variants")


@dataclass
class TrainingSet:
    """Images a model trains on.

    Attributes
    ----------
    images : np.ndarray
        (N, C, H, W) float32 in [0, 1]: originals first, then variants.
    labels : np.ndarray
        (N,) int64.
    originals, variants : int
        How many of the N are originals and how many variants.
    weights : np.ndarray or None
        (K,) loss weight per class, or None for equal weights.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    originals: int
    variants: int
    weights: np.ndarray | None = None


def with_variants(
    data: SampleArrays, copies: np.ndarray, transforms: Sequence[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s images followed by ``copies[i]`` variants of sample i per transform.

    Copy c of a sample under a transform is keyed by (seed, c, sample_id): the same sample
    gets the same c-th copy whichever set it is in.

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N + V, C, H, W) float32 images and (N + V,) labels.
    """
    images, labels = [data.images], [data.labels]
    x = torch.from_numpy(np.ascontiguousarray(data.images))
    y = torch.from_numpy(np.asarray(data.labels, np.int64))
    for spec in transforms:
        transform = parse_transform(spec)
        for c in range(int(copies.max(initial=0))):
            chosen = np.flatnonzero(copies > c)
            ids = [data.sample_ids[i] for i in chosen]
            index = torch.from_numpy(chosen)
            out = apply_transform(transform, x[index], y[index], ids, seed * 1009 + c)
            images.append(out.clamp(0, 1).numpy().astype(np.float32))
            labels.append(data.labels[chosen])
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def training_sets(
    train: SampleArrays,
    kept: np.ndarray,
    steps_to_flip: np.ndarray,
    preset: Preset,
    seed: int,
    classes: int,
    max_steps: int,
    names: Sequence[str] = TRAINING_SETS,
) -> dict[str, TrainingSet]:
    """The training sets of one seed (see the module docstring).

    Parameters
    ----------
    train : SampleArrays
        The N originals of the training split.
    kept : np.ndarray
        (N,) bool, the curation's kept samples.
    steps_to_flip : np.ndarray
        (N,) int, try at which each point flipped (<= 0 for robust points), for ``focus``.
    """
    kept = np.asarray(kept, bool)
    if len(kept) != len(train) or len(steps_to_flip) != len(train):
        raise ValueError(
            f"expected kept and steps_to_flip for each of {len(train)} samples; found "
            f"{len(kept)} and {len(steps_to_flip)}"
        )
    plan = preset.plan
    chosen = train.where(kept)
    copies = plan.copies_per_sample(np.asarray(steps_to_flip)[kept], max_steps)
    if not plan.transforms:
        copies = np.zeros(len(chosen), np.int64)
    budget = int(copies.sum())  # per transform
    out: dict[str, TrainingSet] = {}
    if "reference" in names:
        out["reference"] = TrainingSet("reference", train.images, train.labels, len(train), 0)
    if "curated" in names:
        images, labels = with_variants(chosen, copies, plan.transforms, seed)
        weights = class_weights(labels, classes) if preset.balance == "weights" else None
        out["curated"] = TrainingSet(
            "curated", images, labels, len(chosen), len(labels) - len(chosen), weights
        )
    if "random_subset" in names:
        subset = random_subset(train, len(chosen), seed)
        images, labels = with_variants(
            subset, spread(len(subset), budget, seed), plan.transforms, seed
        )
        out["random_subset"] = TrainingSet(
            "random_subset", images, labels, len(subset), len(labels) - len(subset)
        )
    if "all_with_variants" in names:
        images, labels = with_variants(
            train, spread(len(train), budget, seed), plan.transforms, seed
        )
        out["all_with_variants"] = TrainingSet(
            "all_with_variants", images, labels, len(train), len(labels) - len(train)
        )
    return out


def train_on(
    training: TrainingSet,
    recipe: ModelConfig,
    classes: int,
    seed: int,
    device: str = "auto",
    progress: bool = False,
) -> TrainedModel:
    """The reference recipe trained on ``training`` with model seed ``recipe.seed + seed``."""
    return train_model(
        replace(recipe, seed=recipe.seed + seed),
        training.images,
        training.labels,
        classes,
        device=device,
        progress=progress,
        desc=f"train {training.name} (seed {seed})",
        evaluate=False,
        class_weights=training.weights,
    )
