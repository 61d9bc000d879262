"""Parquet tables at a location (a local path or an fsspec URL), compressed alike everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.io.atomic import write_atomic
from robust_data.io.files import filesystem, is_url, local_path, write_bytes

#: Rows per Parquet row group: readers can stream a stored table group by group.
ROW_GROUP_ROWS = 8192
#: The codec of every Parquet file the product writes.
COMPRESSION = "zstd"


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of a Parquet file (the product's codec and row groups)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
    return bytes(sink.getvalue().to_pybytes())


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to the local ``path`` so that readers see the old file or the whole new one.

    The table goes to a temporary file in the same folder, is fsynced, and is renamed over
    ``path``. On any failure the temporary file is removed and ``path`` is left untouched.

    Returns
    -------
    Path
        The written path.
    """
    return write_atomic(
        path,
        lambda tmp: pq.write_table(
            table, tmp, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS
        ),
    )


def write_parquet(table: pa.Table, location: str | os.PathLike[str]) -> str:
    """Write ``table`` to ``location`` whole: atomically to a local path, in one put to a URL.

    A local table is streamed to a temporary file renamed over the target
    (:func:`write_parquet_atomic`); an object is encoded in memory and put at once.

    Returns
    -------
    str
        The written location.
    """
    if not is_url(location):
        return str(write_parquet_atomic(table, local_path(location)))
    return write_bytes(parquet_bytes(table), location)


def read_parquet(location: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """Read the Parquet table at ``location`` (only ``columns`` when given).

    A local file is read in place; an object is fetched whole in one get, then decoded.

    Raises
    ------
    FileNotFoundError
        When nothing is stored there.
    """
    fs, path = filesystem(location)
    if not fs.isfile(path):
        raise FileNotFoundError(f"expected a Parquet file at {location}; found no file")
    if is_url(location):
        return pq.read_table(pa.BufferReader(fs.cat_file(path)), columns=columns)
    return pq.read_table(path, columns=columns)
