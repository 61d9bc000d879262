"""The checks of the scoring tables: reference_model (and retrained models) and rpr_scores."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from robust_data import ingest
from robust_data.scoring.reference import REFERENCE_SCHEMA, check_model_table
from robust_data.scoring.rpr.table import RPR_SCHEMA, check_rpr_scores


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


def test_model_check_verifies_the_weight_file(tmp_path: Path) -> None:
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"weights")
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
