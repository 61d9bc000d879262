"""Metadata the UI shows in place: column schemas from the core's Arrow schemas, typed tables,
rounded floats, Markdown short enough to show without a click."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pytest

from assets.checks import check_result
from assets.metadata import (
    INLINE_MARKDOWN_LIMIT,
    column_schema,
    count_table,
    inline_markdown,
    records_table,
    summary_metadata,
)
from robust_data.curation.ledger import LEDGER_SCHEMA
from robust_data.curation.reviews import REVIEWS_SCHEMA
from robust_data.export.result import FILES_SCHEMA
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.label_quality.oof_table import OOF_SCHEMA
from robust_data.present.summary import StageSummary, rounded
from robust_data.report.render import curve_budgets, curve_rows, metric_rows
from robust_data.report.retrain import RETRAINED_SCHEMA
from robust_data.report.table import REPORT_SCHEMA
from robust_data.report.testset import CORRUPTED_SCHEMA
from robust_data.scoring.reference import REFERENCE_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.checks import CheckOutcome
from robust_data.store.schema import (
    REJECTS_SCHEMA,
    SAMPLES_SCHEMA,
    describe,
    descriptions,
)
from robust_data.variants.make import VARIANTS_SCHEMA

#: Every core schema of a stored table: each column has a description.
DOCUMENTED = [
    SAMPLES_SCHEMA,
    REJECTS_SCHEMA,
    REFERENCE_SCHEMA,
    RPR_SCHEMA,
    OOF_SCHEMA,
    LABEL_QUALITY_SCHEMA,
    VARIANTS_SCHEMA,
    LEDGER_SCHEMA,
    CORRUPTED_SCHEMA,
    RETRAINED_SCHEMA,
    REPORT_SCHEMA,
    REVIEWS_SCHEMA,
    FILES_SCHEMA,
]


@pytest.mark.parametrize("schema", DOCUMENTED)
def test_every_column_has_a_one_line_description(schema: pa.Schema) -> None:
    docs = descriptions(schema)
    assert list(docs) == schema.names
    assert all(text.strip() and "\n" not in text for text in docs.values()), docs


def test_column_schema_keeps_names_types_nullability_and_docs() -> None:
    table = column_schema(RPR_SCHEMA)
    assert [c.name for c in table.columns] == RPR_SCHEMA.names
    steps = next(c for c in table.columns if c.name == "steps_to_flip")
    assert steps.type == "int32" and steps.constraints.nullable
    assert steps.description == describe(RPR_SCHEMA.field("steps_to_flip"))
    sample_id = table.columns[0]
    assert sample_id.type == "string" and not sample_id.constraints.nullable
    assert column_schema(pa.schema([("x", pa.float64())])).columns[0].description is None


def test_records_table_infers_types_and_shows_nan_empty() -> None:
    value = records_table(
        [{"model": "curated", "n": 3, "mce": float("nan")}, {"model": "reference", "n": 4}],
        {"model": "which", "n": "how many", "mce": "lower is better"},
    )
    assert [(c.name, c.type) for c in value.schema.columns] == [
        ("model", "string"),
        ("n", "int64"),
        ("mce", "double"),
    ]
    assert [r.data for r in value.records] == [
        {"model": "curated", "n": 3, "mce": None},
        {"model": "reference", "n": 4, "mce": None},
    ]
    empty = records_table([], {"class": "", "kept": ""})
    assert empty.records == [] and [c.name for c in empty.schema.columns] == ["class", "kept"]


def test_count_table_keeps_the_mapping_order() -> None:
    value = count_table({"train": 12345, "test": 7}, "split", "samples", "images")
    assert [r.data for r in value.records] == [
        {"split": "train", "samples": 12345},
        {"split": "test", "samples": 7},
    ]
    assert value.schema.columns[1].type == "int64"


def test_rounded_keeps_four_decimals_and_small_values_significant() -> None:
    assert rounded(0.9303621169916435) == 0.9304
    assert rounded(12.345678) == 12.3457
    assert rounded(0.000123456) == 0.000123  # a small share or p-value does not become 0
    assert rounded({"a": [0.123456, {"b": 2.0000001}], "n": 3, "s": "x"}) == {
        "a": [0.1235, {"b": 2.0}],
        "n": 3,
        "s": "x",
    }
    nan = rounded(float("nan"))
    assert nan != nan and rounded(float("inf")) == float("inf") and rounded(0.0) == 0.0
    assert rounded(rounded(1 / 3)) == rounded(1 / 3)


def test_every_float_the_builders_make_is_rounded() -> None:
    table = records_table(
        [{"model": "curated", "acc": 0.9303621169916435}], {"model": "", "acc": ""}
    )
    assert table.records[0].data["acc"] == 0.9304

    @dataclass(frozen=True, kw_only=True)
    class Shares(StageSummary):
        share: float
        per_class: dict[str, float]

    meta = summary_metadata(Shares(share=2 / 3, per_class={"cat": 1 / 7}))
    assert meta["share"].value == 0.6667
    assert meta["per_class"].value == {"cat": 0.1429}
    result = check_result("x", "valid", CheckOutcome([], {"max": 1 / 3, "rows": 4}))
    assert result.metadata["max"].value == 0.3333 and result.metadata["rows"].value == 4


def test_inline_markdown_stays_under_the_inline_limit() -> None:
    short = inline_markdown(["curated is more robust", "curated is as accurate"], "see all")
    assert short.value == "- curated is more robust\n- curated is as accurate"
    lines = [f"verdict {i}: " + "x" * 90 for i in range(30)]
    value = inline_markdown(lines, "every verdict is under verdicts").value
    assert len(value.encode("utf-16-le")) // 2 < INLINE_MARKDOWN_LIMIT
    shown = value.splitlines()
    assert shown[:-1] == [f"- {line}" for line in lines[: len(shown) - 1]]  # in order
    assert shown[-1] == f"- … {30 - len(shown) + 1} more: every verdict is under verdicts"


def test_curve_rows_read_the_figure_at_one_two_five_tries() -> None:
    assert curve_budgets(250) == [1, 2, 5, 10, 20, 50, 100, 200, 250]
    assert curve_budgets(10) == [1, 2, 5, 10]
    assert curve_budgets(1) == [1]
    curve = [1.0 - k / 1000 for k in range(1, 251)]
    rows = curve_rows({"reference": curve, "curated": [0.5] * 250, "random": []})
    assert [r["tries"] for r in rows] == curve_budgets(250)
    assert list(rows[0]) == ["tries", "reference", "curated"]  # no curve: left out
    assert rows[0]["reference"] == curve[0] and rows[-1]["reference"] == curve[-1]
    assert {r["curated"] for r in rows} == {0.5}
    assert curve_rows({}) == []


def test_metric_rows_put_models_in_columns_with_the_good_direction() -> None:
    summary = {
        "reference": {"flip_rate": [0.2, 0.1, 0.3], "test_accuracy": [0.9, 0.8, 1.0]},
        "curated": {"flip_rate": [0.1, 0.0, 0.2], "test_accuracy": [0.95, 0.9, 1.0]},
    }
    rows = metric_rows(summary, {"reference": 100, "curated": 80})
    by = {r["metric"]: r for r in rows}
    assert rows[0] == {"metric": "train_size", "reference": 100.0, "curated": 80.0}
    assert by["flip_rate ↓"] == {"metric": "flip_rate ↓", "reference": 0.2, "curated": 0.1}
    assert by["test_accuracy ↑"]["curated"] == 0.95
    assert math.isnan(by["ece ↓"]["curated"])  # measured by no model: NaN (shown empty)
