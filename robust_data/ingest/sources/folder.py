"""User data: an image folder, one subfolder per class, optionally under split folders.

Unreadable images become rejects (key and reason) instead of failing the whole dataset;
hidden files and folders are left out, with a note.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robust_data.errors import DatasetError
from robust_data.ingest.sources.base import (
    SHOWN_ROWS,
    LoadOptions,
    Reject,
    SourceData,
    decode_all,
    hidden_note,
    is_hidden,
)
from robust_data.ingest.splits import SPLIT_WORDS, is_split_name, split_mapping

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
FOLDER_TRAIN_FIX = (
    "add ROOT/train/<class>/ folders, or put the class folders directly under ROOT so that "
    "ingest splits the data"
)


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not is_hidden(p.name))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _hidden_here(folder: Path, root: Path) -> list[str]:
    """The hidden folders and hidden images directly in ``folder``, relative to ``root``."""
    return [
        p.relative_to(root).as_posix()
        for p in sorted(folder.iterdir())
        if is_hidden(p.name) and (p.is_dir() or _is_image(p))
    ]


def _images_under(folder: Path, root: Path, hidden: list[str]) -> list[Path]:
    """The images anywhere under ``folder``, sorted, outside hidden files and folders.

    Hidden folders are not entered; each one, and each hidden image, is appended to
    ``hidden`` (relative to ``root``). Symbolic links to folders are not followed.
    """
    found: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        hidden.extend(_hidden_here(here, root))
        subdirs[:] = [d for d in subdirs if not is_hidden(d)]
        found.extend(here / n for n in names if not is_hidden(n) and _is_image(here / n))
    return sorted(found)


def _split_dirs(root: Path) -> list[tuple[str | None, Path]]:
    """``[(split, folder)]`` for ``ROOT/{train,test,val...}/<class>``, else ``[(None, ROOT)]``.

    Raises
    ------
    DatasetError
        Split folders beside other folders, or both a test and a validation folder.
    """
    top = _class_dirs(root)
    splits = [p.name for p in top if is_split_name(p.name)]
    if not splits:
        return [(None, root)]
    others = [p.name for p in top if not is_split_name(p.name)]
    if others:
        raise DatasetError(
            f"either class folders or split folders ({'/'.join(SPLIT_WORDS)}) at the top of {root}",
            f"split folders {splits} beside other folders {others[:SHOWN_ROWS]}",
            "move the class folders into the split folders, "
            "or rename the folder named like a split",
        )
    mapping = split_mapping(splits, str(root))
    return [(mapping[p.name], p) for p in top]


def _stray_images(root: Path, split_dirs: list[tuple[str | None, Path]]) -> list[Reject]:
    """Images outside any class folder: listed as rejects rather than silently skipped."""
    folders = [root] + ([d for _, d in split_dirs] if split_dirs[0][0] else [])
    return [
        Reject(
            p.relative_to(root).as_posix(), "not inside a class folder; move it into ROOT/<class>/"
        )
        for folder in folders
        for p in sorted(folder.iterdir())
        if _is_image(p) and not is_hidden(p.name)
    ]


def load_imagefolder(root: Path | None, options: LoadOptions) -> SourceData:
    """Read ``ROOT/<class>/**/*.{png,jpg,jpeg}``, or ``ROOT/<split>/<class>/...``.

    Classes are the sorted class-folder names; files with other suffixes are ignored, and
    images outside a class folder become rejects. Hidden files and folders (names starting
    with '.') are left out, and a note says how many. Split folders are ``train`` and ``test``,
    or ``val``/``valid``/``validation`` standing for test when there is no test folder
    (see :func:`robust_data.ingest.splits.split_mapping`).
    """
    if root is None or not root.is_dir():
        raise DatasetError(
            "imagefolder:PATH to a folder with one subfolder per class",
            f"{root} is not a folder",
            "check the path after 'imagefolder:'",
        )
    split_dirs = _split_dirs(root)
    split_layout = split_dirs[0][0] is not None
    names = sorted({c.name for _, d in split_dirs for c in _class_dirs(d)})
    if not names:
        raise DatasetError(
            "one subfolder per class with PNG/JPEG files",
            f"no subfolders in {root}",
            "arrange images as ROOT/<class>/<file>.png",
        )
    index = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    hidden = _hidden_here(root, root)
    for split, directory in split_dirs:
        hidden.extend(_hidden_here(directory, root) if split_layout else [])
        for class_dir in _class_dirs(directory):
            for path in _images_under(class_dir, root, hidden):
                files.append(path)
                labels.append(index[class_dir.name])
                splits.append(split or "")
    keys = [p.relative_to(root).as_posix() for p in files]
    blobs = [p.read_bytes() for p in files]
    pixels, kept, rejects, notes = decode_all(
        blobs, keys, options.channels, desc=f"decode {root.name}"
    )
    return SourceData(
        pixels=pixels,
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        label_names=names,
        keys=[keys[i] for i in kept],
        splits=[splits[i] for i in kept] if split_layout else None,
        paths=[keys[i] for i in kept],
        rejects=_stray_images(root, split_dirs) + rejects,
        params={
            "root": str(root),
            "layout": "split/class" if split_layout else "class",
            "split_folders": {d.name: s for s, d in split_dirs} if split_layout else {},
            "files": len(files),
            "hidden_skipped": len(hidden),
        },
        notes=hidden_note(hidden) + notes,
        missing_train_fix=FOLDER_TRAIN_FIX,
    )
