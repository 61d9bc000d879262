"""The home folder: the Parquet store, the Dagster instance and the dataset registry.

Layout of a home (default ``./.robust-data``; ``--home`` or ``ROBUST_DATA_HOME`` move it)::

    <home>/store/<table>/<dataset>.parquet   the materialized tables, one file per partition
    <home>/dagster/                          DAGSTER_HOME: runs, materializations, schedules
    <home>/datasets.json                     registered datasets: name -> source spec and root
                                             (<store URL>/datasets.json with a URL store)

The storage root defaults to ``<home>/store``; ``ROBUST_DATA_STORE`` points it elsewhere: a
local folder, or any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``) for the
tables. With a URL, the tables go there, and so do the model weights
(:meth:`Store.weights_location`), the report folders (:meth:`Store.report_location`) and the
exports (:meth:`Store.export_location`, published by :func:`publish_folder`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.errors import DatasetError
from robust_data.ingest.sources import PATH_SOURCES, SOURCES

HOME_ENV = "ROBUST_DATA_HOME"
STORE_ENV = "ROBUST_DATA_STORE"
DEFAULT_HOME = ".robust-data"
#: Outputs of steps inside graph-backed assets: ``<tables root>/_steps/<run id>/...``.
STEPS_FOLDER = "_steps"

_DAGSTER_YAML = """\
# Written by robust-data. Local SQLite storage under this folder.
telemetry:
  enabled: false
nux:
  enabled: false  # no "Join the Dagster community" dialog over the UI
"""


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute home folder.

    The argument, else ``$ROBUST_DATA_HOME``, else ``./.robust-data``.
    """
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


#: Temporary files of atomic writes: ``.<name>.<pid>.<random>.tmp`` beside their target. The
#: pid tells a temporary file of a live writer from one a killed process left behind.
TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask, read without changing it.

    From the ``Umask:`` line of ``/proc/self/status`` (Linux); elsewhere by setting it and
    setting it back: a file another thread creates in between is made private (0o077),
    never more open than asked.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode ``open`` or ``mkdir`` would give a new file (folder) under the current umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create private ones (0600, 0700) whatever the
    umask; what the product keeps is given this mode instead, so that a group or others
    read the store, reports and exports as they read the user's other files.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    return Path(tmp)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as dead).

    True when that cannot be told (no such pid number, another user's process), so that
    nothing of a process that may still run is ever removed.
    """
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def temp_owner(name: str) -> int | None:
    """The pid in a temporary name ``.<target>.<pid>.<random>.tmp``; None for other names."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    parts = name[: -len(TMP_SUFFIX)].split(".")
    for part in reversed(parts[:-1]):
        if part.isascii() and part.isdigit():
            return int(part)
    return None


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove temporary files and folders under ``folder`` whose writing process is gone.

    Only names of the form ``.<target>.<pid>.<random>.tmp`` whose pid no longer runs are
    removed; a live writer's temporary files and every other file are left alone.

    Returns
    -------
    list of Path
        What was removed.
    """
    import shutil

    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(f".*{TMP_SUFFIX}"):
        owner = temp_owner(path.name)
        if owner is None or pid_alive(owner):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    tmp = _atomic_target(target)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())  # mkstemp's 0600 -> what open() gives under the umask
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


#: Rows per Parquet row group: readers can stream a stored table group by group.
ROW_GROUP_ROWS = 8192


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` so that readers see the old file or the whole new one.

    The table goes to a temporary file in the same folder, is fsynced, and is renamed over
    ``path``. On any failure the temporary file is removed and ``path`` is left untouched.

    Returns
    -------
    Path
        The written path.
    """
    return _write_atomic(
        path,
        lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS),
    )


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write text to ``path`` atomically (temporary file in the same folder, then rename)."""
    return write_bytes_atomic(text.encode(), path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write bytes to ``path`` atomically (temporary file in the same folder, then rename)."""
    return _write_atomic(path, lambda tmp: tmp.write_bytes(data))


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an fsspec URL (``s3://...``) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def local_path(location: str | os.PathLike[str]) -> Path:
    """The local path of a location that is not an fsspec URL (a ``file://`` prefix dropped)."""
    return Path(str(location).removeprefix("file://"))


def write_parquet_url(table: pa.Table, url: str) -> str:
    """Write a table to an fsspec URL in one put (object stores publish it whole or not at all)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return write_bytes_url(sink.getvalue().to_pybytes(), url)


def write_bytes_url(data: bytes, url: str) -> str:
    """Write bytes to an fsspec URL in one put (object stores publish it whole or not at all)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return url


def write_bytes_anywhere(data: bytes, location: str | os.PathLike[str]) -> str:
    """Write bytes atomically to a local path (temp file, rename) or an fsspec URL (one put)."""
    if is_url(location):
        return write_bytes_url(data, str(location))
    return str(write_bytes_atomic(data, location))


def exists_anywhere(location: str | os.PathLike[str]) -> bool:
    """Whether a file exists at a local path or an fsspec URL."""
    if not is_url(location):
        return local_path(location).is_file()
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(location))
    return bool(fs.exists(path))


