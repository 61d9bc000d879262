"""Arrow schemas of the tables the product writes, defined once, and their key-value metadata.

Every table that robust-data writes conforms to one of these schemas exactly (names, order,
types) and carries the metadata keys below, so that DuckDB, pyarrow and Hugging Face
``datasets`` read the files without any help from this package. Each column's one-line
description is written once, in its Arrow field's metadata (:func:`column`), and read from
there wherever it is shown (:func:`descriptions`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Collection, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.version import __version__, code_revision

#: The Hugging Face ``datasets`` Image feature layout: PNG/JPEG bytes plus an optional path.
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

#: The Arrow field metadata key of a column's one-line description.
DESCRIPTION_KEY = b"description"


def column(name: str, kind: pa.DataType, description: str, nullable: bool = True) -> pa.Field:
    """A table's column: an Arrow field carrying its one-line description in its metadata.

    The description is written once, here, and travels with the schema: into every Parquet
    file written with it, the Dagster column schema and the export's dataset card.
    """
    return pa.field(name, kind, nullable=nullable, metadata={DESCRIPTION_KEY: description.encode()})


def describe(field: pa.Field) -> str:
    """A column's one-line description (its field metadata); empty when it has none."""
    return (field.metadata or {}).get(DESCRIPTION_KEY, b"").decode()


def descriptions(schema: pa.Schema) -> dict[str, str]:
    """Column name -> one-line description, for every column of ``schema`` (empty: none)."""
    return {field.name: describe(field) for field in schema}


def with_description(field: pa.Field, description: str) -> pa.Field:
    """``field`` with its description replaced (its other metadata kept)."""
    return field.with_metadata({**(field.metadata or {}), DESCRIPTION_KEY: description.encode()})


SAMPLES_SCHEMA = pa.schema(
    [
        column(
            "sample_id",
            pa.string(),
            '"{dataset}:{split}:{source key}"; unique, stable across re-ingestion',
            nullable=False,
        ),
        column("dataset", pa.string(), "The dataset (partition) name", nullable=False),
        column(
            "content_sha256",
            pa.string(),
            'sha256 of "HxWxC:" + the decoded pixels (equal for exact duplicates)',
            nullable=False,
        ),
        column("split", pa.string(), '"train" or "test"', nullable=False),
        column("label", pa.int64(), "Class index, 0..num_classes-1", nullable=False),
        column("label_name", pa.string(), "The class's name", nullable=False),
        column(
            "image",
            IMAGE_TYPE,
            "{bytes: PNG, path} (the Hugging Face Image layout)",
            nullable=False,
        ),
        column("height", pa.int32(), "Pixels", nullable=False),
        column("width", pa.int32(), "Pixels", nullable=False),
        column("channels", pa.int32(), "1 (grayscale) or 3 (RGB)", nullable=False),
    ]
)
"""One row per ingested image. ``sample_id`` is unique and stable across re-ingestion."""

REJECTS_SCHEMA = pa.schema(
    [
        column("dataset", pa.string(), "The dataset (partition) name", nullable=False),
        column(
            "source_key",
            pa.string(),
            "The item in the source: file path or row index",
            nullable=False,
        ),
        column(
            "reason", pa.string(), "Why it was left out (e.g. the decoder's error)", nullable=False
        ),
    ]
)
"""One row per source item that was left out of ``samples`` and why."""

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


def column_by_id(table: pa.Table, ids: list[str], name: str, default: object = None) -> list:
    """Column ``name`` of ``table`` in the order of ``ids``, matched on ``sample_id``.

    Ids missing from ``table`` get ``default``.
    """
    keys = table.column("sample_id").to_pylist()
    lookup = dict(zip(keys, table.column(name).to_pylist(), strict=True))
    return [lookup.get(i, default) for i in ids]


#: The robust-data metadata keys a table's fingerprint covers (not ``version`` or
#: ``code_revision``: new code that writes the same rows is not new data).
FINGERPRINT_KEYS = ("table", "source", "params")


def table_fingerprint(table: pa.Table, ignore: Collection[str] = ()) -> str:
    """Hex sha256 of a table's content: what it was made from and every value it holds.

    Covers the robust-data ``table``, ``source`` and ``params`` metadata
    (:data:`FINGERPRINT_KEYS`), the column names and types, and every value: each column is
    encoded as plain, uncompressed Parquet data pages (no file footer, so not the writer's
    version), :data:`FINGERPRINT_ROWS` rows at a time. Only the values count, not how they
    sit in memory: chunking, the bytes under null slots, whether a null-free column carries a
    validity bitmap, and the names Parquet gives nested fields all fingerprint alike, so a
    table read back from its file fingerprints as the table that was written. Equal tables
    written by another code revision fingerprint alike; one changed value, row, column or
    parameter changes it.

    Parameters
    ----------
    table : pa.Table
        Any stored table.
    ignore : collection of str
        Columns left out: wall times (``train_seconds``), or the encoded images of a samples
        table, whose ``content_sha256`` column already hashes every image's pixels.

    Returns
    -------
    str
        64 hex characters.
    """
    meta = read_metadata(table.schema)
    stamp = {k: meta[k] for k in FINGERPRINT_KEYS if k in meta}
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode())
    for name in table.column_names:
        if name in ignore:
            continue
        kind = _canonical(table.schema.field(name).type)
        digest.update(f"\n{name}:{kind}\n".encode())
        column = table.column(name).cast(kind)
        for start in range(0, max(len(column), 1), FINGERPRINT_ROWS):
            part = column.slice(start, FINGERPRINT_ROWS).combine_chunks()  # pages: as one
            digest.update(_data_pages(name, part))
    return digest.hexdigest()


#: Rows encoded at a time by :func:`table_fingerprint` (bounds its memory).
FINGERPRINT_ROWS = 65_536


def _data_pages(name: str, column: pa.Array) -> bytes:
    """The data pages of ``column`` as one plain, uncompressed Parquet column chunk (the
    file's magic and footer left out)."""
    sink = io.BytesIO()
    pq.write_table(
        pa.table([column], names=[name]),
        sink,
        row_group_size=FINGERPRINT_ROWS,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
        data_page_size=1 << 20,
        data_page_version="1.0",
        store_schema=False,
    )
    raw = sink.getvalue()
    footer = int.from_bytes(raw[-8:-4], "little")
    return raw[4 : len(raw) - 8 - footer]


def _canonical(kind: pa.DataType) -> pa.DataType:
    """``kind`` with the names and nullability of nested fields made uniform (Parquet names a
    list's values ``element`` where Arrow builds ``item``)."""
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_canonical(kind.value_type), kind.list_size)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(_canonical(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _canonical(f.type)) for f in kind])
    return kind
