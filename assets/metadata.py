"""Dagster metadata built from the core's tables and records: column schemas, small typed
tables, stage summaries.

The core (``robust_data``) never imports Dagster: it defines each stored table's Arrow schema
with one line per column in its fields' metadata (:func:`robust_data.store.schema.column`),
and each stage's summary record (:class:`robust_data.present.summary.StageSummary`); this
module turns them into what the UI shows in place (a column schema, a sortable table, typed
numbers) rather than behind "Show Markdown".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from dagster import (
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableMetadataValue,
    TableRecord,
    TableSchema,
)

from robust_data.present.summary import Entry, StageSummary, rounded
from robust_data.store.schema import describe, with_description

#: The definition metadata key of a table asset's columns (shown on the asset's page).
COLUMN_SCHEMA = "dagster/column_schema"

#: Dagster 1.13's asset page shows a Markdown entry in place only when it is shorter than this
#: (UTF-16 code units, ui-core MetadataEntry.tsx); a longer one is behind "[Show Markdown]".
INLINE_MARKDOWN_LIMIT = 1000


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def inline_markdown(lines: Sequence[str], more: str) -> MetadataValue:
    """A Markdown bullet list the asset page shows in place: as many of ``lines`` as fit
    under :data:`INLINE_MARKDOWN_LIMIT`, then ``more`` (say where the rest is) with the count
    of lines left out, if any were.
    """
    shown: list[str] = []
    for i, line in enumerate(lines):
        left = len(lines) - i - 1
        tail = [f"- … {left} more: {more}"] if left else []
        if _utf16_length("\n".join([*shown, f"- {line}", *tail])) >= INLINE_MARKDOWN_LIMIT:
            tail = [f"- … {len(lines) - i} more: {more}"]
            return MetadataValue.md("\n".join([*shown, *tail]))
        shown.append(f"- {line}")
    return MetadataValue.md("\n".join(shown))


def column_schema(schema: pa.Schema) -> TableSchema:
    """The Dagster column schema of an Arrow schema: names, types, nullability, descriptions.

    Parameters
    ----------
    schema : pa.Schema
        A core table schema, e.g. :data:`robust_data.scoring.rpr.table.RPR_SCHEMA`; each
        column's description is its field's (:func:`robust_data.store.schema.describe`),
        none where it has none.
    """
    return TableSchema(
        columns=[
            TableColumn(
                field.name,
                str(field.type),
                description=describe(field) or None,
                constraints=TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema
        ]
    )


def table_definition(schema: pa.Schema) -> dict[str, Any]:
    """Definition metadata of an asset that stores a table of ``schema``: its column schema."""
    return {COLUMN_SCHEMA: column_schema(schema)}


def _plain(value: Any) -> str | int | float | bool | None:
    """A table cell: NaN as empty (JSON has no NaN), a float rounded, anything else as it is."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return rounded(value)


def records_table(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]
) -> TableMetadataValue:
    """A small table shown in place in the UI, its column types taken from the values.

    Parameters
    ----------
    rows : sequence of mapping
        One mapping per row; values are str, int, float (NaN shown empty, others
        :func:`rounded`), bool or None.
    columns : mapping of str to str
        Column name -> description, in display order; keys missing from a row are empty.
    """
    inferred = pa.Table.from_pylist([dict(r) for r in rows]).schema if rows else pa.schema([])
    fields = [
        with_description(
            inferred.field(name) if name in inferred.names else pa.field(name, pa.string()), about
        )
        for name, about in columns.items()
    ]
    records = [TableRecord({name: _plain(row.get(name)) for name in columns}) for row in rows]
    return MetadataValue.table(records, column_schema(pa.schema(fields)))


def count_table(counts: Mapping[str, int], key: str, unit: str, about: str) -> TableMetadataValue:
    """A two-column table: ``key`` | ``unit``, one row per name in the mapping's order.

    ``about`` describes the counts (the ``unit`` column's description).
    """
    rows = [{key: str(name), unit: int(count)} for name, count in counts.items()]
    return records_table(rows, {key: "", unit: about})


def _typed(entry: Entry) -> MetadataValue:
    """A summary entry as the metadata value its kind, or else its value's type, calls for."""
    value = entry.value
    if entry.kind == "path":
        return MetadataValue.path(value)
    if entry.kind == "md":
        return MetadataValue.md(value)
    if isinstance(value, bool):
        return MetadataValue.bool(value)
    if isinstance(value, int):
        return MetadataValue.int(value)
    if isinstance(value, float):
        return MetadataValue.float(rounded(value))
    if isinstance(value, str):
        return MetadataValue.text(value)
    return MetadataValue.json(rounded(value))


def summary_metadata(record: StageSummary) -> dict[str, MetadataValue]:
    """A stage's summary record as typed metadata, one entry per field, in field order.

    The CLI rebuilds the record from these entries
    (:meth:`robust_data.present.summary.StageSummary.from_metadata`).
    """
    return {entry.key: _typed(entry) for entry in record.entries()}
