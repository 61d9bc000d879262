"""Bytes at a location: a local path or an fsspec URL, read and written alike.

fsspec treats a local path as one more file system (:func:`filesystem`), so every function
here works for both. The one difference kept is in :func:`write_bytes`: a local file is
written atomically (temporary file, rename), where an object store's single put already
publishes the object whole or not at all.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from robust_data.io.atomic import write_bytes_atomic

#: Bytes hashed per read by :func:`file_sha256`.
HASH_BLOCK = 1 << 20


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an fsspec URL (``s3://...``) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def local_path(location: str | os.PathLike[str]) -> Path:
    """The local path of a location that is not an fsspec URL (a ``file://`` prefix dropped)."""
    return Path(str(location).removeprefix("file://"))


def filesystem(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """The fsspec file system holding ``location``, and its path on that file system.

    A local path (``file://`` prefix or none) is on fsspec's local file system, and is never
    parsed as a URL (a ``::`` in a folder name stays a folder name).
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    if is_url(location):
        fs, path = fsspec.core.url_to_fs(str(location))
        return fs, path
    return LocalFileSystem(), str(local_path(location))


def read_bytes(location: str | os.PathLike[str]) -> bytes:
    """The bytes stored at ``location``; FileNotFoundError when nothing is."""
    fs, path = filesystem(location)
    return bytes(fs.cat_file(path))


def write_bytes(data: bytes, location: str | os.PathLike[str]) -> str:
    """Write bytes to ``location`` whole: atomically to a local path, in one put to a URL.

    A local file goes to a temporary file beside it that is renamed over it; an object goes
    up in one put (object stores publish it whole or not at all). Missing folders are made.

    Returns
    -------
    str
        The written location.
    """
    if not is_url(location):
        return str(write_bytes_atomic(data, local_path(location)))
    fs, path = filesystem(location)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return str(location)


def file_exists(location: str | os.PathLike[str]) -> bool:
    """Whether a file (an object) is stored at ``location``."""
    fs, path = filesystem(location)
    return bool(fs.isfile(path))


def file_sha256(location: str | os.PathLike[str]) -> str:
    """Hex sha256 of the bytes at ``location``, read in 1 MiB blocks."""
    fs, path = filesystem(location)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_file(location: str | os.PathLike[str]) -> None:
    """Delete the file (object) at ``location``; nothing there is not an error."""
    fs, path = filesystem(location)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def remove_folder(location: str | os.PathLike[str]) -> bool:
    """Delete the folder (URL prefix) at ``location`` with all it holds.

    Returns
    -------
    bool
        Whether there was a folder to delete.
    """
    fs, path = filesystem(location)
    if not fs.isdir(path):
        return False
    fs.rm(path, recursive=True)
    return True


def glob_files(pattern: str) -> list[str]:
    """The locations of the files matching ``pattern`` (``*`` wildcards), sorted.

    Each is written as ``pattern`` is: a local path, or a URL with ``pattern``'s protocol.
    """
    fs, path = filesystem(pattern)
    found = sorted(fs.glob(path))
    if not is_url(pattern):  # fsspec's local paths are plain paths already
        return found
    protocol = pattern.split("://", 1)[0]
    return [f"{protocol}://{p}" for p in found]


def list_names(location: str | os.PathLike[str]) -> list[str]:
    """The names of the entries of the folder (URL prefix) at ``location``, sorted.

    Empty when there is no folder there.
    """
    fs, path = filesystem(location)
    if not fs.isdir(path):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
