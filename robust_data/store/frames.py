"""A home's stored tables as pandas DataFrames, for notebooks: :class:`Home`.

The thinnest layer over :class:`~robust_data.store.store.Store`: it refuses a folder that is
no home (where :meth:`Store.open` makes one on first write, as the CLI needs), lists what is
stored, and reads a table as a DataFrame with a one-line error naming what is there instead::

    home = Home.open("./.robust-data")
    home.datasets()                       # ['digits', 'mnist-5k']
    scores = home.read("rpr_scores", "digits")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from robust_data.errors import DatasetError, did_you_mean
from robust_data.store.store import Store

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Home:
    """An existing home, read-only: its datasets and tables, as DataFrames.

    Attributes
    ----------
    store : Store
        The home's store (``store.read`` gives pyarrow tables, with their metadata).
    """

    store: Store

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """The home at ``home`` (default ``$ROBUST_DATA_HOME`` or ``./.robust-data``).

        Raises
        ------
        DatasetError
            One line, when ``home`` is not a folder a robust-data run wrote (one with
            ``store/``, ``datasets.json`` or ``dagster/``).
        """
        store = Store.open(home)
        marks = (store.storage_root, store.registry_path, store.dagster_home)
        if store.home.is_dir() and (store.tables_url or any(p.exists() for p in marks)):
            return cls(store)
        found = "nothing there" if not store.home.exists() else "no store/, datasets.json, dagster/"
        if store.home.exists() and not store.home.is_dir():
            found = "a file"
        raise DatasetError(
            "a robust-data home (a folder with store/, datasets.json or dagster/)",
            f"{found} at {store.home}",
            "pass the `home` of an ingest or curate run (robust-data --home, robust_data.curate)",
            options=("home",),
        )

    def datasets(self, table: str = "raw_samples") -> list[str]:
        """The datasets stored with ``table`` (default: every ingested one), sorted."""
        return self.store.datasets(table)

    def tables(self) -> list[str]:
        """The names of the stored tables, sorted."""
        return sorted(self.store.table_files()[0])

    def read(self, table: str, dataset: str) -> pd.DataFrame:
        """Stored ``table`` of ``dataset`` as a DataFrame (one row per stored row).

        Raises
        ------
        DatasetError
            One line, when the home has no such table or no such dataset in it, naming the
            closest stored one ("did you mean 'digits'?").
        """
        tables = self.tables()  # names are matched whole against what is stored: no paths
        if table not in tables:
            raise DatasetError(
                f"a table stored in {self.store.home} (one of {tables})",
                repr(table),
                did_you_mean(table, tables) or "ingest or curate a dataset into this home",
            )
        stored = self.datasets(table)
        if dataset not in stored:
            raise DatasetError(
                f"a dataset with a stored {table} in {self.store.home} (stored: {stored})",
                repr(dataset),
                did_you_mean(dataset, stored) or "curate it into this home first",
            )
        return self.store.read(table, dataset).to_pandas()
