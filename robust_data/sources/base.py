"""What every dataset source returns, and the registry entry that describes a source."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robust_data.errors import DatasetError
from robust_data.images import ImageDecodeError, decode_image


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
    """

    pixels: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    label_names: list[str]
    keys: list[str]
    splits: list[str] | None = None
    paths: list[str | None] | None = None
    rejects: list[Reject] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def from_split_parts(
    parts: Sequence[tuple[str, np.ndarray, np.ndarray]],
    label_names: list[str],
    params: dict[str, Any],
) -> SourceData:
    """Join array parts of a source that has real splits.

    Parameters
    ----------
    parts : sequence of (split, pixels, labels)
        ``pixels`` (n, H, W, C) uint8 and ``labels`` (n,) int; several parts of one split
        (CIFAR-10's five train batches) are numbered on from where the previous part ended.
    label_names, params
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
    )


@dataclass(frozen=True)
class LoadOptions:
    """Options a source honours while decoding: ``channels`` forces 1 or 3 channels."""

    channels: int | None = None


Loader = Callable[[Path | None, LoadOptions], SourceData]


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
    """

    name: str
    description: str
    load: Loader
    needs_root: bool = False
    expected: str = ""
    find: Callable[[Path], str | None] | None = None

    def availability(self, root: Path | None) -> tuple[bool, str]:
        """Whether the source can be read here: (available, one-line explanation)."""
        if not self.needs_root:
            return True, "bundled with an installed package"
        if root is None:
            return False, f"needs --root DIR holding {self.expected}"
        missing = self.find(root) if self.find else None
        if missing:
            return False, missing
        return True, f"found under {root}"


def decode_all(
    blobs: Sequence[bytes | None], keys: Sequence[str], channels: int | None, desc: str
) -> tuple[list[np.ndarray], list[int], list[Reject]]:
    """Decode encoded images, collecting the unreadable ones as rejects.

    Returns
    -------
    pixels : list of np.ndarray
        (H, W, C) uint8 for each readable blob.
    kept : list of int
        Index into ``blobs`` of each decoded image.
    rejects : list of Reject
    """
    pixels: list[np.ndarray] = []
    kept: list[int] = []
    rejects: list[Reject] = []
    for i, blob in enumerate(tqdm(blobs, desc=desc, unit="img", leave=False, mininterval=1.0)):
        try:
            if blob is None:
                raise ImageDecodeError("no image bytes")
            pixels.append(decode_image(blob, channels))
            kept.append(i)
        except ImageDecodeError as exc:
            rejects.append(Reject(source_key=keys[i], reason=str(exc)))
    return pixels, kept, rejects


def require_root(name: str, root: Path | None, expected: str) -> Path:
    """Return ``root`` or raise the one-line error for a missing root."""
    if root is None:
        raise DatasetError(
            f"a local root for {name!r} holding {expected}",
            "no --root given",
            f"pass --root DIR (nothing is downloaded): robust-data ingest {name} --root DIR",
        )
    if not root.is_dir():
        raise DatasetError(
            f"a folder holding {expected}", f"{root} is not a folder", "check the --root path"
        )
    return root
