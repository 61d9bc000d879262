"""The training sets a curation is judged by, and the models trained on them, per seed.

For one seed s a preset gives four training sets of the same training split:

``reference``           every original, no variants (the recipe as the reference model uses it)
``curated``             the kept originals plus the plan's variants (fragile points get more
                        under ``focus``), class weights when the preset balances by weights
``random_subset``       as many originals of each class as curated, drawn at random (seed s),
                        plus the same number of variant images per class from the same
                        transforms, plain keyed draws spread evenly within the class
``all_with_variants``   every original plus that same number of variant images per class

so that curated and random_subset have the same budget class by class and differ only in
which originals were chosen (and repaired), which variants (mined or drawn) and where they go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from robust_data.curation.budget import class_spread
from robust_data.curation.presets import Preset, VariantPlan, class_weights
from robust_data.defaults import MAX_STEPS
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.scoring.models import ModelOptions, TrainedModel, accuracy
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import save_model
from robust_data.store.checks import CheckOutcome
from robust_data.store.schema import column, column_by_id, table_metadata
from robust_data.variants.make import apply_transform, copy_key, parse_transform
from robust_data.variants.mining import FlipSource, MiningOptions, mine

TRAINING_SETS = ("reference", "curated", "random_subset", "all_with_variants")

RETRAINED_SCHEMA = pa.schema(
    [
        column(
            "seed",
            pa.int64(),
            "0..seeds-1; the model's seed is the recipe's plus this",
            nullable=False,
        ),
        column(
            "model", pa.string(), "The training set: " + ", ".join(TRAINING_SETS), nullable=False
        ),
        column("path", pa.string(), "The weight file", nullable=False),
        column("sha256", pa.string(), "sha256 of the weight file's bytes", nullable=False),
        column("train_size", pa.int64(), "Training images: originals + variants", nullable=False),
        column("originals", pa.int64(), "Training samples it saw", nullable=False),
        column("variants", pa.int64(), "Variant images it saw", nullable=False),
        column("test_accuracy", pa.float64(), "In [0, 1]; higher is better"),
    ]
)
"""One row per (seed, training set): the models a report compares."""


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


def random_subset(data: SampleArrays, size: int, seed: int) -> SampleArrays:
    """``size`` samples of ``data`` chosen with a local seeded generator (stratification: none)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(data), bool)
    mask[rng.choice(len(data), size=min(size, len(data)), replace=False)] = True
    return data.where(mask)


