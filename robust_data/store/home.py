"""The layout of a home folder: where it is, where its tables live, its folders made safely.

Layout of a home (default ``./.robust-data``; ``home`` or ``ROBUST_DATA_HOME`` move it)::

    <home>/store/<table>/<dataset>.parquet   the materialized tables, one file per partition
    <home>/dagster/                          DAGSTER_HOME: runs, materializations, schedules
    <home>/datasets.json                     registered datasets: name -> source spec and root
                                             (<store URL>/datasets.json with a URL store)

The storage root defaults to ``<home>/store``; ``ROBUST_DATA_STORE`` points it elsewhere: a
local folder, or any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``) for the
tables (see :class:`robust_data.store.store.Store`).
"""

from __future__ import annotations

import os
from pathlib import Path

from robust_data.errors import DatasetError

HOME_ENV = "ROBUST_DATA_HOME"
STORE_ENV = "ROBUST_DATA_STORE"
DEFAULT_HOME = ".robust-data"
#: Outputs of steps inside graph-backed assets: ``<tables root>/_steps/<run id>/...``.
STEPS_FOLDER = "_steps"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute home folder.

    The argument, else ``$ROBUST_DATA_HOME``, else ``./.robust-data``.
    """
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def table_location(root: str, table: str, partition: str | None = None) -> str:
    """Where a table (one partition of it, when partitioned) lives under a tables root.

    ``<root>/<table>.parquet``, or ``<root>/<table>/<partition>.parquet``; ``root`` is a local
    folder or an fsspec URL, and so is the location.
    """
    name = f"{table}.parquet" if partition is None else f"{table}/{partition}.parquet"
    return f"{str(root).rstrip('/')}/{name}"


def table_path(storage_root: Path, table: str, partition: str | None = None) -> Path:
    """:func:`table_location` under a local storage root, as a path."""
    return Path(table_location(str(storage_root), table, partition))


def ensure_folder(folder: Path) -> None:
    """Create ``folder``; one-line DatasetError when a file is in the way or it is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DatasetError(
            "a folder",
            f"a file at {folder} (or above it)",
            "pass `home` with a folder path",
            options=("home",),
        ) from None
    except OSError as error:  # no permission, a read-only file system, ...
        raise DatasetError(
            "a writable folder",
            f"cannot create {folder} ({error.strerror})",
            "pass `home` with a folder you can write",
            options=("home",),
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatasetError(
            "a writable folder",
            f"{folder} is read-only",
            "pass `home` with a folder you can write, or fix its permissions",
            options=("home",),
        )
