"""Column descriptions live in the Arrow field metadata of each table's schema, written once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from robust_data.store.checks import schema_problems
from robust_data.store.schema import (
    DESCRIPTION_KEY,
    REJECTS_SCHEMA,
    SAMPLES_SCHEMA,
    column,
    describe,
    descriptions,
    with_description,
)
from robust_data.store.store import Store


def _rejects() -> pa.Table:
    return pa.table(
        {"dataset": ["d", "d"], "source_key": ["a.png", "b.png"], "reason": ["bad", "worse"]},
        schema=REJECTS_SCHEMA,
    )


def test_a_column_carries_its_description_in_its_field_metadata() -> None:
    field = column("steps", pa.int32(), "Tries until it flipped", nullable=False)
    assert field.metadata == {DESCRIPTION_KEY: b"Tries until it flipped"}
    assert describe(field) == "Tries until it flipped" and not field.nullable
    assert describe(pa.field("plain", pa.int32())) == ""
    schema = pa.schema([field, pa.field("plain", pa.int32())])
    assert descriptions(schema) == {"steps": "Tries until it flipped", "plain": ""}
    tagged = pa.field("x", pa.int32(), metadata={b"other": b"kept"})
    assert with_description(tagged, "An x").metadata == {
        b"other": b"kept",
        DESCRIPTION_KEY: b"An x",
    }


def test_parquet_files_keep_the_descriptions(isolated_home: Path) -> None:
    store = Store.open(isolated_home)
    store.write(_rejects(), "ingest_rejects", "d")
    back = store.read("ingest_rejects", "d")
    assert descriptions(back.schema) == descriptions(REJECTS_SCHEMA)
    assert all(descriptions(REJECTS_SCHEMA).values())


def test_schemas_compare_without_the_descriptions(isolated_home: Path) -> None:
    """A table written before descriptions existed (no field metadata) still matches."""
    plain = _rejects().cast(pa.schema([f.remove_metadata() for f in REJECTS_SCHEMA]))
    assert plain.schema.equals(REJECTS_SCHEMA) and plain.schema == REJECTS_SCHEMA
    assert not plain.schema.equals(REJECTS_SCHEMA, check_metadata=True)
    assert schema_problems(plain, REJECTS_SCHEMA) == []
    store = Store.open(isolated_home)
    store.write(plain, "ingest_rejects", "old")
    assert store.read("ingest_rejects", "old").equals(_rejects())


def test_the_readme_samples_table_is_the_schema() -> None:
    """README's table of the samples columns states the schema's types and descriptions."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The samples table", 1)[1].split("\n## ", 1)[0]
    rows = [
        tuple(cell.strip().strip("`") for cell in line.strip("|").split(" | "))
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert rows == [(f.name, str(f.type), describe(f)) for f in SAMPLES_SCHEMA]
