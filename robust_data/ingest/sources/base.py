"""What every dataset source returns, the registry entry that describes a source, and what the
sources share: decoding with rejects and notes, label checks, hidden files left out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robust_data.errors import DatasetError
from robust_data.ingest.images import ImageDecodeError, decode_image_noted
from robust_data.present.progress import progress_bar

#: Largest label id accepted. Larger ids are not class indices: K classes get ids 0..K-1.
MAX_LABEL = 1_000_000
#: How to fix a dataset without a usable train split, when the source knows no better.
TRAIN_FIX = (
    "add training data with at least 2 classes, or leave the splits out so ingest splits the data"
)
#: At most this many row keys are named in a message.
SHOWN_ROWS = 5


@dataclass
class Reject:
    """A source item left out of the samples: its key (path or row) and why."""

    source_key: str
    reason: str


@dataclass
class SourceData:
    """Decoded images and labels as a source delivers them, before validation and splitting.

    Attributes
    ----------
    pixels : np.ndarray or list of np.ndarray
        (N, H, W, C) uint8, or N arrays of (H, W, C) uint8 when sizes may differ.
    labels : np.ndarray
        (N,) int64, expected in [0, len(label_names)).
    label_names : list of str
        Name of each class index.
    keys : list of str
        Per sample, its key in the source (row index or relative path); unique per split.
    splits : list of str, optional
        Per sample, "train" or "test" when the source has real splits; None otherwise.
    paths : list of str or None, optional
        Per sample, the file it came from (stored in ``image.path``); None for array sources.
    rejects : list of Reject
        Items that could not be read.
    params : dict
        What was read and from where, for the table's metadata.
    notes : list of str
        One line per way the stored pixels differ from the files (16-bit scaled, alpha
        dropped), with how many images and a few keys.
    missing_train_fix : str
        How to fix this source when it has no train split with at least 2 classes.
    """

    pixels: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    label_names: list[str]
    keys: list[str]
    splits: list[str] | None = None
    paths: list[str | None] | None = None
    rejects: list[Reject] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing_train_fix: str = TRAIN_FIX

    def __len__(self) -> int:
        return len(self.labels)


def from_split_parts(
    parts: Sequence[tuple[str, np.ndarray, np.ndarray]],
    label_names: list[str],
    params: dict[str, Any],
    missing_train_fix: str = TRAIN_FIX,
) -> SourceData:
    """Join array parts of a source that has real splits.

    Parameters
    ----------
    parts : sequence of (split, pixels, labels)
        ``pixels`` (n, H, W, C) uint8 and ``labels`` (n,) int; several parts of one split
        (CIFAR-10's five train batches) are numbered on from where the previous part ended.
    label_names, params, missing_train_fix
        As in :class:`SourceData`.

    Returns
    -------
    SourceData
        Keys are the row index within the split, in part order.
    """
    keys: list[str] = []
    splits: list[str] = []
    seen: dict[str, int] = {}
    for split, pixels, _ in parts:
        start = seen.get(split, 0)
        keys.extend(str(start + i) for i in range(len(pixels)))
        splits.extend([split] * len(pixels))
        seen[split] = start + len(pixels)
    return SourceData(
        pixels=np.concatenate([p for _, p, _ in parts]),
        labels=np.concatenate([np.asarray(y, dtype=np.int64) for _, _, y in parts]),
        label_names=label_names,
        keys=keys,
        splits=splits,
        params=params,
        missing_train_fix=missing_train_fix,
    )


def integer_labels(values: Any, where: str) -> np.ndarray:
    """Labels as int64 class indices, refusing every value that a cast would change.

    Parameters
    ----------
    values : array-like
        (N,) numbers: integers, booleans, or floats that are whole numbers (1.0 is 1).
    where : str
        What holds them, for messages (``column 'label' of /data/x.parquet``).

    Returns
    -------
    np.ndarray
        (N,) int64 in [0, MAX_LABEL].

    Raises
    ------
    DatasetError
        A value that is not one number, a fraction, NaN, negative or above ``MAX_LABEL``;
        the message names the first such row and how many there are.
    """
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise DatasetError(
            "one integer label per item",
            f"{array.dtype} values of shape {array.shape} in {where}",
            "store each label as one integer class index (or a class name string)",
        )
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            fraction = ~np.isfinite(array) | (array != np.trunc(array))
        _refuse_rows(
            array,
            fraction,
            f"whole-number labels (1.0 is fine, 1.5 is not) in {where}",
            "fix those labels: a label is a class index, never a fraction",
        )
    _refuse_rows(
        array,
        (array < 0) | (array > MAX_LABEL),
        f"labels in [0, {MAX_LABEL:,}] in {where}",
        "number the classes 0..K-1, or store class names as strings",
    )
    return array.astype(np.int64)


def _refuse_rows(array: np.ndarray, bad: np.ndarray, expected: str, fix: str) -> None:
    """Raise the one-line error naming the first row where ``bad`` is True, if any."""
    rows = np.flatnonzero(bad)
    if rows.size:
        first = int(rows[0])
        found = f"{array[first].item()!r} at row {first}" + (
            f" ({rows.size} such rows)" if rows.size > 1 else ""
        )
        raise DatasetError(expected, found, fix)


def _whole_numbers_in(array: np.ndarray, low: int, high: int) -> bool:
    """Whether every value of a numeric ``array`` is a whole number in [low, high]."""
    if array.size == 0:
        return True
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return False
    values = array.astype(np.float64) if array.dtype.kind == "f" else array
    whole = array.dtype.kind != "f" or bool((values == np.trunc(values)).all())
    return whole and bool(array.min() >= low) and bool(array.max() <= high)


def uint8_pixels(values: Any, where: str) -> np.ndarray:
    """Pixel values as uint8, refusing any that a cast would change (wrap or truncate).

    Parameters
    ----------
    values : array-like
        Numbers that must be whole and in 0..255 (already uint8 passes as is).
    where : str
        The file they came from, for messages.

    Returns
    -------
    np.ndarray
        The values as uint8, same shape.

    Raises
    ------
    DatasetError
        Non-numeric values, fractions, or values outside 0..255.
    """
    array = np.asarray(values)
    if array.dtype == np.uint8:
        return array
    numeric = array.dtype.kind in "biuf"
    if not numeric or not _whole_numbers_in(array, 0, 255):
        shown = (
            f"values from {array.min()} to {array.max()}" if numeric and array.size else "values"
        )
        raise DatasetError(
            "8-bit pixels (whole numbers 0..255)",
            f"{array.dtype} {shown} in {where}",
            "convert the images to 8-bit before ingesting",
        )
    return array.astype(np.uint8)


@dataclass(frozen=True)
class LoadOptions:
    """Options a source honours while decoding: ``channels`` forces 1 or 3 channels."""

    channels: int | None = None


Loader = Callable[[Path | None, LoadOptions], SourceData]


@dataclass(frozen=True)
class DefaultRoot:
    """Where a source looks when no root is given: an environment variable, else a system folder.

    Attributes
    ----------
    env : str
        The environment variable that, when set and not empty, names the folder instead.
    path : Path
        The folder a system package installs the files in (Debian's
        ``/usr/share/datasets/<name>``).
    install : str
        The command that installs them there, for messages (``apt-get install PACKAGE``).
    """

    env: str
    path: Path
    install: str

    def locate(self) -> tuple[Path | None, str]:
        """The folder to read, or None when there is none; and where it was looked for.

        Returns
        -------
        (folder, looked)
            ``folder``: the variable's path (whether or not it exists, so that a wrong one
            fails naming it), else ``path`` when it is a folder, else None. ``looked``: one
            phrase naming the variable or the folder.
        """
        override = os.environ.get(self.env, "").strip()
        if override:
            return Path(override).expanduser().resolve(), f"${self.env}={override}"
        if self.path.is_dir():
            return self.path, str(self.path)
        return None, f"no {self.path} (the package is not installed) and ${self.env} is not set"

    def fix(self) -> str:
        """How to provide the files: install the package (or fix the variable), or pass a root."""
        if os.environ.get(self.env, "").strip():
            return (
                f"point ${self.env} at the dataset folder, or unset it to read {self.path}, "
                "or pass `root=DIR`"
            )
        return f"install them with '{self.install}' (as root), or pass `root=DIR`"


@dataclass(frozen=True)
class Source:
    """A registry entry.

    Attributes
    ----------
    name : str
        Registry name (``digits``) or prefix (``imagefolder`` for ``imagefolder:PATH``).
    description : str
        One line for ``robust-data datasets``.
    load : Loader
        Reads the data; raises DatasetError naming the files expected when they are missing.
    needs_root : bool
        Whether a local root folder (or the path after the colon) is required.
    expected : str
        The files or layout a root must hold, for availability checks and errors.
    find : callable, optional
        ``find(root) -> str | None``: None when the root holds the data, else what is missing.
    default : DefaultRoot, optional
        Where to look when no root is given (Fashion-MNIST: Debian's folder); None: a root is
        required.
    """

    name: str
    description: str
    load: Loader
    needs_root: bool = False
    expected: str = ""
    find: Callable[[Path], str | None] | None = None
    default: DefaultRoot | None = None

    def availability(self, root: Path | None) -> tuple[bool, str]:
        """Whether the source can be read here: (available, one-line explanation)."""
        if not self.needs_root:
            return True, "bundled with an installed package"
        if root is None and self.default is not None:
            return self._default_availability(self.default)
        if root is None:
            return False, f"needs `root=DIR` holding {self.expected}"
        missing = self.find(root) if self.find else None
        if missing:
            return False, missing
        return True, f"found under {root}"

    def _default_availability(self, default: DefaultRoot) -> tuple[bool, str]:
        """Availability at the default root, with how to install the files when missing."""
        where, looked = default.locate()
        if where is None:
            return False, f"{looked}: {default.fix()} holding {self.expected}"
        missing = self.find(where) if self.find else None
        if missing:
            return False, f"{missing} ({looked}): {default.fix()}"
        if looked == str(where):
            return True, f"found in the default root {where}"
        return True, f"found under {where} ({looked})"


def decode_all(
    blobs: Sequence[bytes | None], keys: Sequence[str], channels: int | None, desc: str
) -> tuple[list[np.ndarray], list[int], list[Reject], list[str]]:
    """Decode encoded images, collecting the unreadable ones as rejects.

    Returns
    -------
    pixels : list of np.ndarray
        (H, W, C) uint8 for each readable blob.
    kept : list of int
        Index into ``blobs`` of each decoded image.
    rejects : list of Reject
    notes : list of str
        One line per kind of change to the stored pixels (16-bit scaled, alpha dropped), with
        the number of images and the first few keys; see :func:`decode_image_noted`.
    """
    pixels: list[np.ndarray] = []
    kept: list[int] = []
    rejects: list[Reject] = []
    noted: dict[str, list[str]] = {}
    for i, blob in enumerate(
        progress_bar(blobs, desc=desc, unit="img", leave=False, mininterval=1.0)
    ):
        try:
            if blob is None:
                raise ImageDecodeError("no image bytes")
            image, notes = decode_image_noted(blob, channels)
        except ImageDecodeError as exc:
            rejects.append(Reject(source_key=keys[i], reason=exc.reason))
            continue
        pixels.append(image)
        kept.append(i)
        for note in notes:
            noted.setdefault(note, []).append(keys[i])
    return pixels, kept, rejects, summarize_notes(noted)


def summarize_notes(noted: dict[str, list[str]]) -> list[str]:
    """``{note: keys}`` as lines ``"NOTE: N images (e.g. k1, k2, k3)"``."""
    lines = []
    for note, keys in noted.items():
        count = f"{len(keys)} image" + ("s" if len(keys) > 1 else "")
        lines.append(f"{note}: {count} (e.g. {', '.join(keys[:3])})")
    return lines


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (starts with '.'): skipped by every source."""
    return name.startswith(".")


def hidden_note(hidden: list[str]) -> list[str]:
    """The note that says which hidden files and folders were left out; none for none."""
    if not hidden:
        return []
    plural = "s" if len(hidden) > 1 else ""
    return [
        f"left out {len(hidden)} hidden file{plural} or folder{plural} "
        f"(names starting with '.', e.g. {', '.join(hidden[:3])})"
    ]


def require_root(
    name: str, root: Path | None, expected: str, default: DefaultRoot | None = None
) -> Path:
    """Return ``root``, else the ``default`` root, or raise the one-line error for neither.

    Raises
    ------
    DatasetError
        No root given and no default folder (the fix says how to install the files when the
        source has a default), or a root (or the default's variable) that is not a folder.
    """
    if root is None and default is not None:
        where, looked = default.locate()
        if where is None:
            raise DatasetError(
                f"a local root for {name!r} holding {expected}",
                f"no `root` given, {looked}",
                default.fix(),
                options=("root",),
            )
        if not where.is_dir():
            raise DatasetError(
                f"a folder holding {expected}",
                f"{looked} is not a folder",
                default.fix(),
                options=("root",),
            )
        return where
    if root is None:
        raise DatasetError(
            f"a local root for {name!r} holding {expected}",
            "no `root` given",
            "pass `root=DIR` (nothing is downloaded)",
            options=("root",),
        )
    if not root.is_dir():
        raise DatasetError(
            f"a folder holding {expected}",
            f"{root} is not a folder",
            "check the `root` path",
            options=("root",),
        )
    return root
