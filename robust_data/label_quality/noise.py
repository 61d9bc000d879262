"""Dirty training data with a known answer: labels flipped within confusable pairs, classes cut.

Issue 30's dirty Fashion-MNIST: a share of the training labels swapped to a class they are
easily confused with (a shirt labelled T-shirt/top), and chosen classes cut to a fraction of
their samples. What was flipped is returned, so that label-issue detection can be scored
against it (precision and recall over the flipped ids). Everything is drawn from local
generators keyed by the seed; the global RNGs are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robust_data.errors import RobustDataError

#: Fashion-MNIST's confusable class pairs (class ids of ``FASHION_NAMES``): T-shirt/top and
#: Shirt, Pullover and Coat, Coat and Shirt, Pullover and Shirt, Sandal and Sneaker, Sneaker
#: and Ankle boot. Trouser (1), Dress (3) and Bag (8) have no partner and keep their labels.
FASHION_MNIST_CONFUSABLE: tuple[tuple[int, int], ...] = (
    (0, 6),
    (2, 4),
    (4, 6),
    (2, 6),
    (5, 7),
    (7, 9),
)
#: Separate streams of one seed for the cut and for the flips.
_CUT_STREAM, _FLIP_STREAM = 0, 1


@dataclass(frozen=True)
class DirtyOptions:
    """How to dirty a training set.

    Attributes
    ----------
    flip_share : float
        In [0, 1]: the share of each class's (kept) samples whose label is flipped to a
        partner class, for every class with a partner in ``pairs``; other classes keep
        their labels. Higher is dirtier.
    pairs : tuple of (int, int)
        Confusable class pairs, both ways (``(0, 6)`` flips 0 to 6 and 6 to 0); a class in
        several pairs flips to one of its partners chosen uniformly.
    cut_classes : tuple of int
        Classes cut to ``cut_keep`` of their samples (by their true label), before flipping.
    cut_keep : float
        In (0, 1]: the share of a cut class's samples kept (at least one sample).
    seed : int
        Seeds the local generators.
    """

    flip_share: float = 0.2
    pairs: tuple[tuple[int, int], ...] = FASHION_MNIST_CONFUSABLE
    cut_classes: tuple[int, ...] = ()
    cut_keep: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class DirtyData:
    """A dirtied training set: which samples were kept, their labels, which ones flipped.

    Attributes
    ----------
    kept : np.ndarray
        (M,) int64, ascending indices into the input of the samples kept.
    ids : list of str
        (M,) the kept samples' ids.
    true_labels : np.ndarray
        (M,) int64, the kept samples' labels as given.
    labels : np.ndarray
        (M,) int64, the dirty labels (equal to ``true_labels`` where not flipped).
    flipped : np.ndarray
        (M,) bool, True where the label was flipped.
    """

    kept: np.ndarray
    ids: list[str]
    true_labels: np.ndarray
    labels: np.ndarray
    flipped: np.ndarray

    @property
    def flipped_ids(self) -> list[str]:
        """The ids whose label was flipped: the ground truth of label-issue detection."""
        return [self.ids[i] for i in np.flatnonzero(self.flipped)]


def partners(pairs: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    """Each class's confusable partners, from pairs read both ways, sorted.

    Raises
    ------
    RobustDataError
        A pair that is not two different non-negative class ids.
    """
    found: dict[int, set[int]] = {}
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 0:
            raise RobustDataError(
                "confusable pairs of two different class ids >= 0",
                repr(pair),
                "pass pairs such as ((0, 6), (2, 4))",
                options=("pairs",),
            )
        a, b = int(pair[0]), int(pair[1])
        found.setdefault(a, set()).add(b)
        found.setdefault(b, set()).add(a)
    return {c: sorted(p) for c, p in sorted(found.items())}


def flip_confusable(
    labels: np.ndarray,
    share: float,
    pairs: Sequence[tuple[int, int]] = FASHION_MNIST_CONFUSABLE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(share * n_c)`` labels of each class c that has a partner to a partner.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int class ids >= 0.
    share : float
        In [0, 1]; higher is dirtier.
    pairs : sequence of (int, int)
        Confusable pairs, both ways; default Fashion-MNIST's.
    seed : int
        Seeds a local generator (the global one is untouched).

    Returns
    -------
    (noisy, flipped)
        (N,) int64 labels and (N,) bool mask of the flipped rows.

    Raises
    ------
    RobustDataError
        A share outside [0, 1] or a bad pair.
    """
    _check_share(share, "flip_share", "in [0, 1]", share_ok=0 <= share <= 1)
    links = partners(pairs)
    rng = np.random.default_rng([seed, _FLIP_STREAM])
    noisy = np.asarray(labels, np.int64).copy()
    flipped = np.zeros(len(noisy), bool)
    for cls, targets in links.items():
        rows = np.flatnonzero(np.asarray(labels) == cls)
        if not len(rows):
            continue
        chosen = rng.choice(rows, size=round(share * len(rows)), replace=False)
        noisy[chosen] = np.asarray(targets)[rng.integers(0, len(targets), size=len(chosen))]
        flipped[chosen] = True
    return noisy, flipped


