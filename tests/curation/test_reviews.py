"""Human reviews: the table, CSV round trips, and how the next curation honours them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from robust_data.curation.policy import CurationPolicy, select_curated
from robust_data.curation.reviews import (
    REVIEWS_SCHEMA,
    Review,
    check_reviews,
    latest_decisions,
    load_reviews,
    record_reviews,
)
from robust_data.curation.reviews_csv import export_reviews_csv, parse_reviews_csv
from robust_data.errors import DatasetError
from robust_data.store.store import Store
from tests.curation.test_policy import ROWS, _tables

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "home", str(tmp_path / "home" / "store")).ensure()


def test_decisions_are_appended_and_the_latest_wins(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert load_reviews(store, "d").num_rows == 0
    record_reviews(store, "d", [Review("a", "drop", note="blurry")], "browser", T0)
    before = {p.name for p in (store.storage_root).rglob("*") if p.is_file()}
    table = record_reviews(store, "d", [Review("a", "relabel", 3), Review("b", "keep")], "csv", T1)
    assert table.schema.equals(REVIEWS_SCHEMA, check_metadata=False)
    assert table.num_rows == 3 and load_reviews(store, "d").num_rows == 3
    assert table.column("source").to_pylist() == ["browser", "csv", "csv"]
    assert latest_decisions(table) == {"a": Review("a", "relabel", 3), "b": Review("b", "keep")}
    # only the reviews table was written, and no temporary file is left beside it
    after = {p.name for p in (store.storage_root).rglob("*") if p.is_file()}
    assert after == before == {"d.parquet"}
    assert load_reviews(store, "other").num_rows == 0


def test_equal_times_keep_row_order() -> None:
    rows = [Review("a", "keep"), Review("a", "drop")]
    from robust_data.curation.reviews import review_rows

    assert latest_decisions(review_rows(rows, T0, "api"))["a"].decision == "drop"


def test_bad_decisions_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="expected a decision in keep, drop, relabel"):
        Review("a", "delete")
    with pytest.raises(ValueError, match="expected a new label with relabel"):
        Review("a", "relabel")
    with pytest.raises(ValueError, match="expected a new label with relabel"):
        Review("a", "keep", 2)
    with pytest.raises(ValueError, match="expected a sample id of this dataset; found 'zz'"):
        check_reviews([Review("zz", "keep")], {"a"}, 10)
    with pytest.raises(ValueError, match=r"expected a new label in 0\.\.9; found 10"):
        check_reviews([Review("a", "relabel", 10)], {"a"}, 10)
    check_reviews([Review("a", "relabel", 9)], {"a"}, 10)


def test_csv_round_trip(tmp_path: Path) -> None:
    store = _store(tmp_path)
    made = [Review("a", "relabel", 3, 'a "7", not a 1'), Review("b", "drop"), Review("c", "keep")]
    record_reviews(store, "d", made, "browser", T0)
    assert export_reviews_csv(store, "d", tmp_path / "r.csv") == 3
    text = (tmp_path / "r.csv").read_text()
    assert text.splitlines()[0] == "sample_id,decision,new_label,note,reviewed_at"
    parsed = parse_reviews_csv(text, "r.csv")
    assert [(r.sample_id, r.decision, r.new_label) for r in parsed] == [
        ("a", "relabel", 3),
        ("b", "drop", None),
        ("c", "keep", None),
    ]
    assert parsed[0].note == 'a "7", not a 1'


def test_bad_csv_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="sample_id and decision"):
        parse_reviews_csv("id,what\na,keep\n", "x.csv")
    with pytest.raises(DatasetError, match=r"on line 3 of x\.csv"):
        parse_reviews_csv("sample_id,decision,new_label\na,keep,\nb,relabel,seven\n", "x.csv")


def _ledger(reviews: dict[str, Review], policy: CurationPolicy) -> tuple[dict[str, dict], Any]:
    result = select_curated(*_tables(ROWS), policy, reviews)
    return {row["sample_id"]: row for row in result.ledger.to_pylist()}, result


def test_curation_honours_reviews() -> None:
    policy = CurationPolicy(quota_mode="none")
    reviews = {
        "a2": Review("a2", "keep"),  # a label issue the reviewer keeps
        "a0": Review("a0", "relabel", 1),  # misclassified: the label was wrong
        "a6": Review("a6", "drop"),  # passes every rule, the reviewer drops it
        "zz": Review("zz", "drop"),  # not in this training set: ignored
    }
    rows, result = _ledger(reviews, policy)
    assert rows["a2"]["kept"] and rows["a2"]["reason"] is None
    assert (rows["a2"]["review"], rows["a2"]["overridden"]) == ("keep", "label_issue")
    assert rows["a0"]["kept"] and rows["a0"]["new_label"] == 1 and rows["a0"]["label"] == 0
    assert rows["a0"]["overridden"] == "misclassified"
    assert not rows["a6"]["kept"] and rows["a6"]["reason"] == "review_drop"
    assert rows["a7"]["review"] is None and rows["a7"]["overridden"] is None
    curated = dict(zip(*result.curated.to_pydict().values(), strict=True))
    assert curated["a0"] == 1  # trains with the new label
    assert result.reason_counts()["review_drop"] == 1
    before, after = result.class_counts()
    assert before == {0: 8, 1: 2} and after[1] == 2  # b0 and the relabelled a0
    without, _ = _ledger({}, policy)
    assert not without["a2"]["kept"] and without["a6"]["kept"]


def test_reviewed_samples_fill_the_quota_first() -> None:
    policy = CurationPolicy(quota_mode="fixed", per_class=1)
    rows, _ = _ledger({"a7": Review("a7", "keep"), "a2": Review("a2", "keep")}, policy)
    assert rows["a7"]["kept"] and rows["a2"]["kept"]  # both kept, past a quota of 1
    assert not rows["a4"]["kept"] and rows["a4"]["reason"] == "over_quota"
    assert not rows["a6"]["kept"]


def test_ledger_without_reviews_is_unchanged_by_the_new_columns() -> None:
    _, result = _ledger({}, CurationPolicy())
    assert set(result.ledger.column("review").to_pylist()) == {None}
    assert result.ledger.column("new_label").type == pa.int64()
