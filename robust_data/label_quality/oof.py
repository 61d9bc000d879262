"""Out-of-fold predicted probabilities (stratified K-fold) and embeddings for cleanlab.

cleanlab needs predicted probabilities that no model saw the label of: each training sample's
``pred_probs`` come from the fold model that was trained without it. Embeddings (for outliers
and near-duplicates) come from the reference model (robust_data.label_quality.embeddings).
The folds run in one process (:func:`out_of_fold`) or as one step each (:func:`fold_plan`,
:func:`oof_fold`, :func:`merge_folds`); the table is robust_data.label_quality.oof_table's.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import SampleArrays, decode_samples, num_classes
from robust_data.label_quality.embeddings import reference_embeddings
from robust_data.label_quality.oof_table import OOF_SCHEMA, list_column, matrix_column
from robust_data.scoring.models import ModelOptions, TrainedModel, predict_logits
from robust_data.scoring.training import train_model
from robust_data.store.schema import table_metadata


@dataclass(frozen=True)
class OofOptions:
    """How to compute out-of-fold predictions.

    Attributes
    ----------
    folds : int
        Stratified folds (>= 2). Reduced, with a warning, to the smallest class's size.
    model : ModelOptions
        Architecture and recipe of every fold model (its seed is offset by the fold number).
    embedding_dim : int
        PCA components kept from the penultimate activations (>= 1; fewer if D or N is
        smaller).
    seed : int
        Seeds the fold assignment, the PCA and the rows the PCA is fitted on.
    device : str
        Where the fold models train and predict: ``auto`` (CUDA when present), ``cpu`` or
        ``cuda``.
    pca_fit_rows : int
        Above this many samples the PCA is fitted on a seeded sample of this many rows and the
        rest are embedded and projected in chunks, so peak memory is bounded by this count, not
        by N (penultimate activations are 9,216 floats per MNIST image for simple_cnn: 1.8 GB
        at 50,000 images). At or below it every row is fitted, as before.
    """

    folds: int = 5
    model: ModelOptions = field(default_factory=ModelOptions)
    embedding_dim: int = 64
    seed: int = 0
    device: str = "auto"
    pca_fit_rows: int = 8192

    def __post_init__(self) -> None:
        for name, least in (("folds", 2), ("embedding_dim", 1), ("pca_fit_rows", 2)):
            if getattr(self, name) < least:
                raise RobustDataError(
                    f"{name} >= {least}",
                    str(getattr(self, name)),
                    f"pass {least} or more",
                    options=(name,),
                )


@dataclass
class OofResult:
    """Out-of-fold outputs for N training samples, row-aligned.

    Attributes
    ----------
    sample_ids : list of str
    labels : np.ndarray
        (N,) int64 given labels.
    fold : np.ndarray
        (N,) int32 in [0, folds).
    pred_probs : np.ndarray
        (N, K) float32, rows sum to 1.
    embeddings : np.ndarray
        (N, D) float32.
    folds : int
        Folds actually used.
    warnings : list of str
    seconds, train_seconds : float
        Whole stage, and the part spent training fold models.
    """

    sample_ids: list[str]
    labels: np.ndarray
    fold: np.ndarray
    pred_probs: np.ndarray
    embeddings: np.ndarray
    folds: int
    warnings: list[str]
    seconds: float
    train_seconds: float

    def table(self, params: dict | None = None) -> pa.Table:
        """The ``oof_predictions`` table (:data:`OOF_SCHEMA`)."""
        table = pa.table(
            {
                "sample_id": pa.array(self.sample_ids, pa.string()),
                "label": pa.array(self.labels, pa.int64()),
                "fold": pa.array(self.fold, pa.int32()),
                "pred_probs": list_column(self.pred_probs),
                "embedding": list_column(self.embeddings),
            },
            schema=OOF_SCHEMA,
        )
        meta = {"folds": self.folds, "warnings": self.warnings, **(params or {})}
        return table.replace_schema_metadata(table_metadata("oof_predictions", "raw_samples", meta))


def fold_count(labels: np.ndarray, requested: int) -> tuple[int, list[str]]:
    """Folds to use for ``labels`` (N,) and the warnings that explain a reduction.

    Raises
    ------
    DatasetError
        When some class has fewer than 2 samples: no stratified split can hold it out.
    """
    counts = np.bincount(labels)
    present = counts[counts > 0]
    smallest = int(present.min()) if present.size else 0
    if smallest < 2:
        rare = [int(c) for c in np.flatnonzero(counts == smallest)][:5]
        raise DatasetError(
            "at least 2 training samples in every class for cross-validation",
            f"{smallest} in class(es) {rare}",
            "drop those classes or add samples",
        )
    if smallest >= requested:
        return requested, []
    message = (
        f"folds reduced from {requested} to {smallest}: the smallest class has only "
        f"{smallest} training samples"
    )
    return smallest, [message]


@dataclass(frozen=True)
class FoldPlan:
    """The stratified folds of N training samples.

    Attributes
    ----------
    folds : int
        Folds actually used (the request, reduced to the smallest class's size).
    held : tuple of np.ndarray
        ``folds`` arrays of row indices into the training samples: the rows each fold model
        never sees. Disjoint; together they are 0..N-1.
    warnings : tuple of str
        Why the fold count was reduced, if it was.
    """

    folds: int
    held: tuple[np.ndarray, ...]
    warnings: tuple[str, ...]


def plan_folds(labels: np.ndarray, options: OofOptions) -> FoldPlan:
    """The seeded stratified folds of ``labels`` (N,); the same on every machine."""
    from sklearn.model_selection import StratifiedKFold  # imported when used: it takes seconds

    folds, notes = fold_count(labels, options.folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=options.seed)
    held = tuple(h for _, h in splitter.split(np.zeros(len(labels)), labels))
    return FoldPlan(folds, held, tuple(notes))


@dataclass
class FoldPredictions:
    """One fold model's out-of-fold predictions.

    Attributes
    ----------
    fold : int
        0..folds-1.
    held : np.ndarray
        (M,) row indices into the training samples that this fold held out.
    pred_probs : np.ndarray
        (M, K) float32 class probabilities of the fold model; rows sum to 1.
    train_seconds : float
    """

    fold: int
    held: np.ndarray
    pred_probs: np.ndarray
    train_seconds: float


def fit_fold(
    train: SampleArrays,
    classes: int,
    plan: FoldPlan,
    k: int,
    options: OofOptions,
    progress: bool = True,
) -> FoldPredictions:
    """Train fold ``k``'s model on every other fold and predict the rows it held out.

    The model's seed is ``options.model.seed + k``, so a fold gives the same probabilities
    whether it runs alone (one step per fold) or in a loop.
    """
    if not 0 <= k < plan.folds:
        raise ValueError(f"expected a fold in 0..{plan.folds - 1}; found {k}")
    held = plan.held[k]
    fit = np.setdiff1d(np.arange(len(train)), held, assume_unique=True)
    model = train_model(
        replace(options.model, seed=options.model.seed + k),
        train.images[fit],
        train.labels[fit],
        classes,
        device=options.device,
        progress=progress,
        desc=f"fold {k + 1}/{plan.folds}",
        evaluate=False,
    )
    logits = predict_logits(model.model, train.images[held], device=options.device)
    return FoldPredictions(k, held, _softmax(logits), model.train_seconds)


def combine_folds(
    train: SampleArrays,
    classes: int,
    reference: TrainedModel,
    plan: FoldPlan,
    fits: list[FoldPredictions],
    options: OofOptions,
    started: float | None = None,
) -> OofResult:
    """Every fold's predictions in training-row order, plus the reference embeddings.

    Raises
    ------
    DatasetError
        Unless ``fits`` holds each fold of ``plan`` exactly once.
    """
    found = sorted(f.fold for f in fits)
    if found != list(range(plan.folds)):
        raise DatasetError(
            f"predictions of folds 0..{plan.folds - 1} once each",
            str(found),
            "re-run the missing fold steps",
        )
    started = time.perf_counter() if started is None else started
    fold = np.zeros(len(train), np.int32)
    pred_probs = np.zeros((len(train), classes), np.float32)
    for fit in fits:
        pred_probs[fit.held] = fit.pred_probs
        fold[fit.held] = fit.fold
    embeddings = reference_embeddings(reference.model, train.images, options)
    return OofResult(
        sample_ids=list(train.sample_ids),
        labels=train.labels.astype(np.int64),
        fold=fold,
        pred_probs=pred_probs,
        embeddings=embeddings,
        folds=plan.folds,
        warnings=list(plan.warnings),
        seconds=time.perf_counter() - started,
        train_seconds=sum(f.train_seconds for f in fits),
    )


def out_of_fold(
    train: SampleArrays,
    classes: int,
    reference: TrainedModel,
    options: OofOptions | None = None,
    progress: bool = True,
) -> OofResult:
    """Stratified K-fold training: out-of-fold ``pred_probs`` and reference-model embeddings.

    The one-process loop over :func:`plan_folds`, :func:`fit_fold` and
    :func:`combine_folds`; the ``oof_predictions`` asset runs the same calls as one step per
    fold.

    Parameters
    ----------
    train : SampleArrays
        The training samples (images (N, C, H, W) in [0, 1], labels (N,)).
    classes : int
        K, the class count.
    reference : TrainedModel
        The model whose penultimate activations become the embeddings.
    options : OofOptions, optional
    progress : bool
        A progress bar per fold.
    """
    options = options or OofOptions()
    started = time.perf_counter()
    plan = plan_folds(train.labels, options)
    for note in plan.warnings:
        warnings.warn(note, stacklevel=2)
    fits = [fit_fold(train, classes, plan, k, options, progress) for k in range(plan.folds)]
    return combine_folds(train, classes, reference, plan, fits, options, started)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _train_split(samples: pa.Table) -> tuple[SampleArrays, int]:
    data = decode_samples(samples, splits=("train",))
    if len(data) == 0:
        raise DatasetError(
            "a train split for cross-validation",
            "no train rows",
            "ingest a dataset with a train split",
        )
    return data, num_classes(samples)


def oof_predictions(
    samples: pa.Table,
    reference: TrainedModel,
    options: OofOptions | None = None,
    progress: bool = True,
) -> OofResult:
    """Out-of-fold predictions for the train split of a samples table, in one process."""
    data, classes = _train_split(samples)
    return out_of_fold(data, classes, reference, options, progress)


FOLD_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("fold", pa.int32(), nullable=False),
        pa.field("pred_probs", pa.list_(pa.float32()), nullable=False),
    ]
)
"""One fold step's output: a row per held-out training sample (``row`` indexes the train
split in raw_samples order) with the fold model's probabilities."""


