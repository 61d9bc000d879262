"""Intervals over seeds, paired differences and verdict lines."""

import math

import pytest

from robust_data.report.stats import Interval, Metric, interval, paired_difference, verdict

ROBUST = Metric("test_robust_fraction", "more RPR-robust")
MCE = Metric("mce_held_out", "lower in held-out mCE", higher_is_better=False, points=False)


def test_interval_is_the_student_t_interval() -> None:
    found = interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert found.mean == 2.0 and found.n == 3
    assert found.low == pytest.approx(2.0 - half) and found.high == pytest.approx(2.0 + half)
    single = interval([0.5])
    assert (single.low, single.high, single.n) == (0.5, 0.5, 1)
    assert not single.excludes_zero()  # one seed cannot tell an effect from noise


def test_paired_difference_removes_what_the_seeds_share() -> None:
    curated, baseline = [0.90, 0.80, 0.70], [0.88, 0.78, 0.68]  # spread 0.1, gap always 0.02
    paired = paired_difference(curated, baseline)
    assert paired.mean == pytest.approx(0.02) and paired.high - paired.low == pytest.approx(0)
    assert paired.excludes_zero()
    assert not interval(curated).low > interval(baseline).high  # unpaired intervals overlap
    with pytest.raises(ValueError, match="expected one baseline value per curated seed"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="expected at least one value and no NaN"):
        interval([float("nan")])


def test_verdicts_read_in_the_metric_direction() -> None:
    better = verdict(ROBUST, Interval(0.031, 0.012, 0.050, 3), "the reference")
    assert (
        better == "curated is more RPR-robust than the reference by +3.1 pt [+1.2, +5.0] (3 seeds)"
    )
    unsure = verdict(ROBUST, Interval(0.01, -0.02, 0.04, 3), "random_subset")
    assert unsure.startswith("curated is no better than random_subset on test_robust_fraction")
    worse = verdict(ROBUST, Interval(-0.03, -0.05, -0.01, 3), "the reference")
    assert worse.startswith("curated is worse than the reference")
    lower_mce = verdict(MCE, Interval(-0.08, -0.12, -0.04, 3), "the reference")
    assert lower_mce.startswith("curated is lower in held-out mCE than the reference by -0.080")


def test_one_seed_gives_no_verdict() -> None:
    line = verdict(ROBUST, Interval(0.05, 0.05, 0.05, 1), "the reference")
    assert line.endswith("(1 seed: cannot tell from noise)") and "more" not in line
