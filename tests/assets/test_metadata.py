"""Metadata the UI shows in place: column schemas from the core's Arrow schemas, typed tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from assets.metadata import column_schema, count_table, records_table
from robust_data.curation.ledger import LEDGER_SCHEMA
from robust_data.curation.reviews import REVIEWS_SCHEMA
from robust_data.export.result import FILES_SCHEMA
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.label_quality.oof_table import OOF_SCHEMA
from robust_data.report.retrain import RETRAINED_SCHEMA
from robust_data.report.table import REPORT_SCHEMA
from robust_data.report.testset import CORRUPTED_SCHEMA
from robust_data.scoring.reference import REFERENCE_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
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
