"""Arrow schemas of the tables the product writes, defined once, and their key-value metadata.

Every table that robust-data writes conforms to one of these schemas exactly (names, order,
types) and carries the metadata keys below, so that DuckDB, pyarrow and Hugging Face
``datasets`` read the files without any help from this package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from robust_data.version import __version__, code_revision

#: The Hugging Face ``datasets`` Image feature layout: PNG/JPEG bytes plus an optional path.
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("label_name", pa.string(), nullable=False),
        pa.field("image", IMAGE_TYPE, nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("channels", pa.int32(), nullable=False),
    ]
)
"""One row per ingested image. ``sample_id`` is unique and stable across re-ingestion."""

#: One line per column of :data:`SAMPLES_SCHEMA` (the column docs the Dagster UI shows).
SAMPLES_COLUMNS_DOC = {
    "sample_id": '"{dataset}:{split}:{source key}"; unique, stable across re-ingestion',
    "dataset": "The dataset (partition) name",
    "content_sha256": "sha256 of the decoded pixels (equal for exact duplicates)",
    "split": '"train" or "test"',
    "label": "Class index, 0..num_classes-1",
    "label_name": "The class's name",
    "image": "{bytes: PNG, path} (the Hugging Face Image layout)",
    "height": "Pixels",
    "width": "Pixels",
    "channels": "1 (grayscale) or 3 (RGB)",
}

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
"""One row per source item that was left out of ``samples`` and why."""

#: One line per column of :data:`REJECTS_SCHEMA`.
REJECTS_COLUMNS_DOC = {
    "dataset": "The dataset (partition) name",
    "source_key": "The item in the source: file path or row index",
    "reason": "Why it was left out (e.g. the decoder's error)",
}

#: Prefix of every key-value metadata key robust-data writes into Parquet files.
META_PREFIX = "robust_data."


def table_metadata(table_name: str, source: str, params: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Build the key-value metadata stamped into a Parquet file.

    Parameters
    ----------
    table_name : str
        Logical table, e.g. ``"raw_samples"``.
    source : str
        What the rows were made from (a dataset source spec, or upstream tables).
    params : Mapping
        The parameters that produced the table; must be JSON-serialisable.

    Returns
    -------
    dict of bytes to bytes
        Keys ``robust_data.{table,version,code_revision,source,params}``.
    """
    values = {
        "table": table_name,
        "version": __version__,
        "code_revision": code_revision() or "unknown",
        "source": source,
        "params": json.dumps(dict(params), sort_keys=True),
    }
    return {f"{META_PREFIX}{k}".encode(): v.encode() for k, v in values.items()}


def read_metadata(schema: pa.Schema) -> dict[str, str]:
    """Return the robust-data key-value metadata of a schema with the prefix stripped."""
    raw = schema.metadata or {}
    return {
        k.decode()[len(META_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode().startswith(META_PREFIX)
    }


def read_params(schema: pa.Schema) -> dict[str, Any]:
    """The ``params`` a table was made with (its robust-data metadata), ``{}`` when absent."""
    return json.loads(read_metadata(schema).get("params", "{}"))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Check that ``table`` has exactly the columns of ``schema`` and cast it to it.

    Raises
    ------
    ValueError
        One line naming the missing and unexpected columns.
    """
    found = table.schema.names
    if found != schema.names:
        missing = [n for n in schema.names if n not in found]
        extra = [n for n in found if n not in schema.names]
        raise ValueError(
            f"expected columns {schema.names}; found {found} (missing {missing}, unexpected "
            f"{extra}); build the table with the schema from robust_data.store.schema"
        )
    return table.cast(schema.with_metadata(table.schema.metadata))


def column_by_id(table: pa.Table, ids: list[str], name: str, default: object = None) -> list:
    """Column ``name`` of ``table`` in the order of ``ids``, matched on ``sample_id``.

    Ids missing from ``table`` get ``default``.
    """
    keys = table.column("sample_id").to_pylist()
    lookup = dict(zip(keys, table.column(name).to_pylist(), strict=True))
    return [lookup.get(i, default) for i in ids]