def cut_classes(
    labels: np.ndarray, classes: Sequence[int], keep: float, seed: int = 0
) -> np.ndarray:
    """Keep ``max(1, round(keep * n_c))`` samples of each class in ``classes``, all of others.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int class ids.
    classes : sequence of int
        The classes to cut; each must occur in ``labels``.
    keep : float
        In (0, 1]: the share kept of each cut class.
    seed : int
        Seeds a local generator.

    Returns
    -------
    np.ndarray
        (M,) int64, ascending indices of the samples kept.

    Raises
    ------
    RobustDataError
        ``keep`` outside (0, 1], or a class with no samples.
    """
    _check_share(keep, "cut_keep", "in (0, 1]", share_ok=0 < keep <= 1)
    labels = np.asarray(labels)
    present = set(np.unique(labels).tolist())
    missing = sorted(set(classes) - present)
    if missing:
        raise RobustDataError(
            "classes to cut that occur in the labels",
            f"{missing} (the labels hold {sorted(present)})",
            "pass class ids of the data",
            options=("cut_classes",),
        )
    rng = np.random.default_rng([seed, _CUT_STREAM])
    dropped = np.zeros(len(labels), bool)
    for cls in sorted(set(classes)):
        rows = np.flatnonzero(labels == cls)
        kept = max(1, round(keep * len(rows)))
        dropped[rng.choice(rows, size=len(rows) - kept, replace=False)] = True
    return np.flatnonzero(~dropped).astype(np.int64)


def make_dirty(
    labels: np.ndarray, ids: Sequence[str], options: DirtyOptions | None = None
) -> DirtyData:
    """Cut ``options.cut_classes``, then flip labels within ``options.pairs``.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int class ids >= 0 of the training samples.
    ids : sequence of str
        (N,) their sample ids.
    options : DirtyOptions, optional
        Default: 20% of each paired Fashion-MNIST class flipped, nothing cut, seed 0.

    Returns
    -------
    DirtyData
        Same seed and inputs, same result.

    Raises
    ------
    RobustDataError
        ``ids`` and ``labels`` of different lengths, or a bad option.
    """
    options = options or DirtyOptions()
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 1 or len(ids) != len(labels):
        raise RobustDataError(
            "one sample id per label",
            f"{len(ids)} ids for labels of shape {labels.shape}",
            "pass the ids and labels of the same samples",
        )
    kept = cut_classes(labels, options.cut_classes, options.cut_keep, options.seed)
    true_labels = labels[kept]
    noisy, flipped = flip_confusable(true_labels, options.flip_share, options.pairs, options.seed)
    return DirtyData(
        kept=kept,
        ids=[ids[i] for i in kept],
        true_labels=true_labels,
        labels=noisy,
        flipped=flipped,
    )


def _check_share(value: float, name: str, expected: str, share_ok: bool) -> None:
    """Raise the one-line error for a share out of its range."""
    if not share_ok:
        raise RobustDataError(f"`{name}` {expected}", str(value), "pass e.g. 0.2", options=(name,))
