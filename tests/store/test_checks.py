"""The store's data checks (raw_samples, curated_samples' class balance): each passes on good
tables and fails on bad ones. Each stage's table checks are tested beside the stage's tests."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from robust_data import ingest
from robust_data.store.checks import check_class_balance, check_samples


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return ingest("digits").samples


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
