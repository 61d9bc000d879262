"""Where a variant plan's budget goes: per sample by fragility, per class by class quotas.

A point's fragility is ``1 - steps_to_flip / max_steps`` for a point that flipped (1 for one
the model already gets wrong, which flips at try 1) and 0 for a robust point: higher is
worse. A class's fragility is the mean over its kept samples. Class quotas give the most
fragile class ``class_focus`` extra copies per sample and every other class extra copies in
proportion to its fragility; each class's quota is spread at random over its samples (no
per-sample weighting inside the class).
"""

from __future__ import annotations

import numpy as np


def fragility(steps_to_flip: np.ndarray, max_steps: int) -> np.ndarray:
    """(N,) float in [0, 1]: 1 - t / max_steps for a point that flipped at try t, 0 if robust.

    Parameters
    ----------
    steps_to_flip : np.ndarray
        (N,) int, the try in 1..max_steps at which the point flipped; <= 0 for robust points.
    """
    steps = np.asarray(steps_to_flip, np.int64)
    return np.where(steps > 0, 1.0 - np.minimum(steps, max_steps) / max_steps, 0.0)


def class_quotas(labels: np.ndarray, frail: np.ndarray, class_focus: int) -> np.ndarray:
    """(classes,) int extra copies per class: ``class_focus`` per sample for the most fragile.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int class of each sample (>= 0).
    frail : np.ndarray
        (N,) float per-sample fragility in [0, 1] (:func:`fragility`).
    class_focus : int
        Extra copies per sample of the most fragile class (>= 0).

    Returns
    -------
    np.ndarray
        (max label + 1,) int64 >= 0. All zeros when no sample is fragile.
    """
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0 or class_focus == 0:
        return np.zeros(int(labels.max(initial=-1)) + 1, np.int64)
    counts = np.bincount(labels)
    sums = np.bincount(labels, weights=np.asarray(frail, np.float64), minlength=len(counts))
    mean = np.divide(sums, counts, out=np.zeros(len(counts)), where=counts > 0)
    if mean.max() <= 0:
        return np.zeros(len(counts), np.int64)
    return np.round(class_focus * counts * mean / mean.max()).astype(np.int64)


def spread(samples: int, total: int, seed: int) -> np.ndarray:
    """(samples,) int copies summing to ``total``, as even as possible (seeded remainder).

    Gives a baseline the same number of variant images as a plan, spread uniformly.
    """
    if samples == 0:
        return np.zeros(0, np.int64)
    copies = np.full(samples, total // samples, np.int64)
    extra = np.random.default_rng(seed).choice(samples, size=total % samples, replace=False)
    copies[extra] += 1
    return copies


def class_spread(labels: np.ndarray, budget: np.ndarray, seed: int) -> np.ndarray:
    """(N,) int copies: ``budget[c]`` copies spread evenly over the samples labelled c.

    The equal-budget baselines get each class's variant count of the curated set this way,
    and a plan's class quotas are spread so (random within class, no fragility weighting).
    A class without samples gets none.
    """
    labels = np.asarray(labels, np.int64)
    copies = np.zeros(len(labels), np.int64)
    for c in np.flatnonzero(np.asarray(budget) > 0):
        members = np.flatnonzero(labels == c)
        copies[members] = spread(len(members), int(budget[c]), seed + 7919 * int(c))
    return copies