def with_variants(
    data: SampleArrays, copies: np.ndarray, transforms: Sequence[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s images followed by ``copies[i]`` variants of sample i per transform.

    Copy c of a sample under a transform is keyed by (copy_key(seed, c), sample_id): the same
    sample gets the same c-th copy whichever set it is in, and as the stored variants of seed 0.

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N + V, C, H, W) float32 images and (N + V,) labels.
    """
    copies = np.asarray(copies, np.int64)
    total = len(data) + len(transforms) * int(copies.sum())
    images = np.empty((total, *data.images.shape[1:]), np.float32)  # filled in place: the
    images[: len(data)] = data.images  # variants are held once, not once more to concatenate
    labels = [data.labels]
    x = torch.from_numpy(np.ascontiguousarray(data.images))
    y = torch.from_numpy(np.array(data.labels, np.int64))  # a writable copy
    start = len(data)
    for spec in transforms:
        transform = parse_transform(spec)
        for c in range(int(copies.max(initial=0))):
            chosen = np.flatnonzero(copies > c)
            ids = [data.sample_ids[i] for i in chosen]
            index = torch.from_numpy(chosen)
            out = apply_transform(transform, x[index], y[index], ids, copy_key(seed, c))
            images[start : start + len(chosen)] = out.clamp(0, 1).numpy()
            start += len(chosen)
            labels.append(data.labels[chosen])
    return images, np.concatenate(labels).astype(np.int64)


def add_variants(data: SampleArrays, variants: pa.Table) -> SampleArrays:
    """``data`` followed by the rows of a ``variants`` table whose parent is in ``data``.

    Gives the random-subset baseline the same variants the curated export carries, so the two
    differ only in which originals were chosen.
    """
    chosen = pa.array(list(data.sample_ids), pa.string())
    rows = variants.filter(pc.is_in(variants.column("parent_sample_id"), chosen))
    rows = rows.select(["variant_id", "split", "label", "image"]).rename_columns(
        ["sample_id", "split", "label", "image"]
    )
    extra = decode_samples(rows)
    if not len(extra):
        return data
    return SampleArrays(
        list(data.sample_ids) + extra.sample_ids,
        np.concatenate([data.images, extra.images]),
        np.concatenate([data.labels, extra.labels]),
        np.concatenate([data.splits, extra.splits]),
    )


def class_subset(data: SampleArrays, counts: np.ndarray, seed: int) -> SampleArrays:
    """``counts[c]`` samples of each class c of ``data`` (all it has when fewer), seeded."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(data), bool)
    for c, count in enumerate(np.asarray(counts, np.int64)):
        members = np.flatnonzero(data.labels == c)
        take = min(int(count), len(members))
        mask[rng.choice(members, size=take, replace=False)] = True
    return data.where(mask)


@dataclass(frozen=True)
class CuratedInputs:
    """What the curated training set is made from, besides the originals.

    Attributes
    ----------
    labels : np.ndarray or None
        (N,) int64 labels after curation (a review's or a repair's ``new_label``); None: as
        stored.
    model : nn.Module or None
        The reference model, which mines hard variants (plans with ``mining`` other than
        ``none``).
    flip_scheme : str
        The RPR scoring's scheme, which regenerates each fragile point's flipping try.
    flip_seed : int
        The RPR scoring's seed.
    """

    labels: np.ndarray | None = None
    model: nn.Module | None = None
    flip_scheme: str = "pixels"
    flip_seed: int = 0


def curated_variants(
    chosen: SampleArrays,
    copies: np.ndarray,
    steps: np.ndarray,
    plan: VariantPlan,
    seed: int,
    inputs: CuratedInputs,
) -> tuple[np.ndarray, np.ndarray]:
    """The curated originals followed by the plan's variants (mined when the plan mines).

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N + V, C, H, W) float32 images and (N + V,) labels.
    """
    if plan.mining == "none" or not plan.transforms:
        return with_variants(chosen, copies, plan.transforms, seed)
    if inputs.model is None:
        raise RobustDataError(
            f"the reference model to mine variants ({plan.mining})",
            "none",
            "pass it (CuratedInputs.model), or a plan with mining='none'",
            options=("mining",),
        )
    mined = mine(
        chosen.images,
        chosen.labels,
        chosen.sample_ids,
        inputs.model,
        plan.transforms,
        copies,
        MiningOptions(plan.mining, plan.candidates, seed),
        FlipSource(steps, inputs.flip_scheme, inputs.flip_seed),
    )
    labels = np.concatenate([chosen.labels, chosen.labels[mined.parent]]).astype(np.int64)
    images = np.empty((len(labels), *chosen.images.shape[1:]), np.float32)
    images[: len(chosen)] = chosen.images  # filled in place: no second copy of the variants
    images[len(chosen) :] = mined.images
    return images, labels


def training_sets(
    train: SampleArrays,
    kept: np.ndarray,
    steps_to_flip: np.ndarray,
    preset: Preset,
    seed: int,
    classes: int,
    max_steps: int,
    names: Sequence[str] = TRAINING_SETS,
    inputs: CuratedInputs = CuratedInputs(),
) -> dict[str, TrainingSet]:
    """The training sets of one seed (see the module docstring).

    The baselines match the curated set class by class: ``random_subset`` draws as many
    originals of each class as curated keeps (by the labels it trains with) and both
    baselines get each class's variant count, from the same transforms, as plain keyed draws
    spread evenly within the class: no mining, no fragility weighting, no label repair.

    Parameters
    ----------
    train : SampleArrays
        The N originals of the training split.
    kept : np.ndarray
        (N,) bool, the curation's kept samples.
    steps_to_flip : np.ndarray
        (N,) int, try at which each point flipped (<= 0 for robust points), for ``focus``.
    inputs : CuratedInputs
        Relabels, and the reference model when the plan mines.
    """
    kept = np.asarray(kept, bool)
    if len(kept) != len(train) or len(steps_to_flip) != len(train):
        raise ValueError(
            f"expected kept and steps_to_flip for each of {len(train)} samples; found "
            f"{len(kept)} and {len(steps_to_flip)}"
        )
    plan = preset.plan
    trained_labels = train.labels if inputs.labels is None else np.asarray(inputs.labels)
    chosen = replace(train.where(kept), labels=np.asarray(trained_labels, np.int64)[kept])
    steps = np.asarray(steps_to_flip, np.int64)[kept]
    copies = plan.copies_per_sample(steps, max_steps, chosen.labels, seed)
    if not plan.transforms:
        copies = np.zeros(len(chosen), np.int64)
    budget = np.bincount(chosen.labels, weights=copies, minlength=classes).astype(np.int64)
    per_class = np.bincount(chosen.labels, minlength=classes)
    out: dict[str, TrainingSet] = {}
    if "reference" in names:
        out["reference"] = TrainingSet("reference", train.images, train.labels, len(train), 0)
    if "curated" in names:
        images, labels = curated_variants(chosen, copies, steps, plan, seed, inputs)
        weights = class_weights(labels, classes) if preset.balance == "weights" else None
        out["curated"] = TrainingSet(
            "curated", images, labels, len(chosen), len(labels) - len(chosen), weights
        )
    if "random_subset" in names:
        subset = class_subset(train, per_class, seed)
        images, labels = with_variants(
            subset, class_spread(subset.labels, budget, seed), plan.transforms, seed
        )
        out["random_subset"] = TrainingSet(
            "random_subset", images, labels, len(subset), len(labels) - len(subset)
        )
    if "all_with_variants" in names:
        images, labels = with_variants(
            train, class_spread(train.labels, budget, seed), plan.transforms, seed
        )
        out["all_with_variants"] = TrainingSet(
            "all_with_variants", images, labels, len(train), len(labels) - len(train)
        )
    return out


def train_on(
    training: TrainingSet,
    recipe: ModelOptions,
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


@dataclass(frozen=True)
class RetrainOptions:
    """Which models to train for a report.

    Attributes
    ----------
    seeds : int
        Seeds 0..seeds-1 (>= 1; intervals need >= 2). Each seed trains every training set.
    names : tuple of str
        Training sets (see :data:`TRAINING_SETS`); ``reference`` and ``curated`` always.
    max_steps : int
        The RPR cap the ``steps_to_flip`` were scored with (fragility for ``focus``).
    device : str
        Where the models train: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    seeds: int = 3
    names: tuple[str, ...] = TRAINING_SETS
    max_steps: int = MAX_STEPS
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise RobustDataError(
                "seeds >= 1",
                str(self.seeds),
                "pass `seeds=3` (the default)",
                options=("seeds",),
            )
        unknown = sorted(set(self.names) - set(TRAINING_SETS))
        if unknown:
            raise RobustDataError(
                f"training sets from {TRAINING_SETS}",
                str(unknown),
                "name only those",
                options=("names",),
            )


@dataclass(frozen=True)
class StoredModel:
    """A model already on disk (the reference model of seed 0)."""

    model: TrainedModel
    path: str
    sha256: str


def reuses(reference: StoredModel) -> bool:
    """Whether the stored reference is seed 0's ``reference`` model: it is, unless it is your
    TorchScript file (trained elsewhere, not by the recipe)."""
    return reference.model.config.spec.kind != "torchscript"


def retrain_models(
    train: SampleArrays,
    test: SampleArrays,
    kept: np.ndarray,
    steps_to_flip: np.ndarray,
    preset: Preset,
    recipe: ModelOptions,
    classes: int,
    path_for: Callable[[str, int], str | Path],
    reference: StoredModel | None = None,
    options: RetrainOptions = RetrainOptions(),
    progress: bool = True,
    inputs: CuratedInputs = CuratedInputs(),
) -> pa.Table:
    """Train every training set of every seed with ``recipe``, save each, measure test accuracy.

    One training set is in memory at a time. The reference of seed 0 is ``reference`` when
    given (the stored reference model: the same recipe and seed on the same originals), except
    when it is your TorchScript file, which was not trained by the recipe: then it is trained
    like the others, from the file's model re-initialised (robust_data.scoring.spec).

    Parameters
    ----------
    train, test : SampleArrays
        The training split's N originals, and the test split.
    kept, steps_to_flip : np.ndarray
        (N,) bool kept by the curation; (N,) int try of the flip, <= 0 for robust points.
    path_for : callable
        (training set, seed) -> where its weight file goes (written atomically).
    inputs : CuratedInputs
        Relabels and the mining model; without a model, ``reference``'s mines.

    Returns
    -------
    pa.Table
        :data:`RETRAINED_SCHEMA`, rows seed by seed in :data:`TRAINING_SETS` order, with the
        robust_data table metadata (the options and the preset as parameters).
    """
    names = [n for n in TRAINING_SETS if n in {"reference", "curated", *options.names}]
    if inputs.model is None and reference is not None:
        inputs = replace(inputs, model=reference.model.model)
    rows = []
    for seed in range(options.seeds):
        for name in names:
            (training,) = training_sets(
                train,
                kept,
                steps_to_flip,
                preset,
                seed,
                classes,
                options.max_steps,
                (name,),
                inputs,
            ).values()
            if name == "reference" and seed == 0 and reference is not None and reuses(reference):
                model, path, sha = reference.model, reference.path, reference.sha256
            else:
                model = train_on(training, recipe, classes, seed, options.device, progress)
                path = str(path_for(name, seed))
                sha = save_model(model, path).sha256
            rows.append(
                {
                    "seed": seed,
                    "model": name,
                    "path": path,
                    "sha256": sha,
                    "train_size": len(training.labels),
                    "originals": training.originals,
                    "variants": training.variants,
                    "test_accuracy": accuracy(
                        model.model, test.images, test.labels, options.device
                    ),
                }
            )
            del training
    params = {**asdict(options), "names": list(options.names), "preset": preset.name}
    meta = table_metadata(
        "retrained_model", "raw_samples, rpr_scores, curation_ledger, reference_model", params
    )
    return pa.Table.from_pylist(rows, schema=RETRAINED_SCHEMA).replace_schema_metadata(meta)


def curation_inputs(
    train: SampleArrays, ledger: pa.Table, rpr: pa.Table
) -> tuple[np.ndarray, np.ndarray]:
    """``kept`` (N,) bool from a curation ledger and ``steps_to_flip`` (N,) int64 (0: robust)
    from the ``rpr_scores`` table, both in the order of ``train``'s samples (the labels
    curated trains with: :func:`curated_labels`).

    Raises
    ------
    DatasetError
        When a training sample is missing from either table (they are from another run).
    """
    ids = list(train.sample_ids)
    kept = column_by_id(ledger, ids, "kept")
    steps = column_by_id(rpr, ids, "steps_to_flip", default=-1)
    missing = [i for i, k, s in zip(ids, kept, steps, strict=True) if k is None or s == -1]
    if missing:
        raise DatasetError(
            "every training sample in curation_ledger and rpr_scores",
            f"{len(missing):,} missing (e.g. {missing[0]})",
            "re-materialize the curation job",
        )
    return np.asarray(kept, bool), np.asarray([s or 0 for s in steps], np.int64)


def curated_labels(train: SampleArrays, ledger: pa.Table) -> np.ndarray:
    """(N,) int64 labels in ``train``'s order: the ledger's ``new_label`` (a review's or a
    repair's) where set, else the stored label."""
    new = column_by_id(ledger, list(train.sample_ids), "new_label")
    return np.asarray(
        [int(n) if n is not None else int(y) for n, y in zip(new, train.labels, strict=True)],
        np.int64,
    )


def stored_curated_inputs(train: SampleArrays, ledger: pa.Table, rpr: pa.Table) -> CuratedInputs:
    """The relabels of a curation ledger and the RPR scoring's scheme and seed (the model is
    the reference, which :func:`retrain_models` fills in)."""
    scheme = str(rpr.column("scheme")[0].as_py()) if rpr.num_rows else "pixels"
    seed = int(rpr.column("seed")[0].as_py()) if rpr.num_rows else 0
    return CuratedInputs(curated_labels(train, ledger), None, scheme, seed)


#: Guard (a warning, not blocking): a retrained model loses at most this much test accuracy
#: against the reference.
MAX_ACCURACY_LOSS = 0.01


def check_accuracy_loss(
    retrained: pa.Table, reference_accuracy: float | None = None, limit: float = MAX_ACCURACY_LOSS
) -> CheckOutcome:
    """``retrained_model``: no model's mean test accuracy is more than ``limit`` below the
    reference's.

    Accuracies are averaged over the table's seeds per model; the reference's is the mean of
    its ``reference`` rows, or ``reference_accuracy`` when the table has none. ``limit`` and
    accuracies in [0, 1]; higher accuracy is better. Passes when there is no reference figure.
    """
    rows = [r for r in retrained.to_pylist() if r["test_accuracy"] is not None]
    means = {
        m: float(np.mean([r["test_accuracy"] for r in rows if r["model"] == m]))
        for m in dict.fromkeys(r["model"] for r in rows)
    }
    reference = means.pop("reference", reference_accuracy)
    problems = []
    worst = {}
    for model, mean in means.items():
        if reference is None:
            continue
        loss = reference - mean
        worst[model] = round(loss, 4)
        if loss > limit:
            problems.append(
                f"{model} test accuracy {mean:.4f} is {loss * 100:.1f} pt below the "
                f"reference's {reference:.4f} (limit {limit * 100:.0f} pt, means over seeds): "
                "expected curation not to cost accuracy; keep more data (clean or focus preset)"
            )
    return CheckOutcome(problems, {"accuracy_loss": worst})
