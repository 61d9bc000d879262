"""Seeds to evidence: means with 95% intervals, paired differences, one-line verdicts.

A model trained with several seeds gives one value of a metric per seed. :func:`interval`
summarises them (mean and a two-sided 95% Student-t interval); :func:`paired_difference`
summarises a curated model minus a baseline seed by seed (the same seed index trains both, and
both are measured on the same test images), and :func:`verdict` turns that into the sentence
the report, the CLI summary and the Dagster metadata start with. The intervals cover training
randomness (initialisation, order, random draws); the test set is fixed, so they do not cover
test-set sampling.

Per-image pairing (issue 30): when both arms give one value per test image (a flip rate under
common random numbers, 0/1 correctness), :func:`paired_images_interval` takes each seed's
mean paired difference over the images and a t-interval across seeds, and
:func:`bootstrap_interval` resamples seeds and then images (it also covers test-set
sampling); :func:`t_p_value` and :func:`holm` adjust a family of secondary metrics; and
:func:`paired_verdict` words the result: an interval that includes 0 is "not
distinguishable", one seed gives no interval and says so. Opt-in: the report's verdicts still
use :func:`verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# scipy.special, not scipy.stats (the same t quantiles and tails, a third of the import time):
# `robust-data report` reads verdicts back through here and should start fast.
from scipy.special import stdtr, stdtrit


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% interval.

    Attributes
    ----------
    mean, low, high : float
        low == high == mean for a single seed (no spread can be estimated: ``n`` says so).
    n : int
        Seeds.
    """

    mean: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (needs n >= 2)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def p_value(self, level: float = 0.95) -> float:
        """Two-sided t-test p-value that the mean is 0, recovered from a ``level`` interval.

        NaN for one seed; with no spread, 0 for a mean other than 0 and 1 for 0.
        """
        if self.n < 2:
            return float("nan")
        se = (self.high - self.low) / 2 / float(stdtrit(self.n - 1, 0.5 + level / 2))
        if se == 0:
            return 0.0 if self.mean != 0 else 1.0
        return float(2 * stdtr(self.n - 1, -abs(self.mean) / se))


def interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and two-sided Student-t interval of ``values``.

    Parameters
    ----------
    values : sequence of float
        One value per seed; at least one, no NaN.
    level : float
        Coverage in (0, 1).

    Raises
    ------
    ValueError
        For no values or a NaN among them.
    """
    n = len(values)
    if n == 0 or any(math.isnan(v) for v in values):
        raise ValueError(f"expected at least one value and no NaN; found {list(values)}")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_difference(curated: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Interval of ``curated[i] - baseline[i]`` over seeds i.

    Raises
    ------
    ValueError
        When the two have different numbers of seeds.
    """
    if len(curated) != len(baseline):
        raise ValueError(
            "expected one baseline value per curated seed; "
            f"found {len(curated)} and {len(baseline)}"
        )
    return interval([c - b for c, b in zip(curated, baseline, strict=True)])


@dataclass(frozen=True)
class Metric:
    """How a metric reads in a verdict.

    Attributes
    ----------
    name : str
        Column name (``test_robust_fraction``, ``mce_held_out``, ...).
    adjective : str
        The comparative when the metric is better: ``more RPR-robust``, ``more accurate``.
    higher_is_better : bool
    points : bool
        Fractions shown as percentage points (x100, ``pt``); otherwise as plain numbers.
    """

    name: str
    adjective: str
    higher_is_better: bool = True
    points: bool = True


# Paired per-image statistics (issue 30): both arms measured on the same test images (and,
# for flip rates, on the same perturbed copies of them), seed by seed.


def per_seed_differences(
    subject: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]]
) -> list[float]:
    """The mean over images of ``subject - baseline``, one value per seed.

    Parameters
    ----------
    subject, baseline : sequence of arrays
        S seeds, each (N,) per-image values (flip rates in [0, 1], 0/1 correctness, ...) on
        the same N test images in the same order; N may differ between seeds only if it
        differs for both arms alike.

    Returns
    -------
    list of float
        (S,) per-seed mean paired differences; below 0 means the subject's values are lower.

    Raises
    ------
    ValueError
        For no seeds, other seed counts, other image counts within a seed, no images, or NaN.
    """
    if not subject or len(subject) != len(baseline):
        raise ValueError(
            f"expected the same seeds (at least one) for both arms; found {len(subject)} and "
            f"{len(baseline)}"
        )
    out = []
    for seed, (a, b) in enumerate(zip(subject, baseline, strict=True)):
        diff = np.asarray(a, np.float64) - _same_shape(a, b, seed)
        if diff.size == 0 or np.isnan(diff).any():
            raise ValueError(f"expected images and no NaN in seed {seed}; found {diff.size}")
        out.append(float(diff.mean()))
    return out


