"""The ``rpr_scores`` table and the paper's summaries of it (robustness curve, per class)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.defaults import MAX_STEPS
from robust_data.scoring.rpr.engine import RprResult
from robust_data.store.checks import (
    CheckOutcome,
    agreement_problems,
    range_problems,
    schema_problems,
    unique_problems,
)
from robust_data.store.schema import column, read_params, table_metadata

RPR_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The scored sample (raw_samples.sample_id)", nullable=False
        ),
        column("split", pa.string(), '"train" or "test"', nullable=False),
        column("label", pa.int64(), "The given label y", nullable=False),
        column(
            "model_sha256",
            pa.string(),
            "sha256 of the model's weights (the reference model)",
            nullable=False,
        ),
        column(
            "scheme",
            pa.string(),
            'Random perturbation, canonical spec, e.g. "pixels"',
            nullable=False,
        ),
        column(
            "max_steps",
            pa.int32(),
            "Tries per sample; surviving them all is robust",
            nullable=False,
        ),
        column("seed", pa.int64(), "Seed of the perturbations", nullable=False),
        column("clean_pred", pa.int64(), "Prediction on the unperturbed image", nullable=False),
        column("clean_correct", pa.bool_(), "clean_pred equals label", nullable=False),
        column(
            "steps_to_flip",
            pa.int32(),
            "Tries until the prediction changed, 1..max_steps (low = fragile); "
            "null: survived (robust)",
        ),
        column("robust", pa.bool_(), "Survived every try; false is fragile", nullable=False),
        column("flip_pred", pa.int64(), "Prediction at the flip; null when robust"),
    ]
)
"""One row per scored datapoint. Low ``steps_to_flip`` (and ``robust`` false) is fragile."""


def rpr_table(
    result: RprResult,
    sample_ids: Sequence[str],
    splits: Sequence[str],
    labels: np.ndarray,
    model_sha256: str,
    source: str = "",
    params: dict[str, Any] | None = None,
) -> pa.Table:
    """Build the ``rpr_scores`` table of a result, row-aligned with its inputs."""
    n = len(sample_ids)
    robust = result.robust
    table = pa.table(
        {
            "sample_id": pa.array(list(sample_ids), pa.string()),
            "split": pa.array(list(splits), pa.string()),
            "label": pa.array(np.asarray(labels, np.int64)),
            "model_sha256": pa.array([model_sha256] * n, pa.string()),
            "scheme": pa.array([result.scheme] * n, pa.string()),
            "max_steps": pa.array(np.full(n, result.max_steps, np.int32)),
            "seed": pa.array(np.full(n, result.seed, np.int64)),
            "clean_pred": pa.array(result.clean_pred.astype(np.int64)),
            "clean_correct": pa.array(result.clean_correct.astype(bool)),
            "steps_to_flip": pa.array(result.steps_to_flip.astype(np.int32), mask=robust),
            "robust": pa.array(robust),
            "flip_pred": pa.array(result.flip_pred.astype(np.int64), mask=robust),
        },
        schema=RPR_SCHEMA,
    )
    meta = {
        "scheme": result.scheme,
        "max_steps": result.max_steps,
        "seed": result.seed,
        "model_sha256": model_sha256,
        "device": result.device,
        "precision": result.precision,
        **(params or {}),
    }
    return table.replace_schema_metadata(table_metadata("rpr_scores", source, meta))


def scored_max_steps(table: pa.Table) -> int:
    """The ``max_steps`` an RPR table was scored with (its params), :data:`MAX_STEPS` if absent."""
    return int(read_params(table.schema).get("max_steps", MAX_STEPS))


def robust_fraction_by_split(table: pa.Table) -> dict[str, float]:
    """Robust fraction per split of an ``rpr_scores`` table, train and test first.

    Returns
    -------
    dict of str to float
        Each in [0, 1]; higher is more robust.
    """
    splits = np.asarray(table.column("split").to_pylist(), dtype=object)
    robust = np.asarray(table.column("robust").to_numpy(zero_copy_only=False), bool)
    present = set(splits.tolist())
    order = [s for s in ("train", "test") if s in present] + sorted(present - {"train", "test"})
    return {s: float(robust[splits == s].mean()) for s in order}


def robustness_curve(steps_to_flip: np.ndarray, max_steps: int) -> np.ndarray:
    """Fraction of datapoints still robust after k tries, k = 1..max_steps (Figures 3 and 5).

    Parameters
    ----------
    steps_to_flip : np.ndarray
        (N,) int, 1..max_steps, with 0 (or a masked/NaN value turned into 0) for survivors.
    max_steps : int

    Returns
    -------
    np.ndarray
        (max_steps,) float64 in [0, 1], non-increasing; entry k-1 is the share of points whose
        first flip came after try k. The last entry is the robust fraction. Higher is more
        robust. Empty input gives NaN.
    """
    steps = np.asarray(steps_to_flip, dtype=np.int64)
    if steps.size == 0:
        return np.full(max_steps, np.nan)
    flips_at = np.bincount(steps[steps > 0], minlength=max_steps + 1)[1 : max_steps + 1]
    return 1.0 - np.cumsum(flips_at) / steps.size


def class_robust_fraction(labels: np.ndarray, robust: np.ndarray, num_classes: int) -> np.ndarray:
    """Robust fraction per class (Figure 4).

    Returns
    -------
    np.ndarray
        (num_classes,) float64 in [0, 1]; NaN for a class with no datapoints.
    """
    labels = np.asarray(labels, np.int64)
    total = np.bincount(labels, minlength=num_classes).astype(float)
    kept = np.bincount(labels[np.asarray(robust, bool)], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, kept / total, np.nan)


def check_rpr_scores(scores: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``rpr_scores``: schema, one row per scored sample, steps in 1..max_steps, flags agree.

    Fails when: ids repeat or are not samples, labels differ from raw_samples, steps_to_flip
    is outside 1..max_steps, ``robust`` disagrees with a null steps_to_flip, ``clean_correct``
    disagrees with ``clean_pred == label``, or a flip predicts the label itself.
    """
    problems = schema_problems(scores, RPR_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": scores.num_rows})
    problems += unique_problems(scores, "sample_id")
    problems += agreement_problems(scores, samples, "sample_id", "label", "scored samples")
    max_steps = int(pc.max(scores.column("max_steps")).as_py() or 0)
    problems += range_problems(scores, "steps_to_flip", 1, max_steps, "steps")
    steps_null = pc.is_null(scores.column("steps_to_flip"))
    if pc.all(pc.equal(steps_null, scores.column("robust"))).as_py() not in (True, None):
        problems.append("robust disagrees with a null steps_to_flip")
    correct = pc.equal(scores.column("clean_pred"), scores.column("label"))
    if pc.all(pc.equal(correct, scores.column("clean_correct"))).as_py() not in (True, None):
        problems.append("clean_correct disagrees with clean_pred == label")
    same = pc.equal(scores.column("flip_pred"), scores.column("label"))
    if pc.any(same).as_py():
        problems.append("a flip_pred equals the label (a flip must change the prediction)")
    robust = scores.column("robust").to_numpy(zero_copy_only=False)
    return CheckOutcome(
        problems,
        {
            "rows": scores.num_rows,
            "max_steps": max_steps,
            "robust_fraction": round(float(robust.mean()), 4) if robust.size else None,
        },
    )
