"""The ``oof_predictions`` table: each training sample's held-out fold, probabilities, embedding.

:data:`OOF_SCHEMA` and its check; list columns written from and read back as (N, D) arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from robust_data.store.checks import (
    CheckOutcome,
    agreement_problems,
    nan_problems,
    schema_problems,
    unique_problems,
)
from robust_data.store.schema import column

OOF_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The training sample (raw_samples.sample_id)", nullable=False
        ),
        column("label", pa.int64(), "The given label", nullable=False),
        column("fold", pa.int32(), "0..folds-1: the fold it was held out in", nullable=False),
        column(
            "pred_probs",
            pa.list_(pa.float32()),
            "(K,) class probabilities of the model that never saw it; sums to 1",
            nullable=False,
        ),
        column(
            "embedding",
            pa.list_(pa.float32()),
            "(D,) PCA of the model's penultimate activations",
            nullable=False,
        ),
    ]
)
"""One row per training sample: its held-out fold, out-of-fold probabilities, embedding."""


def list_column(matrix: np.ndarray) -> pa.Array:
    """An (N, D) array as a list<float32> column of N rows (the inverse of
    :func:`matrix_column`)."""
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1).astype(np.float32)))


def matrix_column(table: pa.Table, column: str) -> np.ndarray:
    """A list<float32> column of equal-length rows as an (N, D) float32 array."""
    values = table.column(column).combine_chunks()
    n = len(values)
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(n, -1) if n else np.zeros((0, 0), np.float32)


def check_oof(oof: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``oof_predictions``: schema, no NaN, each row's probabilities in [0, 1] summing to 1."""
    problems = schema_problems(oof, OOF_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": oof.num_rows})
    problems += unique_problems(oof, "sample_id")
    problems += agreement_problems(oof, samples, "sample_id", "label", "training samples")
    problems += nan_problems(oof)
    if oof.num_rows and not problems:
        probs = np.asarray(oof.column("pred_probs").to_pylist(), np.float64)
        if probs.min() < 0 or probs.max() > 1:
            problems.append("pred_probs outside [0, 1]")
        off = np.abs(probs.sum(axis=1) - 1.0) > 1e-3
        if off.any():
            problems.append(f"{int(off.sum())} rows of pred_probs do not sum to 1")
    return CheckOutcome(problems, {"rows": oof.num_rows})
