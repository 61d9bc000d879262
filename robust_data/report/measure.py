"""The report's measurements: each retrained model measured on the test split, one row each.

One evaluation step measures one model (:func:`measure_candidates`); its row keeps the
per-image flip rates under the scoring and held-out schemes, the per-class accuracy, the
corruption suite and (first seeds only) the RPR tries, from which the report
(robust_data.report.build) computes every metric and verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.ingest.arrays import SampleArrays
from robust_data.present.progress import progress_step
from robust_data.report.corruption_suite import SUITE_SCHEMA
from robust_data.report.evaluate import JudgeOptions, Measured, measure_models
from robust_data.scoring.models import TrainedModel
from robust_data.store.schema import column_by_id


@dataclass
class Candidate:
    """A model to report on: ``name`` (a training set) trained with seed ``seed``."""

    name: str
    seed: int
    model: TrainedModel
    sha256: str
    train_size: int


@dataclass(frozen=True)
class ReportSetup:
    """What the models were trained on and how they are judged.

    Attributes
    ----------
    dataset : str
    preset : str
        The curation preset behind ``curated``.
    seen : set of str
        Corruptions and perturbation families the variants used (``used_families``).
    judge : JudgeOptions
        Scoring scheme, held-out scheme, tries, RPR seed, device.
    """

    dataset: str
    preset: str
    seen: frozenset[str]
    judge: JudgeOptions


def stored_steps(
    rpr: pa.Table, test: SampleArrays, candidates: list[Candidate]
) -> dict[tuple[str, int], np.ndarray]:
    """RPR tries (N,) of the test split already stored in ``rpr`` (the ``rpr_scores`` table),
    keyed by the (model, seed) candidate whose weights scored them; ``{}`` when none did."""
    rows = rpr.filter(pc.equal(rpr.column("split"), "test"))
    if rows.num_rows != len(test) or rows.num_rows == 0:
        return {}
    sha = rows.column("model_sha256")[0].as_py()
    steps = column_by_id(rows, list(test.sample_ids), "steps_to_flip")
    return {
        (c.name, c.seed): np.asarray([s or 0 for s in steps], np.int64)
        for c in candidates
        if c.sha256 == sha
    }


MEASURED_SCHEMA = pa.schema(
    [
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("train_size", pa.int64(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("steps", pa.list_(pa.int64()), nullable=False),
        pa.field("flips", pa.list_(pa.float64()), nullable=False),
        pa.field("flips_held_out", pa.list_(pa.float64()), nullable=False),
        pa.field("class_accuracy", pa.list_(pa.float64()), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
    ]
)
"""One evaluation step's output: a row per measured (seed, model) with its RPR tries (N,)
under the scoring scheme (empty after the first ``robust_seeds`` seeds), its flip rates (N,)
under the scoring and held-out schemes, its accuracy per class and its corruption suite
(SUITE_SCHEMA rows as JSON)."""


def _measured_row(candidate: Candidate, measured: Measured) -> dict[str, Any]:
    return {
        "seed": candidate.seed,
        "model": candidate.name,
        "train_size": candidate.train_size,
        "model_sha256": candidate.sha256,
        "steps": measured.steps.tolist(),
        "flips": measured.flips.tolist(),
        "flips_held_out": measured.flips_held_out.tolist(),
        "class_accuracy": measured.class_accuracy.tolist(),
        "suite": json.dumps(measured.suite.to_pylist(), allow_nan=True),
    }


def measure_candidates(
    setup: ReportSetup,
    candidates: list[Candidate],
    test: SampleArrays,
    corrupted: pa.Table | None,
    known_steps: dict[tuple[str, int], np.ndarray] | None = None,
    progress: bool = True,
    position: tuple[int, int] | None = None,
) -> pa.Table:
    """Measure ``candidates`` on ``test`` (one evaluation step's call, with one candidate).

    Candidates of a seed are measured together (each corrupted chunk read once for them);
    the result is the same row by row as one call per candidate. Their progress lines name
    them: ``[2/4] curated, seed 0: corruption suite ...``, ``position`` being this step's
    (1-based index, count) among the report's evaluations (None: no ``[i/n]``).

    Returns
    -------
    pa.Table
        :data:`MEASURED_SCHEMA`, one row per candidate.
    """
    rows = []
    for seed in sorted({c.seed for c in candidates}):
        mine = [c for c in candidates if c.seed == seed]
        label = f"{', '.join(c.name for c in mine)}, seed {seed}"
        with progress_step(f"[{position[0]}/{position[1]}] {label}" if position else label):
            measured = measure_models(
                {c.name: c.model.model for c in mine},
                test,
                int(max(c.model.num_classes for c in mine)),
                setup.judge,
                corrupted=corrupted,
                known_steps={n: v for (n, s), v in (known_steps or {}).items() if s == seed},
                progress=progress,
                robust=seed < setup.judge.robust_seeds,
            )
        rows += [_measured_row(c, measured[c.name]) for c in mine]
    return pa.Table.from_pylist(rows, schema=MEASURED_SCHEMA)


def measured_from_row(row: dict[str, Any]) -> Measured:
    """A :data:`MEASURED_SCHEMA` row (as a dict) back as the model's :class:`Measured`."""
    suite = pa.Table.from_pylist(json.loads(row["suite"]), schema=SUITE_SCHEMA)
    return Measured(
        suite,
        np.asarray(row["steps"], np.int64),
        np.asarray(row["flips"], np.float64),
        np.asarray(row["flips_held_out"], np.float64),
        np.asarray(row["class_accuracy"], np.float64),
    )