def fold_plan(samples: pa.Table, options: OofOptions) -> FoldPlan:
    """:func:`plan_folds` over the train split of a samples table (the plan step's call)."""
    data, _ = _train_split(samples)
    return plan_folds(data.labels, options)


def oof_fold(samples: pa.Table, k: int, options: OofOptions, progress: bool = True) -> pa.Table:
    """Fold ``k`` of the train split as a :data:`FOLD_SCHEMA` table (one fold step's call).

    The schema metadata keeps the fold's training seconds.
    """
    data, classes = _train_split(samples)
    fit = fit_fold(data, classes, plan_folds(data.labels, options), k, options, progress)
    table = pa.table(
        {
            "sample_id": pa.array([data.sample_ids[i] for i in fit.held], pa.string()),
            "row": pa.array(fit.held, pa.int64()),
            "fold": pa.array(np.full(len(fit.held), k, np.int32)),
            "pred_probs": list_column(fit.pred_probs),
        },
        schema=FOLD_SCHEMA,
    )
    return table.replace_schema_metadata({"train_seconds": f"{fit.train_seconds:.6f}"})


def merge_folds(
    samples: pa.Table,
    folds: list[pa.Table],
    reference: TrainedModel,
    options: OofOptions,
) -> OofResult:
    """The fold steps' tables (:func:`oof_fold`) joined with the reference embeddings.

    Equal to :func:`oof_predictions` on the same inputs (same folds, seeds and models).

    Raises
    ------
    DatasetError
        When a fold is missing or repeated, or a fold table names other samples than the
        train split holds at its rows (the samples changed since the folds ran).
    """
    data, classes = _train_split(samples)
    plan = plan_folds(data.labels, options)
    fits = []
    for table in folds:
        rows = table.column("row").to_numpy()
        ids = table.column("sample_id").to_pylist()
        if len(rows) and (rows.max() >= len(data) or [data.sample_ids[i] for i in rows] != ids):
            raise DatasetError(
                "fold predictions of the current train split",
                "other sample ids",
                "re-materialize oof_predictions",
            )
        meta = table.schema.metadata or {}
        fits.append(
            FoldPredictions(
                int(table.column("fold")[0].as_py()) if table.num_rows else -1,
                rows,
                matrix_column(table, "pred_probs"),
                float(meta.get(b"train_seconds", b"0")),
            )
        )
    return combine_folds(data, classes, reference, plan, fits, options)
