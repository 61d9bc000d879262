"""Seeds to evidence: means with 95% intervals, paired differences, one-line verdicts.

A model trained with several seeds gives one value of a metric per seed. :func:`interval`
summarises them (mean and a two-sided 95% Student-t interval); :func:`paired_difference`
summarises a curated model minus a baseline seed by seed (the same seed index trains both, and
both are measured on the same test images), and :func:`verdict` turns that into the sentence
the report, the CLI summary and the Dagster metadata start with. The intervals cover training
randomness (initialisation, order, random draws); the test set is fixed, so they do not cover
test-set sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


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
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
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


def verdict(metric: Metric, difference: Interval, baseline: str, subject: str = "curated") -> str:
    """One line: better, worse, or no different, with the difference and its interval.

    ``difference`` is subject minus baseline. Better means the interval excludes zero on the
    good side (above 0 when higher is better, below 0 when lower is).
    """
    scale, unit, digits = (100.0, " pt", 1) if metric.points else (1.0, "", 3)
    mean, low, high = (v * scale for v in (difference.mean, difference.low, difference.high))
    text = f"{mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}]"
    seeds = f"{difference.n} seed{'s' if difference.n != 1 else ''}"
    if difference.n < 2:
        return f"{subject} vs {baseline} on {metric.name}: {text} (1 seed: cannot tell from noise)"
    good = difference.mean > 0 if metric.higher_is_better else difference.mean < 0
    if difference.excludes_zero() and good:
        return f"{subject} is {metric.adjective} than {baseline} by {text} ({seeds})"
    if difference.excludes_zero():
        return f"{subject} is worse than {baseline} on {metric.name} by {text} ({seeds})"
    return f"{subject} is no better than {baseline} on {metric.name}: {text} ({seeds})"