def _remove(location: str) -> None:
    """Delete the file at a local path or an fsspec URL."""
    if not is_url(location):
        local_path(location).unlink(missing_ok=True)
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    fs.rm(path)


def read_bytes(location: str | os.PathLike[str]) -> bytes:
    """The bytes stored at a local path or an fsspec URL."""
    if not is_url(location):
        return local_path(location).read_bytes()
    import fsspec

    with fsspec.open(str(location), "rb") as handle:
        return handle.read()


def sha256_anywhere(location: str | os.PathLike[str]) -> str:
    """Hex sha256 of the bytes at a local path or an fsspec URL, read in 1 MiB blocks."""
    import hashlib

    import fsspec

    target = str(location) if is_url(location) else str(local_path(location))
    digest = hashlib.sha256()
    with fsspec.open(target, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_folder(
    local: str | os.PathLike[str], url: str, last: tuple[str, ...] = ()
) -> list[str]:
    """Make the objects under ``url`` mirror the files under the local folder ``local``.

    Every file goes up as one object (``<url>/<relative POSIX path>``): first all files not in
    ``last``, then those of ``last`` in that order; then the objects under ``url`` that
    ``local`` does not hold are deleted. Symbolic links are not followed.

    What a reader can rely on, on an object store such as S3: each object is whole (a put,
    multipart included, publishes all of its bytes or none); the files of ``last`` are written
    after every other file, so once the last one of them is new, so is every file listed
    beside it. A reader that opens the prefix while a publish is uploading can see some new
    data files with the old ``last`` files (and, until the clean-up at the end, objects the new
    folder no longer holds); nothing here locks the prefix against a second writer.

    Parameters
    ----------
    local : path
        The folder to publish (left as it is).
    url : str
        An fsspec URL prefix (``s3://bucket/store/exports/mnist``).
    last : tuple of str
        Relative paths to upload after every other file (markers: ``lineage.json``).

    Returns
    -------
    list of str
        The URL of every published object, in upload order.

    Raises
    ------
    ValueError
        When ``url`` is not an fsspec URL or ``local`` is not a folder.
    """
    import fsspec

    folder = local_path(local)
    if not is_url(url):
        raise ValueError(
            f"expected an fsspec URL to publish {folder} to; found {url!r}; "
            "pass a URL such as s3://bucket/prefix, or copy the folder locally"
        )
    if not folder.is_dir():
        raise ValueError(
            f"expected a folder to publish to {url}; found no folder at {folder}; "
            "export into it first"
        )
    url = url.rstrip("/")
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    names = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    order = [n for n in names if n not in last] + [n for n in last if n in names]
    for name in order:
        target = f"{root}/{name}"
        parent = target.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        fs.put_file(str(folder / name), target)
    fs.invalidate_cache(root)
    kept = {f"{root}/{name}" for name in names}
    found = fs.find(root) if fs.exists(root) else []
    stale = [p for p in found if p.startswith(f"{root}/") and p not in kept]
    if stale:
        fs.rm(stale)
    return [f"{url}/{name}" for name in order]


def read_parquet(location: str | os.PathLike[str]) -> pa.Table:
    """Read a Parquet table from a local path or an fsspec URL.

    Raises
    ------
    FileNotFoundError
        When nothing is stored there.
    """
    if not is_url(location):
        path = local_path(location)
        if not path.exists():
            raise FileNotFoundError(f"expected a Parquet file at {path}; found no file")
        return pq.read_table(path)
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(location))
    if not fs.exists(path):
        raise FileNotFoundError(f"expected a Parquet file at {location}; found no object")
    with fs.open(path, "rb") as handle:
        return pq.read_table(pa.BufferReader(handle.read()))


def table_location(root: str, table: str, partition: str | None = None) -> str:
    """:func:`table_path` for a storage root that may be an fsspec URL."""
    if not is_url(root):
        return str(table_path(local_path(root), table, partition))
    name = f"{table}.parquet" if partition is None else f"{table}/{partition}.parquet"
    return f"{root.rstrip('/')}/{name}"


