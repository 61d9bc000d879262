"""Publish a local folder to an fsspec URL prefix: one object per file, markers last."""

from __future__ import annotations

import os

from robust_data.errors import RobustDataError
from robust_data.io.files import filesystem, is_url, local_path


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
    RobustDataError
        When ``url`` is not an fsspec URL or ``local`` is not a folder.
    """
    folder = local_path(local)
    if not is_url(url):  # a local copy is an export of its own, swapped in whole
        raise RobustDataError(
            f"an fsspec URL to publish {folder} to",
            repr(url),
            "pass a URL such as s3://bucket/prefix, or copy the folder locally",
        )
    if not folder.is_dir():
        raise RobustDataError(
            f"a folder to publish to {url}", f"no folder at {folder}", "export into it first"
        )
    url = url.rstrip("/")
    fs, root = filesystem(url)
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
