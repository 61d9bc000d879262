"""Data versions: each stored table's content fingerprint, so that only real changes propagate.

Dagster marks an asset stale when an upstream asset's data version changed since it was
materialized. Without a version of our own, every materialization gets a new one, so
re-ingesting identical data would mark everything downstream stale. Each asset instead
reports the core's fingerprint of the table it stored
(:func:`robust_data.store.schema.table_fingerprint`): an identical re-materialization keeps
its version and leaves its dependents fresh.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import Any

import pyarrow as pa
from dagster import BetaWarning, DataVersion, Output

from robust_data.store.schema import table_fingerprint


def data_version(table: pa.Table, ignore: Collection[str] = ()) -> DataVersion:
    """The data version of a stored table: its content fingerprint (64 hex characters).

    ``ignore``: columns that change on every run without changing the data (wall times), or
    that another column already hashes (the samples' encoded images: ``content_sha256``).
    """
    return DataVersion(table_fingerprint(table, ignore))


def versioned(
    table: pa.Table,
    output_name: str = "result",
    metadata: Mapping[str, Any] | None = None,
    ignore: Collection[str] = (),
) -> Output:
    """The ``Output`` of a table asset, its data version the table's fingerprint.

    (``Output``'s ``data_version`` is a beta parameter in Dagster 1.13; the warning that says
    so is silenced here, for this call only.)
    """
    version = data_version(table, ignore)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BetaWarning, message=".*data_version")
        return Output(
            table, output_name=output_name, metadata=dict(metadata or {}), data_version=version
        )
