"""Read-only DuckDB SQL over the materialized tables, each exposed as a view named after it."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from robust_data.store import Store

#: Statement types a query may contain: reads only.
READ_ONLY = {"SELECT", "EXPLAIN"}
FORMATS = ("table", "csv", "json")


class QueryError(ValueError):
    """A query that is not read-only, names an unknown table, or fails in DuckDB."""


@dataclass(frozen=True)
class QueryResult:
    """The rows of a query as an Arrow table."""

    table: pa.Table

    def render(self, fmt: str = "table", max_width: int = 40) -> str:
        """Render as an aligned text table, CSV or JSON lines (binary shown as base64 in CSV/JSON)."""
        if fmt not in FORMATS:
            raise QueryError(
                f"expected format one of {FORMATS}; found {fmt!r}; pass --format table"
            )
        rows = self.table.to_pylist()
        names = self.table.schema.names
        if fmt == "json":
            return "".join(json.dumps(_jsonable(r), sort_keys=False) + "\n" for r in rows)
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(names)
            for row in rows:
                writer.writerow([_cell_csv(row[n]) for n in names])
            return out.getvalue()
        cells = [[_cell_text(row[n], max_width) for n in names] for row in rows]
        widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
        line = "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))
        rule = "  ".join("-" * w for w in widths)
        body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return (
            "\n".join([line, rule, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])
            + "\n"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, Decimal):  # DuckDB sums are HUGEINT/DECIMAL: JSON numbers, not strings
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _cell_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bytes)):
        return json.dumps(_jsonable(value))
    return str(value)


def _cell_text(value: Any, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_cell_text(v, max_width)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def connect(store: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per stored table (all its partitions)."""
    con = duckdb.connect(":memory:")
    for table, files in store.tables().items():
        listing = "[" + ", ".join(_quote(str(f)) for f in files) + "]"
        con.execute(
            f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet({listing}, union_by_name = true)'
        )
    return con


def run_query(store: Store, sql: str) -> QueryResult:
    """Run read-only SQL over the store.

    Raises
    ------
    QueryError
        One line: for non-read statements, no statement, or DuckDB's own error (with the views
        that exist).
    """
    con = connect(store)
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"expected valid SQL; found {exc}".replace("\n", " ")) from exc
    if not statements:
        raise QueryError(
            'expected one SELECT statement; found none; pass e.g. "SELECT count(*) FROM raw_samples"'
        )
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_ONLY:
            raise QueryError(
                f"expected read-only SQL (SELECT); found a {kind} statement; the store is read-only here"
            )
    try:
        for statement in statements[:-1]:
            con.execute(statement.query)
        result = con.sql(statements[-1].query).to_arrow_table()
    except duckdb.Error as exc:
        views = sorted(store.tables()) or ["none yet: run robust-data curate"]
        message = str(exc).replace("\n", " ")
        raise QueryError(
            f"expected SQL over the tables {views}; found an error: {message}"
        ) from exc
    finally:
        con.close()
    return QueryResult(result)