def _same_shape(a: Sequence[float], b: Sequence[float], seed: int) -> np.ndarray:
    """``b`` as float64, once it has ``a``'s shape (N,)."""
    a_arr, b_arr = np.asarray(a), np.asarray(b, np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(
            f"expected one value per test image for both arms in seed {seed}; found shapes "
            f"{a_arr.shape} and {b_arr.shape}"
        )
    return b_arr


def paired_images_interval(
    subject: Sequence[Sequence[float]],
    baseline: Sequence[Sequence[float]],
    level: float = 0.95,
) -> Interval:
    """Student-t interval across seeds of the per-seed mean paired differences.

    The image-level pairing removes what the two arms share on each image (its difficulty,
    and under common random numbers its perturbations) before seeds are combined; the
    interval covers training randomness, not test-set sampling. One seed: ``low == high ==
    mean`` and ``n == 1`` (no interval).
    """
    return interval(per_seed_differences(subject, baseline), level)


def bootstrap_interval(
    subject: Sequence[Sequence[float]],
    baseline: Sequence[Sequence[float]],
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Two-level percentile bootstrap of the mean paired difference: seeds, then images.

    Each replicate draws S seeds with replacement and, within each drawn seed, its N images
    with replacement, and averages the per-image differences; the interval holds the middle
    ``level`` of the replicates. Unlike :func:`paired_images_interval` it also covers
    test-set sampling. One seed: no interval (``n == 1``), as everywhere in the report.

    Parameters
    ----------
    reps : int
        Replicates (>= 1).
    seed : int
        Seed of the resampling (``np.random.default_rng``); the same seed, the same interval.
    """
    means = per_seed_differences(subject, baseline)
    mean = float(np.mean(means))
    if len(means) == 1:
        return Interval(mean, mean, mean, 1)
    diffs = [
        np.asarray(a, np.float64) - np.asarray(b, np.float64)
        for a, b in zip(subject, baseline, strict=True)
    ]
    rng = np.random.default_rng(seed)
    draws = np.empty(reps)
    for r in range(reps):
        chosen = rng.integers(0, len(diffs), len(diffs))
        draws[r] = np.mean(
            [diffs[s][rng.integers(0, len(diffs[s]), len(diffs[s]))].mean() for s in chosen]
        )
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(mean, float(low), float(high), len(means))


def t_p_value(values: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test that the mean of ``values`` is 0.

    NaN for fewer than 2 values; with no spread, 0 for a mean other than 0 and 1 for 0.
    """
    return interval(values).p_value() if len(values) >= 2 else float("nan")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (strong family-wise error control).

    The i-th smallest p (1-based) becomes max over j <= i of min(1, (m - j + 1) * p_(j)); the
    result is in the input's order. NaN p-values (one seed) stay NaN and do not count in m.
    """
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(order)
    out = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_verdict(
    metric: Metric,
    difference: Interval,
    baseline: str,
    subject: str = "curated",
    adjusted_p: float | None = None,
    alpha: float = 0.05,
) -> str:
    """One line for a paired difference: better, worse, or "not distinguishable".

    ``difference`` is subject minus baseline. An interval that includes 0 reads "not
    distinguishable" (never "no better than"); so does a Holm-adjusted p-value (secondary
    metrics) of ``alpha`` or more. One seed gives no interval and says so.
    """
    scale, unit, digits = (100.0, " pt", 1) if metric.points else (1.0, "", 3)
    mean, low, high = (v * scale for v in (difference.mean, difference.low, difference.high))
    if difference.n < 2:
        return (
            f"{subject} vs {baseline} on {metric.name}: {mean:+.{digits}f}{unit} "
            "(1 seed: no interval, cannot tell from noise)"
        )
    text = f"{mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}]"
    held = "" if adjusted_p is None else f", Holm-adjusted p {adjusted_p:.3g}"
    tail = f"({difference.n} seeds{held})"
    separated = difference.excludes_zero() and (adjusted_p is None or adjusted_p < alpha)
    if not separated:
        return f"{subject} and {baseline} are not distinguishable on {metric.name}: {text} {tail}"
    good = difference.mean > 0 if metric.higher_is_better else difference.mean < 0
    if good:
        return f"{subject} is {metric.adjective} than {baseline} by {text} {tail}"
    return f"{subject} is worse than {baseline} on {metric.name} by {text} {tail}"
