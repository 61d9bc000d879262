"""Split names, and a deterministic stratified train/test split for sources without one.

The samples table has two splits, ``train`` and ``test``. A source may name its held-out split
``test`` or ``val``/``valid``/``validation``: a validation split is the test split when the
source has no test split; a source with both is refused, since one of them would be lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from robust_data.errors import DatasetError

#: The splits of the samples table.
SPLITS = ("train", "test")
#: Names of a validation split, stored as ``test`` when the source has no test split.
VALIDATION_NAMES = ("val", "valid", "validation")
#: Every split name a source may use (folder names, ``split`` values, file-name prefixes).
SPLIT_WORDS = (*SPLITS, *VALIDATION_NAMES)


def is_split_name(name: str) -> bool:
    """Whether ``name`` (any case) is one of ``SPLIT_WORDS``."""
    return name.lower() in SPLIT_WORDS


def split_mapping(names: Iterable[str], where: str) -> dict[str, str]:
    """Map the split names a source uses to ``train`` / ``test``.

    Parameters
    ----------
    names : iterable of str
        Split names found (any case): folder names, ``split`` values or file-name prefixes.
    where : str
        The source, for messages.

    Returns
    -------
    dict of str to str
        Each name to ``"train"`` or ``"test"``; a validation name maps to ``"test"``.

    Raises
    ------
    DatasetError
        A name outside ``SPLIT_WORDS``, or more than one held-out name (``test`` and ``val``,
        or ``val`` and ``validation``).
    """
    found = sorted(set(names))
    unknown = [n for n in found if not is_split_name(n)]
    if unknown:
        raise DatasetError(
            f"split names among {list(SPLIT_WORDS)}",
            f"{unknown} in {where}",
            "rename them (val/valid/validation become test) or drop the split information",
        )
    held_out = sorted({n.lower() for n in found} - {"train"})
    if len(held_out) > 1:
        raise DatasetError(
            "train plus one held-out split: test, or val/valid/validation used as test",
            f"held-out splits {held_out} in {where}",
            "merge the validation data into train or test, or move it out of the dataset",
        )
    return {n: "train" if n.lower() == "train" else "test" for n in found}


def _rank_key(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def stratified_split(
    labels: np.ndarray, keys: Sequence[str], test_fraction: float = 0.2, seed: int = 0
) -> list[str]:
    """Assign each sample to "train" or "test", stratified by label.

    Within each class, samples are ordered by sha256(seed, key) and the first
    ``round(n_class * test_fraction)`` go to test. The assignment depends only on the seed,
    the sample's key and its class membership, never on row order or global RNG state.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int64 class indices.
    keys : sequence of str
        (N,) unique source keys.
    test_fraction : float
        Share of each class put in test, in (0, 1). Default 0.2.
    seed : int
        Split seed.

    Returns
    -------
    list of str
        (N,) "train" or "test".
    """
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(
            "test_fraction in (0, 1)",
            str(test_fraction),
            "pass e.g. `test_fraction=0.2`",
            options=("test_fraction",),
        )
    splits = ["train"] * len(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = sorted(members.tolist(), key=lambda i: _rank_key(seed, keys[i]))
        n_test = min(round(len(members) * test_fraction), len(members) - 1)
        for i in ranked[:n_test]:
            splits[i] = "test"
    return splits