def table_path(storage_root: Path, table: str, partition: str | None = None) -> Path:
    """Where a table (one partition of it, when partitioned) lives under a storage root."""
    if partition is None:
        return storage_root / f"{table}.parquet"
    return storage_root / table / f"{partition}.parquet"


def _ensure_folder(folder: Path) -> None:
    """Create ``folder``; one-line DatasetError when a file is in the way or it is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DatasetError(
            "a folder", f"a file at {folder} (or above it)", "pass --home with a folder path"
        ) from None
    except OSError as error:  # no permission, a read-only file system, ...
        raise DatasetError(
            "a writable folder",
            f"cannot create {folder} ({error.strerror})",
            "pass --home with a folder you can write",
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatasetError(
            "a writable folder",
            f"{folder} is read-only",
            "pass --home with a folder you can write, or fix its permissions",
        )


@dataclass(frozen=True)
class Registration:
    """A dataset registered in a home: its partition name, source spec and local root.

    ``source`` and ``root`` are stored resolved (absolute paths), so a registration means the
    same data whatever the current directory; together they are the dataset's fingerprint.
    """

    name: str
    source: str
    root: str | None = None

    def fingerprint(self) -> tuple[str, str | None]:
        """What binds the name: the source spec and the root."""
        return (self.source, self.root)

    def describe(self) -> str:
        """The source as one phrase ('mnist (root /data/mnist)')."""
        return self.source + (f" (root {self.root})" if self.root else "")


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
        if is_url(root):
            return cls(resolved, resolved / "store", str(root).rstrip("/"))
        local = local_path(root).expanduser().resolve()
        return cls(home=resolved, storage_root=local)

    @property
    def tables_root(self) -> str:
        """Where tables live: the fsspec URL, or the local storage root."""
        return self.tables_url or str(self.storage_root)

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance folder (``DAGSTER_HOME``)."""
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
        """Create the folders and a ``dagster.yaml`` (telemetry off) if they are missing.

        Raises
        ------
        DatasetError
            When the home (or a folder in it) is a file, or cannot be written.
        """
        for folder in (self.home, self.storage_root, self.dagster_home):
            _ensure_folder(folder)
        config = self.dagster_home / "dagster.yaml"
        if not config.exists():
            write_text_atomic(_DAGSTER_YAML, config)
        return self

    def table_path(self, table: str, partition: str | None = None) -> Path:
        """Where a table (one partition of it, when partitioned) is stored locally.

        Raises
        ------
        ValueError
            When the tables live at an fsspec URL (use :meth:`read` or :meth:`has`).
        """
        if self.tables_url:
            raise ValueError(
                f"expected tables in a local folder; found them at {self.tables_url}; "
                "read them with Store.read, or unset ROBUST_DATA_STORE to use a local folder"
            )
        return table_path(self.storage_root, table, partition)

    def has(self, table: str, partition: str | None = None) -> bool:
        """Whether a table (partition) is stored, locally or at the tables URL."""
        location = table_location(self.tables_root, table, partition)
        if not is_url(location):
            return Path(location).exists()
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return bool(fs.exists(path))

    def read(self, table: str, partition: str | None = None) -> pa.Table:
        """Read a stored table; FileNotFoundError names the path and how to make it."""
        location = table_location(self.tables_root, table, partition)
        try:
            return read_parquet(location)
        except FileNotFoundError:
            what = table if partition is None else f"{table}[{partition}]"
            raise FileNotFoundError(
                f"expected table {what} at {location}; found no file; materialize it first "
                f"(robust-data ingest/curate with --home {self.home})"
            ) from None

    def weights_location(self, kind: str, name: str) -> str:
        """Where a weight file lives: ``<tables root>/<kind>/<name>.pt``, a path or a URL.

        ``kind`` is ``reference_model`` or ``retrained_model``; with a tables URL the weights
        go there too, so steps on other machines can load them.
        """
        if self.tables_url:
            return f"{self.tables_url}/{kind}/{name}.pt"
        return str(self.storage_root / kind / f"{name}.pt")

    def report_location(self, name: str) -> str:
        """Where dataset ``name``'s report folder lives: under the tables URL, else the home."""
        if self.tables_url:
            return f"{self.tables_url}/reports/{name}"
        return str(self.home / "reports" / name)

    def export_location(self, dataset: str) -> str:
        """Where dataset ``dataset``'s export lives: under the tables URL, else the home.

        ``<tables URL>/exports/<dataset>`` when the tables live at an fsspec URL (the export is
        published there, see :func:`publish_folder`), else ``<home>/exports/<dataset>``.
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
        """
        location = table_location(self.tables_root, name, partition)
        if is_url(location):
            return write_parquet_url(table, location)
        _ensure_folder(Path(location).parent)
        return str(write_parquet_atomic(table, location))

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
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, root = fsspec.core.url_to_fs(self.tables_url)
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

    def registrations(self) -> dict[str, Registration]:
        """Datasets registered in this home, by name."""
        if not exists_anywhere(self.registry_location):
            return {}
        raw: dict[str, dict[str, Any]] = json.loads(read_bytes(self.registry_location))
        return {name: Registration(name=name, **entry) for name, entry in raw.items()}

    def lookup(self, name: str) -> Registration:
        """The registration of dataset ``name``; a built-in source name needs none.

        Raises
        ------
        DatasetError
            When ``name`` is neither registered in this home nor a built-in source.
        """
        registered = self.registrations()
        if name in registered:
            return registered[name]
        if name in SOURCES and name not in PATH_SOURCES:
            return Registration(name=name, source=name)
        raise DatasetError(
            f"a registered dataset or built-in source (registered: {sorted(registered)})",
            repr(name),
            f"register it first: robust-data ingest SOURCE --name {name} --home {self.home}",
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
                "pass --name NEW_NAME to keep both, or --replace to drop the old tables and "
                "re-ingest under this name",
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

    def invalidate(self, name: str) -> list[str]:
        """Remove every stored table partition, weight file, report and export of ``name``.

        Returns
        -------
        list of str
            The removed locations.
        """
        import shutil

        removed = []
        for table in self._table_names():
            location = table_location(self.tables_root, table, name)
            if self.has(table, name):
                _remove(location)
                removed.append(location)
        for kind in ("reference_model", "retrained_model"):
            for location in self._weight_files(kind, name):
                _remove(location)
                removed.append(location)
        for folder in (self.home / "reports" / name, self.home / "exports" / name):
            if folder.is_dir():
                shutil.rmtree(folder)
                removed.append(str(folder))
        if self.tables_url:
            import fsspec

            for location in (self.report_location(name), self.export_location(name)):
                fs, prefix = fsspec.core.url_to_fs(location)
                if fs.exists(prefix):
                    fs.rm(prefix, recursive=True)
                    removed.append(location)
        return removed

    def _weight_files(self, kind: str, name: str) -> list[str]:
        """The weight files of dataset ``name`` (``name.pt``, ``name-*.pt``), local or remote."""
        pattern = self.weights_location(kind, name)
        patterns = [pattern, pattern.removesuffix(".pt") + "-*.pt"]
        if not self.tables_url:
            folder = self.storage_root / kind
            return [str(p) for g in patterns for p in sorted(folder.glob(Path(g).name))]
        import fsspec

        fs, _ = fsspec.core.url_to_fs(self.tables_url)
        protocol = self.tables_url.split("://", 1)[0]
        found = [p for g in patterns for p in sorted(fs.glob(g.split("://", 1)[1]))]
        return [f"{protocol}://{p}" for p in found]

    def step_output_runs(self) -> list[str]:
        """Run ids that have step outputs under ``<tables root>/_steps`` (graph-asset steps)."""
        return self._names_under(f"{self.tables_root}/{STEPS_FOLDER}")

    def remove_step_outputs(self, run_id: str) -> bool:
        """Remove ``<tables root>/_steps/<run_id>``; whether there was anything to remove."""
        import shutil

        location = f"{self.tables_root}/{STEPS_FOLDER}/{run_id}"
        if not is_url(location):
            path = local_path(location)
            if not path.is_dir():
                return False
            shutil.rmtree(path)
            return True
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        if not fs.exists(path):
            return False
        fs.rm(path, recursive=True)
        return True

    def _names_under(self, location: str) -> list[str]:
        """Names of the entries in a local folder or under a URL prefix (sorted)."""
        if not is_url(location):
            path = local_path(location)
            return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        if not fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))

    def _table_names(self) -> list[str]:
        """Names of the tables stored under the tables root (locally or at the URL)."""
        return [n for n in self._names_under(self.tables_root) if n != STEPS_FOLDER]

    def register(self, registration: Registration) -> None:
        """Record (or update) a dataset registration, atomically."""
        self._write_registry({**self.registrations(), registration.name: registration})

    def _write_registry(self, registrations: dict[str, Registration]) -> None:
        entries = {n: {"source": r.source, "root": r.root} for n, r in registrations.items()}
        text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        if self.tables_url:  # one put: readers see the old registry or the new one
            write_bytes_anywhere(text.encode(), self.registry_location)
            return
        self.home.mkdir(parents=True, exist_ok=True)
        write_text_atomic(text, self.registry_path)
