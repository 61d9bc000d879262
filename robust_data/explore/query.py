"""Read-only DuckDB SQL over the materialized tables, each exposed as a view named after it.

The connection cannot touch a file: the tables reach DuckDB as Arrow datasets over their
Parquet files, and before any user SQL runs, external access (files, ATTACH, INSTALL, LOAD),
extension autoloading, persistent secrets and spilling are switched off and the configuration
is locked. So ``COPY ... TO``, ``EXPORT DATABASE`` and the like fail however they are wrapped
(``EXPLAIN ANALYZE COPY ...`` included). On top of that, a query is one SELECT, or an EXPLAIN
of one. Results stream as Arrow record batches, up to a row cap, and are written as text by
robust_data.explore.formats.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from robust_data.errors import RobustDataError
from robust_data.explore.formats import (
    FORMATS,
    numeric_columns,
    row_count,
    table_cells,
    table_text,
    write_lines,
)
from robust_data.store.store import Store

#: Default row cap of the aligned table format; CSV and JSON lines stream every row.
TABLE_MAX_ROWS = 10_000
ROWS_PER_BATCH = 2_048
#: Settings applied in this order before any user SQL; the last one locks them all.
LOCKDOWN = (
    ("temp_directory", "''"),  # no spill files
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("allow_persistent_secrets", "false"),
    ("python_enable_replacements", "false"),  # no scans of Python variables
    ("enable_external_access", "false"),  # no files, ATTACH, INSTALL or LOAD
    ("lock_configuration", "true"),
)


class QueryError(RobustDataError):
    """A query that is not read-only, names an unknown table, or fails in DuckDB."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise QueryError(
            f"format one of {FORMATS}", repr(fmt), "pass `format=table`", options=("format",)
        )


def truncation_note(max_rows: int) -> str:
    """The line that says output stopped at the row cap, and which option raises it."""
    return (
        f"output truncated at {max_rows:,} rows; "
        "pass a larger `max_rows` to raise the cap, or `max_rows=None` for no cap"
    )


def _dataset(table: str, files: list[str], filesystem: Any = None) -> ds.Dataset:
    """An Arrow dataset over a table's partitions; columns a partition lacks read as NULL.

    ``filesystem`` is the pyarrow filesystem of ``files`` (None: local paths).
    """
    try:
        schemas = [pq.read_schema(f, filesystem=filesystem) for f in files]
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowException, OSError) as exc:
        raise QueryError(
            f"readable Parquet partitions of {table} with matching column types",
            str(exc).replace("\n", " "),
            "re-materialize the table",
        ) from exc
    return ds.dataset(files, schema=schema, format="parquet", filesystem=filesystem)


