"""Deterministic stratified train/test split for sources that have no test split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


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
        raise ValueError(f"expected test_fraction in (0, 1); found {test_fraction}; pass e.g. 0.2")
    splits = ["train"] * len(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = sorted(members.tolist(), key=lambda i: _rank_key(seed, keys[i]))
        n_test = min(round(len(members) * test_fraction), len(members) - 1)
        for i in ranked[:n_test]:
            splits[i] = "test"
    return splits
