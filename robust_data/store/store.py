"""The Store: paths and tables of one home, its dataset registry, and step-output cleanup.

A home's layout is :mod:`robust_data.store.home`'s. The tables live under the storage root
(``<home>/store`` unless ``ROBUST_DATA_STORE`` says otherwise), a local folder or any fsspec
URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``). With a URL, the tables go there,
and so do the model weights (:meth:`Store.weights_location`), the report folders
(:meth:`Store.report_location`), the exports (:meth:`Store.export_location`, published by
:func:`robust_data.io.publish.publish_folder`) and the registry (:attr:`Store.registry_location`).
Every read and write goes through :mod:`robust_data.io`, which treats both alike.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from robust_data.errors import DatasetError, RobustDataError
from robust_data.io.files import (
    file_exists,
    filesystem,
    glob_files,
    is_url,
    list_names,
    local_path,
    remove_file,
    remove_folder,
)
from robust_data.io.parquet import read_parquet, write_parquet
from robust_data.store.home import (
    STEPS_FOLDER,
    STORE_ENV,
    ensure_folder,
    resolve_home,
    table_location,
    table_path,
)
from robust_data.store.registry import Registration, read_registry, write_registry


@dataclass(frozen=True)
class Store:
    """Paths and tables of one home folder.

    Parameters
    ----------
    home : Path
        The home folder (absolute).
    storage_root : Path
        Where tables and weight files live; ``<home>/store`` unless configured.
    tables_url : str
        An fsspec URL where the tables live instead (empty: under ``storage_root``).
    """

    home: Path
    storage_root: Path
    tables_url: str = ""

    @classmethod
    def open(
        cls, home: str | os.PathLike[str] | None = None, storage_root: str | None = None
    ) -> Store:
        """Resolve a home (see :func:`resolve_home`) and its storage root."""
        resolved = resolve_home(home)
        root = storage_root or os.environ.get(STORE_ENV) or resolved / "store"
        if is_url(root):  # the tables live at the URL; the home stays a local folder
            return cls(resolved, resolved / "store", str(root).rstrip("/"))
        local = local_path(root).expanduser().resolve()
        return cls(home=resolved, storage_root=local)

    @property
    def tables_root(self) -> str:
        """Where tables live: the fsspec URL, or the local storage root."""
        return self.tables_url or str(self.storage_root)

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance folder (``DAGSTER_HOME``), made by ``pipelines.home``."""
        return self.home / "dagster"

    @property
    def registry_path(self) -> Path:
        """The local registry file (``<home>/datasets.json``)."""
        return self.home / "datasets.json"

    @property
    def registry_location(self) -> str:
        """Where the dataset registry lives: ``<tables URL>/datasets.json`` with a URL store
        (every worker reads the same one), else :attr:`registry_path`."""
        if self.tables_url:
            return f"{self.tables_url}/datasets.json"
        return str(self.registry_path)

    def ensure(self) -> Store:
        """Create the home and its storage root if they are missing.

        Raises
        ------
        DatasetError
            When the home (or a folder in it) is a file, or cannot be written.
        """
        for folder in (self.home, self.storage_root):
            ensure_folder(folder)
        return self

    def table_path(self, table: str, partition: str | None = None) -> Path:
        """Where a table (one partition of it, when partitioned) is stored locally.

        Raises
        ------
        RobustDataError
            When the tables live at an fsspec URL (use :meth:`read` or :meth:`has`).
        """
        if self.tables_url:
            raise RobustDataError(
                "tables in a local folder",
                f"them at {self.tables_url}",
                "read them with Store.read, or unset ROBUST_DATA_STORE to use a local folder",
            )
        return table_path(self.storage_root, table, partition)

    def has(self, table: str, partition: str | None = None) -> bool:
        """Whether a table (partition) is stored, locally or at the tables URL."""
        return file_exists(table_location(self.tables_root, table, partition))

    def datasets(self, table: str = "raw_samples") -> list[str]:
        """The datasets (partitions) of ``table`` stored in this home, sorted; ``[]`` for none.

        ``raw_samples`` (the default) lists the ingested datasets.
        """
        names = list_names(f"{self.tables_root}/{table}")
        return [
            n.removesuffix(".parquet")
            for n in names
            if n.endswith(".parquet") and not n.startswith(".")
        ]

    def read(
        self, table: str, partition: str | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Read a stored table (only ``columns`` when given); FileNotFoundError names the path
        and how to make it."""
        location = table_location(self.tables_root, table, partition)
        try:
            return read_parquet(location, columns)
        except FileNotFoundError:
            what = table if partition is None else f"{table}[{partition}]"
            raise FileNotFoundError(
                f"expected table {what} at {location}; found no file; materialize it first "
                f"(ingest or curate the dataset in the home {self.home})"
            ) from None

    def weights_location(self, kind: str, name: str) -> str:
        """Where a weight file lives: ``<tables root>/<kind>/<name>.pt``, a path or a URL.

        ``kind`` is ``reference_model`` or ``retrained_model``; with a tables URL the weights
        go there too, so steps on other machines can load them.
        """
        return f"{self.tables_root}/{kind}/{name}.pt"

    def report_location(self, name: str) -> str:
        """Where dataset ``name``'s report folder lives: under the tables URL, else the home."""
        if self.tables_url:
            return f"{self.tables_url}/reports/{name}"
        return str(self.home / "reports" / name)

    def export_location(self, dataset: str) -> str:
        """Where dataset ``dataset``'s export lives: under the tables URL, else the home.

        ``<tables URL>/exports/<dataset>`` when the tables live at an fsspec URL (the export is
        published there, see :func:`robust_data.io.publish.publish_folder`), else
        ``<home>/exports/<dataset>``.
        """
        if self.tables_url:
            return f"{self.tables_url}/exports/{dataset}"
        return str(self.home / "exports" / dataset)

    def write(self, table: pa.Table, name: str, partition: str | None = None) -> str:
        """Store a table atomically (a local temporary file renamed, or one put to the URL).

        Returns
        -------
        str
            Its location.

        Raises
        ------
        DatasetError
            When a local table's folder cannot be made (a file in the way, not writable).
        """
        location = table_location(self.tables_root, name, partition)
        if not self.tables_url:
            ensure_folder(Path(location).parent)
        return write_parquet(table, location)

    def tables(self) -> dict[str, list[Path]]:
        """Every stored table name and its Parquet files (temporary files excluded)."""
        found: dict[str, list[Path]] = {}
        if not self.storage_root.exists():
            return found
        for entry in sorted(self.storage_root.iterdir()):
            if entry.is_dir():
                files = sorted(p for p in entry.glob("*.parquet") if not p.name.startswith("."))
                if files:
                    found[entry.name] = files
            elif entry.suffix == ".parquet" and not entry.name.startswith("."):
                found[entry.stem] = [entry]
        return found

    def table_files(self) -> tuple[dict[str, list[str]], Any]:
        """Every stored table and its Parquet files, locally or at the tables URL.

        Returns
        -------
        (files, filesystem)
            Table name -> its file paths, and the pyarrow filesystem they are paths on (None:
            the local one). Temporary files and step outputs are left out.
        """
        if not self.tables_url:
            return {name: [str(p) for p in files] for name, files in self.tables().items()}, None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, root = filesystem(self.tables_url)
        found: dict[str, list[str]] = {}
        for path in sorted(fs.find(root)) if fs.exists(root) else []:
            parts = path[len(root) :].strip("/").split("/")
            name = parts[-1]
            if not name.endswith(".parquet") or name.startswith(".") or parts[0] == STEPS_FOLDER:
                continue
            table = parts[0].removesuffix(".parquet") if len(parts) <= 2 else ""
            if table:
                found.setdefault(table, []).append(path)
        return found, PyFileSystem(FSSpecHandler(fs))

    # -----------------------------------------------------------------------------------------
    # the dataset registry

    def registrations(self) -> dict[str, Registration]:
        """Datasets registered in this home, by name."""
        return read_registry(self.registry_location)

    def lookup(self, name: str, builtin: Collection[str] = ()) -> Registration:
        """The registration of dataset ``name``; a built-in source's name needs none.

        Parameters
        ----------
        name : str
            The dataset (partition) name.
        builtin : collection of str
            Source names a dataset may be named after without registering it (the ingest
            stage's :data:`robust_data.ingest.sources.BUILTIN_SOURCES`); the store itself
            knows no sources.

        Raises
        ------
        DatasetError
            When ``name`` is neither registered in this home nor a built-in source.
        """
        registered = self.registrations()
        if name in registered:
            return registered[name]
        if name in builtin:
            return Registration(name=name, source=name)
        raise DatasetError(
            f"a registered dataset or built-in source (registered: {sorted(registered)})",
            repr(name),
            f"register it first: ingest a source with `name={name}` into the home {self.home}",
            options=("name",),
        )

    def claim(self, registration: Registration, replace: bool = False) -> list[str]:
        """Check that a dataset name may take this source, before anything of it is written.

        A name already registered with another source (spec or root) is refused unless
        ``replace``: then everything stored for the name (its tables, weights, report and
        default export) is removed, so old and new data never mix. Nothing is registered:
        :meth:`register` follows once the source's data is stored.

        Returns
        -------
        list of str
            What ``replace`` removed (empty when nothing was).

        Raises
        ------
        DatasetError
            One line naming both sources, when the name is bound to another source.
        """
        known = self.registrations().get(registration.name)
        if known is None or known.fingerprint() == registration.fingerprint():
            return []
        if not replace:
            raise DatasetError(
                f"dataset {registration.name!r} from its registered source {known.describe()}",
                f"another source {registration.describe()}",
                "pass `name=NEW_NAME` to keep both, or `replace=True` to drop the old tables and "
                "re-ingest under this name",
                options=("name", "replace"),
            )
        removed = self.invalidate(registration.name)
        self._write_registry(
            {n: r for n, r in self.registrations().items() if n != registration.name}
        )
        return removed

    def bind(self, registration: Registration, replace: bool = False) -> list[str]:
        """:meth:`claim` the name, then :meth:`register` it at once (for runs requested later)."""
        removed = self.claim(registration, replace)
        self.register(registration)
        return removed

    def register(self, registration: Registration) -> None:
        """Record (or update) a dataset registration, atomically."""
        self._write_registry({**self.registrations(), registration.name: registration})

    def _write_registry(self, registrations: dict[str, Registration]) -> None:
        write_registry(registrations, self.registry_location)

    # -----------------------------------------------------------------------------------------
    # removal: a dataset's data, finished runs' step outputs

    def invalidate(self, name: str) -> list[str]:
        """Remove every stored table partition, weight file, report and export of ``name``.

        Returns
        -------
        list of str
            The removed locations.
        """
        removed = []
        for table in self._table_names():
            location = table_location(self.tables_root, table, name)
            if file_exists(location):
                remove_file(location)
                removed.append(location)
        for kind in ("reference_model", "retrained_model"):
            for location in self._weight_files(kind, name):
                remove_file(location)
                removed.append(location)
        folders = (
            str(self.home / "reports" / name),
            str(self.home / "exports" / name),
            self.report_location(name),
            self.export_location(name),
        )
        for location in dict.fromkeys(folders):  # the home's, then the tables URL's
            if remove_folder(location):
                removed.append(location)
        return removed

    def _weight_files(self, kind: str, name: str) -> list[str]:
        """The weight files of dataset ``name`` (``name.pt``, ``name-*.pt``), local or remote."""
        pattern = self.weights_location(kind, name)
        patterns = [pattern, pattern.removesuffix(".pt") + "-*.pt"]
        return [location for p in patterns for location in glob_files(p)]

    def step_output_runs(self) -> list[str]:
        """Run ids that have step outputs under ``<tables root>/_steps`` (graph-asset steps)."""
        return list_names(f"{self.tables_root}/{STEPS_FOLDER}")

    def remove_step_outputs(self, run_id: str) -> bool:
        """Remove ``<tables root>/_steps/<run_id>``; whether there was anything to remove."""
        return remove_folder(f"{self.tables_root}/{STEPS_FOLDER}/{run_id}")

    def _table_names(self) -> list[str]:
        """Names of the tables stored under the tables root (locally or at the URL)."""
        return [n for n in list_names(self.tables_root) if n != STEPS_FOLDER]
