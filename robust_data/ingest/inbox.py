"""The inbox: a folder where users drop image folders or Parquet files to be curated.

Each top-level entry is one dataset: a folder (``imagefolder`` layout: one subfolder per
class) or a ``.parquet`` file. Its name becomes the dataset name, and its fingerprint (a hash
of every file's relative path and bytes) tells a re-dropped, changed dataset from an
unchanged one. Entries whose name starts with ``.`` and entries still being written (modified
less than ``settle_seconds`` ago) are left for a later scan: copy into a hidden name and
rename, or just wait.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from robust_data.ingest.sources import SOURCES, slugify


@dataclass(frozen=True)
class InboxEntry:
    """One dataset found in the inbox.

    Attributes
    ----------
    name : str
        Dataset (partition) name, from the entry's name.
    source : str
        Source spec: ``imagefolder:PATH`` or ``parquet:PATH``.
    path : Path
    fingerprint : str
        Hex sha256 over (relative path, bytes) of every file; changes when any file does.
    """

    name: str
    source: str
    path: Path
    fingerprint: str


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def fingerprint(path: Path) -> str:
    """Hex sha256 of every file under ``path`` (a file or folder): relative names and bytes."""
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _newest_change(path: Path) -> float:
    times = [f.stat().st_mtime for f in _files(path)]
    return max([path.stat().st_mtime, *times])


def dataset_name(entry: Path) -> str:
    """The dataset name of an inbox entry: its slug, with ``inbox-`` before built-in names."""
    name = slugify(entry.stem if entry.is_file() else entry.name)
    return f"inbox-{name}" if name in SOURCES else name


def scan_inbox(folder: str | Path, settle_seconds: float = 5.0) -> list[InboxEntry]:
    """Every settled dataset in ``folder``, by name.

    Parameters
    ----------
    folder : str or Path
        The inbox; created when missing.
    settle_seconds : float
        Entries changed more recently than this are skipped (still being copied).

    Returns
    -------
    list of InboxEntry
        Sorted by name; folders without files and non-Parquet files are left out.
    """
    root = Path(folder).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    entries = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix != ".parquet":
            continue
        if not _files(path) or now - _newest_change(path) < settle_seconds:
            continue
        kind = "parquet" if path.is_file() else "imagefolder"
        entries.append(InboxEntry(dataset_name(path), f"{kind}:{path}", path, fingerprint(path)))
    return entries
