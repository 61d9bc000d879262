"""The check of the oof_predictions table: each passes on good tables and fails on bad ones."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from robust_data import ingest
from robust_data.label_quality.oof_table import OOF_SCHEMA, check_oof


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return ingest("digits").samples


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