def connect(store: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read the stored tables and nothing else.

    Each table is a view over all its partitions, read through Arrow from the local store or
    the tables URL (any fsspec URL, ``ROBUST_DATA_STORE``, with the same credentials); the
    :data:`LOCKDOWN` settings then take files, extensions and settings out of reach of any
    statement.
    """
    con = duckdb.connect(":memory:")
    try:
        files, filesystem = store.table_files()
        for table, paths in files.items():
            con.register(table, _dataset(table, paths, filesystem))
        for name, value in LOCKDOWN:
            con.execute(f"SET {name} = {value}")
    except BaseException:
        con.close()
        raise
    return con


def _explained_type(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The statement type that ``EXPLAIN [ANALYZE] [(options)] <statement>`` explains."""
    tokens = [offset for offset, kind in duckdb.tokenize(query) if kind.name != "comment"][1:]
    if tokens and query[tokens[0] :].upper().startswith(("ANALYZE", "ANALYSE")):
        tokens = tokens[1:]
    if tokens and query[tokens[0]] == "(":
        depth = 0
        while tokens:
            depth += {"(": 1, ")": -1}.get(query[tokens[0]], 0)
            tokens = tokens[1:]
            if depth == 0:
                break
    if not tokens:
        return "empty"
    inner = con.extract_statements(query[tokens[0] :])
    return inner[0].type.name if len(inner) == 1 else "MULTI"


def _one_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The text of the one read-only statement in ``sql``; QueryError (one line) otherwise."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise _invalid(exc) from exc
    if not statements:
        raise QueryError(
            "one SELECT statement", "none", 'pass e.g. "SELECT count(*) FROM raw_samples"'
        )
    if len(statements) > 1:
        raise QueryError("one statement", str(len(statements)), "run them one query at a time")
    query = statements[0].query
    kind = statements[0].type.name
    if kind == "EXPLAIN":
        try:
            kind = _explained_type(con, query)
        except duckdb.Error as exc:
            raise _invalid(exc) from exc
        kind = kind if kind == "SELECT" else f"EXPLAIN {kind}"
    if kind != "SELECT":
        raise QueryError(
            "read-only SQL (one SELECT, or EXPLAIN of one)",
            f"a statement of type {kind}",
            "the store is read-only here",
        )
    return query


def _invalid(exc: duckdb.Error) -> QueryError:
    """DuckDB's parser error as one line."""
    return QueryError("valid SQL", str(exc).replace("\n", " "), "correct the statement")


def _error(exc: Exception, store: Store) -> QueryError:
    """DuckDB's error as one line, naming the views a query may use."""
    views = sorted(store.tables()) or ["none yet: run robust-data curate"]
    message = str(exc).replace("\n", " ")
    if isinstance(exc, duckdb.PermissionException) or "configuration has been locked" in message:
        return QueryError(
            "SQL that only reads the stored tables",
            f"a statement that reaches files, extensions or settings ({message})",
            f"query the views {views} instead",
        )
    return QueryError(
        f"SQL over the tables {views}", f"an error: {message}", "correct the statement"
    )


class _Capped:
    """The record batches of a reader up to ``max_rows`` rows (None: all of them)."""

    def __init__(self, reader: pa.RecordBatchReader, max_rows: int | None, store: Store):
        self.reader, self.max_rows, self.store = reader, max_rows, store
        self.rows = 0
        self.truncated = False

    def _next(self) -> pa.RecordBatch | None:
        try:
            return self.reader.read_next_batch()
        except StopIteration:
            return None
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # DuckDB's errors mid-stream
            raise _error(exc, self.store) from exc

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while not self.truncated and (batch := self._next()) is not None:
            if self.max_rows is not None and self.rows + batch.num_rows > self.max_rows:
                batch = batch.slice(0, self.max_rows - self.rows)
                self.truncated = True
            self.rows += batch.num_rows
            if batch.num_rows:
                yield batch


def _reader(
    store: Store, con: duckdb.DuckDBPyConnection, sql: str, batch: int
) -> pa.RecordBatchReader:
    query = _one_select(con, sql)
    try:
        return con.sql(query).to_arrow_reader(batch)
    except duckdb.Error as exc:
        raise _error(exc, store) from exc


def stream_query(
    store: Store,
    sql: str,
    out: TextIO,
    fmt: str = "table",
    max_rows: int | None = TABLE_MAX_ROWS,
    notes: TextIO | None = None,
    rows_per_batch: int = ROWS_PER_BATCH,
    truncated: Callable[[int], str] = truncation_note,
) -> int:
    """Run read-only SQL over the store and write its rows to ``out`` as they arrive.

    Parameters
    ----------
    store : Store
        The home whose tables are the views.
    sql : str
        One SELECT, or an EXPLAIN of one.
    out : TextIO
        Where the rows go: CSV and JSON lines batch by batch; the aligned table (which needs
        every width) once, at the end.
    fmt : str
        ``table``, ``csv`` or ``json``.
    max_rows : int or None
        Stop after this many rows (None: no cap). The table format then ends with the
        ``truncated`` line as its footer; CSV and JSON write it to ``notes`` so their output
        stays data.
    notes : TextIO or None
        Where the truncation line of CSV and JSON goes (default: standard error).
    rows_per_batch : int
        Rows DuckDB hands over at a time (approximately).
    truncated : callable
        The line that says the output stopped at the cap, given the cap; by default
        :func:`truncation_note`.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    QueryError
        One line: an unknown format, a cap under 1, SQL that is not one read-only statement,
        or DuckDB's own error (with the views that exist).
    """
    _check_format(fmt)
    if max_rows is not None and max_rows < 1:
        raise QueryError(
            "max_rows of 1 or more, or None",
            str(max_rows),
            "pass `max_rows=None` for no cap",
            options=("max_rows",),
        )
    con = connect(store)
    try:
        reader = _reader(store, con, sql, rows_per_batch)
        batches = _Capped(reader, max_rows, store)
        note = truncated(max_rows) if max_rows is not None else ""
        if fmt == "table":
            _write_table(out, reader.schema, batches, note)
        else:
            write_lines(out, fmt, reader.schema.names, batches)
            if batches.truncated and note:
                (notes or sys.stderr).write(note + "\n")
    finally:
        con.close()
    return batches.rows


def _write_table(
    out: TextIO, schema: pa.Schema, batches: _Capped, note: str, max_width: int = 40
) -> None:
    cells = table_cells(schema.names, batches, max_width)
    if batches.truncated and note:
        footer = f"({note})"
    else:
        footer = row_count(len(cells))
    out.write(table_text(schema.names, cells, footer, numeric_columns(schema)))
