"""The report's table: one row per (seed, model) with every metric, its check and headline.

:data:`REPORT_SCHEMA` is the ``robustness_report`` table; :func:`check_report` is its asset
check; :func:`headline_verdicts` reads the verdicts on the :data:`HEADLINE` metrics back from
a stored table (the CLI's summary).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa

from robust_data.report.comparison import compare
from robust_data.store.checks import CheckOutcome, nan_problems, range_problems, schema_problems
from robust_data.store.schema import column

REPORT_SCHEMA = pa.schema(
    [
        column("seed", pa.int64(), "Training seed (each seed trains every model)", nullable=False),
        column(
            "model",
            pa.string(),
            "The training set: reference, curated, random_subset, ...",
            nullable=False,
        ),
        column("train_size", pa.int64(), "Training images: originals + variants", nullable=False),
        column(
            "flip_rate",
            pa.float64(),
            "Primary: mean per-image share of K shared perturbed copies (scoring scheme) "
            "predicted other than the label, in [0, 1]; lower is better",
            nullable=False,
        ),
        column(
            "test_accuracy", pa.float64(), "Clean test accuracy; higher is better", nullable=False
        ),
        column(
            "worst_class_accuracy",
            pa.float64(),
            "Clean test accuracy of the model's worst class; higher is better",
            nullable=False,
        ),
        column(
            "flip_rate_held_out",
            pa.float64(),
            "The flip rate under a held-out perturbation family; lower is better",
            nullable=False,
        ),
        column(
            "robust_fraction",
            pa.float64(),
            "Test images RPR-robust under the scoring scheme (the paper's 250 tries); higher "
            "is better; NaN on seeds after the first robust_seeds",
        ),
        column(
            "corruption_accuracy_held_out",
            pa.float64(),
            "Accuracy on corruptions not used as variants; higher is better; NaN: none held out",
        ),
        column(
            "corruption_accuracy_seen",
            pa.float64(),
            "Accuracy on corruptions used as variants; higher is better; NaN: none used",
        ),
        column(
            "mce_held_out",
            pa.float64(),
            "The headline mCE, on held-out corruptions: 1 = the reference; lower is better",
        ),
        column("mce_seen", pa.float64(), "mCE on corruptions used as variants; lower is better"),
        column(
            "ece",
            pa.float64(),
            "Expected calibration error on the clean test split, 15 bins; lower is better",
            nullable=False,
        ),
        column("model_sha256", pa.string(), "sha256 of the model's weights", nullable=False),
    ]
)
"""One row per (seed, model): every metric the verdicts compare."""

#: Metrics the CLI summary shows verdicts for (report.md shows them all).
HEADLINE = ("flip_rate", "test_accuracy", "worst_class_accuracy", "mce_held_out")


def headline_verdicts(table: pa.Table, metrics: tuple[str, ...] = HEADLINE) -> list[str]:
    """Verdict lines of a stored report table on ``metrics`` only (curated vs each baseline)."""
    keep = {"seed", "model", *metrics}
    return compare([{k: v for k, v in r.items() if k in keep} for r in table.to_pylist()]).verdicts


def check_report(report: pa.Table) -> CheckOutcome:
    """``robustness_report``: schema; accuracies, robust fractions and ECE present and in
    [0, 1]; mCEs >= 0 where defined (NaN: no such corruption); every seed has a reference
    and a curated row, and the reference's held-out mCE is 1 (it is the base)."""
    problems = schema_problems(report, REPORT_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": report.num_rows})
    required = [
        "flip_rate",
        "test_accuracy",
        "worst_class_accuracy",
        "flip_rate_held_out",
        "ece",
    ]
    problems += nan_problems(report, required)
    ranged = ["robust_fraction", "corruption_accuracy_held_out", "corruption_accuracy_seen"]
    for name in [*required, *ranged]:
        problems += range_problems(report, name, 0.0, 1.0)
    for name in ("mce_held_out", "mce_seen"):
        problems += range_problems(report, name, 0.0, math.inf)
    rows = report.to_pylist()
    for seed in sorted({r["seed"] for r in rows}):
        models = {r["model"]: r for r in rows if r["seed"] == seed}
        missing = sorted({"reference", "curated"} - set(models))
        if missing:
            problems.append(f"seed {seed} has no {' or '.join(missing)} row")
            continue
        mce = models["reference"]["mce_held_out"]
        if not math.isnan(mce) and abs(mce - 1.0) > 1e-9:
            problems.append(f"seed {seed}: the reference's held-out mCE is {mce:g}, expected 1")
    if not rows:
        problems.append("no model judged")
    names = sorted({r["model"] for r in rows})
    return CheckOutcome(problems, {"rows": report.num_rows, "models": json.dumps(names)})
