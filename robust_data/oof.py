"""Out-of-fold predicted probabilities (stratified K-fold) and embeddings for cleanlab.

cleanlab needs predicted probabilities that no model saw the label of: each training sample's
``pred_probs`` come from the fold model that was trained without it. Embeddings (for outliers
and near-duplicates) must share one space, so they come from one model: the reference model,
trained on the whole train split, with its penultimate activations reduced by PCA.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from torch import nn

from robust_data.arrays import SampleArrays, decode_samples, num_classes
from robust_data.models import ModelConfig, TrainedModel, embed, predict_logits, train_model
from robust_data.schema import table_metadata

OOF_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("fold", pa.int32(), nullable=False),
        pa.field("pred_probs", pa.list_(pa.float32()), nullable=False),
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    ]
)
"""One row per training sample: its held-out fold, out-of-fold probabilities, embedding."""

#: One line per column of :data:`OOF_SCHEMA`.
OOF_COLUMNS_DOC = {
    "sample_id": "The training sample (raw_samples.sample_id)",
    "label": "The given label",
    "fold": "0..folds-1: the fold it was held out in",
    "pred_probs": "(K,) class probabilities of the model that never saw it; sums to 1",
    "embedding": "(D,) PCA of the model's penultimate activations",
}


@dataclass(frozen=True)
class OofOptions:
    """How to compute out-of-fold predictions.

    Attributes
    ----------
    folds : int
        Stratified folds (>= 2). Reduced, with a warning, to the smallest class's size.
    model : ModelConfig
        Architecture and recipe of every fold model (its seed is offset by the fold number).
    embedding_dim : int
        PCA components kept from the penultimate activations (>= 1; fewer if D or N is
        smaller).
    seed : int
        Seeds the fold assignment, the PCA and the rows the PCA is fitted on.
    device : str
    pca_fit_rows : int
        Above this many samples the PCA is fitted on a seeded sample of this many rows and the
        rest are embedded and projected in chunks, so peak memory is bounded by this count, not
        by N (penultimate activations are 9,216 floats per MNIST image for simple_cnn: 1.8 GB
        at 50,000 images). At or below it every row is fitted, as before.
    """

    folds: int = 5
    model: ModelConfig = field(default_factory=ModelConfig)
    embedding_dim: int = 64
    seed: int = 0
    device: str = "auto"
    pca_fit_rows: int = 8192

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"expected folds >= 2; found {self.folds}")
        if self.embedding_dim < 1:
            raise ValueError(f"expected embedding_dim >= 1; found {self.embedding_dim}")
        if self.pca_fit_rows < 2:
            raise ValueError(f"expected pca_fit_rows >= 2; found {self.pca_fit_rows}")


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
                "pred_probs": _list_column(self.pred_probs),
                "embedding": _list_column(self.embeddings),
            },
            schema=OOF_SCHEMA,
        )
        meta = {"folds": self.folds, "warnings": self.warnings, **(params or {})}
        return table.replace_schema_metadata(table_metadata("oof_predictions", "raw_samples", meta))


def _list_column(matrix: np.ndarray) -> pa.Array:
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1).astype(np.float32)))


def matrix_column(table: pa.Table, column: str) -> np.ndarray:
    """A list<float32> column of equal-length rows as an (N, D) float32 array."""
    values = table.column(column).combine_chunks()
    n = len(values)
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(n, -1) if n else np.zeros((0, 0), np.float32)


def fold_count(labels: np.ndarray, requested: int) -> tuple[int, list[str]]:
    """Folds to use for ``labels`` (N,) and the warnings that explain a reduction.

    Raises
    ------
    ValueError
        When some class has fewer than 2 samples: no stratified split can hold it out.
    """
    counts = np.bincount(labels)
    present = counts[counts > 0]
    smallest = int(present.min()) if present.size else 0
    if smallest < 2:
        rare = [int(c) for c in np.flatnonzero(counts == smallest)][:5]
        raise ValueError(
            f"expected at least 2 training samples in every class for cross-validation; "
            f"found {smallest} in class(es) {rare}; drop those classes or add samples"
        )
    if smallest >= requested:
        return requested, []
    message = (
        f"folds reduced from {requested} to {smallest}: the smallest class has only "
        f"{smallest} training samples"
    )
    return smallest, [message]


def out_of_fold(
    train: SampleArrays,
    classes: int,
    reference: TrainedModel,
    options: OofOptions | None = None,
    progress: bool = True,
) -> OofResult:
    """Stratified K-fold training: out-of-fold ``pred_probs`` and reference-model embeddings.

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
    folds, notes = fold_count(train.labels, options.folds)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=options.seed)
    fold = np.zeros(len(train), np.int32)
    pred_probs = np.zeros((len(train), classes), np.float32)
    train_seconds = 0.0
    splits = list(splitter.split(np.zeros(len(train)), train.labels))
    for k, (fit, held) in enumerate(splits):  # each fold's training shows its own bar
        config = replace(options.model, seed=options.model.seed + k)
        model = train_model(
            config,
            train.images[fit],
            train.labels[fit],
            classes,
            device=options.device,
            progress=progress,
            desc=f"fold {k + 1}/{folds}",
            evaluate=False,
        )
        train_seconds += model.train_seconds
        logits = predict_logits(model.model, train.images[held], device=options.device)
        pred_probs[held] = _softmax(logits)
        fold[held] = k
    embeddings = reference_embeddings(reference.model, train.images, options)
    return OofResult(
        sample_ids=list(train.sample_ids),
        labels=train.labels.astype(np.int64),
        fold=fold,
        pred_probs=pred_probs,
        embeddings=embeddings,
        folds=folds,
        warnings=notes,
        seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


EMBED_CHUNK = 4096
"""Images embedded and projected per chunk once the PCA is fitted."""


def reference_embeddings(model: nn.Module, images: np.ndarray, options: OofOptions) -> np.ndarray:
    """Penultimate activations of ``model`` for ``images`` (N, C, H, W), reduced by PCA.

    Up to ``options.pca_fit_rows`` images: one pass, PCA fitted on all of them
    (:func:`reduce_dim`). Above: the PCA is fitted on a seeded sample of that many rows and
    every image is embedded and projected in chunks of :data:`EMBED_CHUNK`, so the (N, D)
    activations never exist at once.

    Returns
    -------
    np.ndarray
        (N, min(embedding_dim, D)) float32.
    """
    n = len(images)
    if n <= options.pca_fit_rows:
        return reduce_dim(embed(model, images, device=options.device), options)
    rows = np.sort(np.random.default_rng(options.seed).choice(n, options.pca_fit_rows, False))
    sample = embed(model, images[rows], device=options.device)
    components = min(options.embedding_dim, sample.shape[1])
    pca = None
    if components < sample.shape[1]:
        pca = PCA(n_components=components, svd_solver="randomized", random_state=options.seed)
        pca.fit(sample)
    del sample
    out = np.empty((n, components), np.float32)
    for start in range(0, n, EMBED_CHUNK):
        chunk = embed(model, images[start : start + EMBED_CHUNK], device=options.device)
        out[start : start + len(chunk)] = chunk if pca is None else pca.transform(chunk)
    return out


def reduce_dim(features: np.ndarray, options: OofOptions) -> np.ndarray:
    """PCA of (N, D) features to at most ``options.embedding_dim`` components, float32."""
    n, d = features.shape
    components = min(options.embedding_dim, d, n)
    if components >= d:
        return features.astype(np.float32)
    pca = PCA(n_components=components, svd_solver="randomized", random_state=options.seed)
    return pca.fit_transform(features).astype(np.float32)


def oof_predictions(
    samples: pa.Table,
    reference: TrainedModel,
    options: OofOptions | None = None,
    progress: bool = True,
) -> OofResult:
    """Out-of-fold predictions for the train split of a samples table (the asset's core call)."""
    data = decode_samples(samples, splits=("train",))
    if len(data) == 0:
        raise ValueError("expected a train split for cross-validation; found no train rows")
    return out_of_fold(data, num_classes(samples), reference, options, progress)
