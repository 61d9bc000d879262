"""The data checks behind the asset checks: each passes on good tables and fails on bad ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from robust_data import ingest
from robust_data.curation.policy import LEDGER_SCHEMA
from robust_data.label_quality.oof import OOF_SCHEMA
from robust_data.report.build import REPORT_SCHEMA
from robust_data.report.retrain import RETRAINED_SCHEMA
from robust_data.scoring.reference import REFERENCE_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.checks import (
    check_accuracy_loss,
    check_class_balance,
    check_ledger,
    check_model_table,
    check_oof,
    check_report,
    check_rpr_scores,
    check_samples,
)


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return ingest("digits").samples


def _scores(samples: pa.Table, steps: list[int | None], max_steps: int = 10) -> pa.Table:
    """An rpr_scores table for the first len(steps) samples: clean predictions correct."""
    rows = samples.slice(0, len(steps))
    labels = rows.column("label").to_pylist()
    n = len(steps)
    return pa.table(
        {
            "sample_id": rows.column("sample_id"),
            "split": rows.column("split"),
            "label": pa.array(labels, pa.int64()),
            "model_sha256": pa.array(["x"] * n),
            "scheme": pa.array(["pixels"] * n),
            "max_steps": pa.array([max_steps] * n, pa.int32()),
            "seed": pa.array([0] * n, pa.int64()),
            "clean_pred": pa.array(labels, pa.int64()),
            "clean_correct": pa.array([True] * n),
            "steps_to_flip": pa.array(steps, pa.int32()),
            "robust": pa.array([s is None for s in steps]),
            "flip_pred": pa.array(
                [None if s is None else (y + 1) % 10 for s, y in zip(steps, labels, strict=True)],
                pa.int64(),
            ),
        },
        schema=RPR_SCHEMA,
    )


def test_samples_check_passes_on_digits_and_fails_on_repeats(digits: pa.Table) -> None:
    good = check_samples(digits)
    assert good.passed and good.metadata["classes"] == 10
    repeated = check_samples(pa.concat_tables([digits, digits.slice(0, 3)]))
    assert not repeated.passed and "3 repeated sample_id" in repeated.summary()
    renamed = digits.set_column(
        digits.schema.get_field_index("label_name"),
        "label_name",
        pa.array(["zero", *digits.column("label_name").to_pylist()[1:]]),
    )
    assert "more than one label_name" in check_samples(renamed).summary()
    dropped = check_samples(digits.drop_columns(["width"]))
    assert not dropped.passed and "missing columns ['width']" in dropped.summary()


def test_rpr_check_catches_steps_out_of_range_and_disagreeing_flags(digits: pa.Table) -> None:
    assert check_rpr_scores(_scores(digits, [None, 3, 10]), digits).passed
    assert "outside [1, 10]" in check_rpr_scores(_scores(digits, [None, 11]), digits).summary()
    table = _scores(digits, [None, 4])
    flipped = table.set_column(
        table.schema.get_field_index("robust"), "robust", pa.array([True, True])
    )
    assert "robust disagrees" in check_rpr_scores(flipped, digits).summary()
    wrong = table.set_column(
        table.schema.get_field_index("label"), "label", pc.add(table.column("label"), 1)
    )
    assert "disagree with raw_samples' label" in check_rpr_scores(wrong, digits).summary()


def test_oof_check_catches_nan_and_rows_not_summing_to_one(digits: pa.Table) -> None:
    def oof(probs: list[list[float]]) -> pa.Table:
        rows = digits.slice(0, len(probs))
        return pa.table(
            {
                "sample_id": rows.column("sample_id"),
                "label": rows.column("label"),
                "fold": pa.array([0] * len(probs), pa.int32()),
                "pred_probs": pa.array(probs, pa.list_(pa.float32())),
                "embedding": pa.array([[0.0, 1.0]] * len(probs), pa.list_(pa.float32())),
            },
            schema=OOF_SCHEMA,
        )

    assert check_oof(oof([[0.25, 0.75], [1.0, 0.0]]), digits).passed
    assert "do not sum to 1" in check_oof(oof([[0.5, 0.6], [1.0, 0.0]]), digits).summary()
    assert "NaN" in check_oof(oof([[math.nan, 1.0], [1.0, 0.0]]), digits).summary()


def test_class_balance_within_tolerance(digits: pa.Table) -> None:
    two = digits.filter(pc.is_in(digits.column("label"), pa.array([0, 1])))
    zeros = two.filter(pc.equal(two.column("label"), 0)).slice(0, 10)
    ones = two.filter(pc.equal(two.column("label"), 1))
    balanced = pa.concat_tables([zeros, ones.slice(0, 10)])
    assert check_class_balance(balanced, 2, 0.0).passed
    skewed = pa.concat_tables([zeros, ones.slice(0, 5)])  # imbalance 1 - 5/10 = 0.5
    outcome = check_class_balance(skewed, 2, 0.1)
    assert not outcome.passed and "class imbalance 0.500" in outcome.summary()
    assert check_class_balance(skewed, 2, 0.5).passed
    assert not check_class_balance(balanced, 3, 1.0 - 1e-9).passed  # class 2 kept nothing


def test_ledger_conservation() -> None:
    ledger = pa.table(
        {
            "sample_id": ["a", "b", "c"],
            "label": [0, 1, 1],
            "kept": [True, False, True],
            "reason": [None, "outlier", None],
            "review": [None, None, "keep"],
            "overridden": [None, None, "label_issue"],
            "new_label": [None, None, None],
        },
        schema=LEDGER_SCHEMA,
    )
    assert check_ledger(ledger, 3, 2).passed
    assert "3 ledger rows for 4 input samples" in check_ledger(ledger, 4, 2).summary()
    assert "2 kept in the ledger but 1 curated" in check_ledger(ledger, 3, 1).summary()


def test_model_check_verifies_the_weight_file(tmp_path: Path) -> None:
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"weights")
    import hashlib

    row = {
        "path": str(weights),
        "sha256": hashlib.sha256(b"weights").hexdigest(),
        "arch": "simple_cnn",
        "config": "{}",
        "num_classes": 10,
        "num_parameters": 1,
        "train_samples": 1,
        "train_accuracy": 0.9,
        "test_accuracy": 0.8,
        "train_seconds": 1.0,
        "device": "cpu",
        "precision": "fp32",
    }
    assert check_model_table(pa.Table.from_pylist([row], schema=REFERENCE_SCHEMA)).passed
    weights.write_bytes(b"tampered")
    assert (
        "does not match its sha256"
        in check_model_table(pa.Table.from_pylist([row], schema=REFERENCE_SCHEMA)).summary()
    )
    row["train_accuracy"] = 1.5
    assert (
        "outside [0, 1]"
        in check_model_table(pa.Table.from_pylist([row], schema=REFERENCE_SCHEMA)).summary()
    )


def test_report_check_catches_nan_a_missing_model_and_a_reference_mce_other_than_one() -> None:
    def row(seed: int, model: str, mce: float, accuracy: float = 0.9) -> dict[str, object]:
        return {
            "seed": seed,
            "model": model,
            "train_size": 10,
            "test_accuracy": accuracy,
            "robust_fraction": 0.5,
            "robust_fraction_held_out": 0.4,
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
