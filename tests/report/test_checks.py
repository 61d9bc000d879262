"""The checks of the report stage's tables: robustness_report and the accuracy guard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from robust_data.report.retrain import RETRAINED_SCHEMA, check_accuracy_loss
from robust_data.report.table import REPORT_SCHEMA, check_report


def test_report_check_catches_nan_a_missing_model_and_a_reference_mce_other_than_one() -> None:
    def row(seed: int, model: str, mce: float, accuracy: float = 0.9) -> dict[str, object]:
        return {
            "seed": seed,
            "model": model,
            "train_size": 10,
            "flip_rate": 0.1,
            "test_accuracy": accuracy,
            "worst_class_accuracy": 0.7,
            "flip_rate_held_out": 0.2,
            "robust_fraction": 0.5 if seed == 0 else np.nan,  # measured on the first seed only
            "corruption_accuracy_held_out": 0.8,
            "corruption_accuracy_seen": np.nan,  # no corruption used as a variant: allowed
            "mce_held_out": mce,
            "mce_seen": np.nan,
            "ece": 0.05,
            "model_sha256": "x",
        }

    good = pa.Table.from_pylist(
        [
            row(s, m, 1.0 if m == "reference" else 0.9)
            for s in (0, 1)
            for m in ("reference", "curated")
        ],
        schema=REPORT_SCHEMA,
    )
    assert check_report(good).passed, check_report(good).summary()
    bad = pa.Table.from_pylist(
        [row(0, "reference", 1.2), row(0, "curated", 0.9, np.nan), row(1, "reference", 1.0)],
        schema=REPORT_SCHEMA,
    )
    summary = check_report(bad).summary()
    assert "test_accuracy has 1 NaN" in summary
    assert "seed 0: the reference's held-out mCE is 1.2" in summary
    assert "seed 1 has no curated row" in summary


def test_accuracy_guard_compares_means_over_seeds() -> None:
    def table(accuracies: dict[str, list[float]]) -> pa.Table:
        rows = [
            {
                "seed": s,
                "model": m,
                "path": "p",
                "sha256": "x",
                "train_size": 1,
                "originals": 1,
                "variants": 0,
                "test_accuracy": a,
            }
            for m, values in accuracies.items()
            for s, a in enumerate(values)
        ]
        return pa.Table.from_pylist(rows, schema=RETRAINED_SCHEMA)

    # curated is 1.5 pt below on average (one seed alone would be 0.5 pt): warned
    low = check_accuracy_loss(table({"reference": [0.95, 0.97], "curated": [0.945, 0.945]}))
    assert not low.passed and "curated test accuracy 0.9450 is 1.5 pt below" in low.summary()
    assert check_accuracy_loss(table({"reference": [0.95, 0.97], "curated": [0.955, 0.955]})).passed
    # without reference rows the given figure is the base
    assert not check_accuracy_loss(table({"curated": [0.90]}), 0.95).passed
