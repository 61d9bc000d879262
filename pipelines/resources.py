"""Resources: the home folder (store, registry) and the Parquet IO manager."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
)

from robust_data.store import Store, table_path, write_parquet_atomic


class HomeResource(ConfigurableResource):
    """The robust-data home folder: dataset registry and storage root."""

    path: str

    def store(self) -> Store:
        return Store.open(self.path)


class ParquetIOManager(ConfigurableIOManager):
    """Stores each asset output (a ``pyarrow.Table``) as Parquet, never as a pickle.

    Layout: ``<root>/<asset>/<partition>.parquet`` for partitioned assets and
    ``<root>/<asset>.parquet`` otherwise; writes are atomic (temp file, then rename).
    """

    root: str

    def _path(self, context: InputContext | OutputContext) -> Path:
        partition = context.partition_key if context.has_partition_key else None
        return table_path(Path(self.root), "/".join(context.asset_key.path), partition)

    def handle_output(self, context: OutputContext, obj: pa.Table) -> None:
        if not isinstance(obj, pa.Table):
            raise TypeError(
                f"expected a pyarrow.Table from asset {context.asset_key.to_user_string()}; "
                f"found {type(obj).__name__}; return a table (this IO manager never pickles)"
            )
        path = write_parquet_atomic(obj, self._path(context))
        context.add_output_metadata({"path": MetadataValue.path(str(path))})

    def load_input(self, context: InputContext) -> pa.Table:
        import pyarrow.parquet as pq

        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"expected upstream table at {path}; found no file; materialize "
                f"{context.asset_key.to_user_string()} first"
            )
        return pq.read_table(path)
