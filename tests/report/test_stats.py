"""Intervals over seeds, paired differences and verdict lines."""

import math

import numpy as np
import pytest

from robust_data.report.stats import (
    Interval,
    Metric,
    interval,
    paired_difference,
    paired_verdict,
)

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
    better = paired_verdict(ROBUST, Interval(0.031, 0.012, 0.050, 3), "the reference")
    assert (
        better == "curated is more RPR-robust than the reference by +3.1 pt [+1.2, +5.0] (3 seeds)"
    )
    unsure = paired_verdict(ROBUST, Interval(0.01, -0.02, 0.04, 3), "random_subset")
    assert unsure.startswith("curated and random_subset are not distinguishable on test_robust")
    worse = paired_verdict(ROBUST, Interval(-0.03, -0.05, -0.01, 3), "the reference")
    assert worse.startswith("curated is worse than the reference")
    lower_mce = paired_verdict(MCE, Interval(-0.08, -0.12, -0.04, 3), "the reference")
    assert lower_mce.startswith("curated is lower in held-out mCE than the reference by -0.080")


def test_one_seed_gives_no_verdict() -> None:
    line = paired_verdict(ROBUST, Interval(0.05, 0.05, 0.05, 1), "the reference")
    assert line.endswith("(1 seed: no interval, cannot tell from noise)") and "more" not in line


FLIPS = Metric("flip_rate", "less often flipped", higher_is_better=False)


def test_paired_images_interval_is_the_t_interval_of_per_seed_mean_differences() -> None:
    from robust_data.report.stats import paired_images_interval, per_seed_differences

    subject = [[0.1, 0.3], [0.2, 0.4], [0.0, 0.2]]
    baseline = [[0.0, 0.2], [0.2, 0.2], [0.1, 0.1]]
    assert per_seed_differences(subject, baseline) == pytest.approx([0.1, 0.1, 0.0])
    found = paired_images_interval(subject, baseline)
    half = 4.302652729911275 / 30  # t(0.975, 2) * sd sqrt(3)/30 / sqrt(3)
    assert found.n == 3 and found.mean == pytest.approx(0.2 / 3)
    assert (found.low, found.high) == pytest.approx((0.2 / 3 - half, 0.2 / 3 + half))
    one = paired_images_interval(subject[:1], baseline[:1])
    assert (one.mean, one.low, one.high, one.n) == pytest.approx((0.1, 0.1, 0.1, 1))
    with pytest.raises(ValueError, match="the same seeds"):
        per_seed_differences(subject, baseline[:2])
    with pytest.raises(ValueError, match="one value per test image for both arms in seed 1"):
        per_seed_differences(subject, [[0.0, 0.2], [0.2], [0.1, 0.1]])


def test_bootstrap_over_seeds_and_images() -> None:
    from robust_data.report.stats import bootstrap_interval

    rng = np.random.default_rng(3)
    subject = [rng.random(50) for _ in range(4)]
    baseline = [s - 0.05 + rng.normal(0, 0.1, 50) for s in subject]
    found = bootstrap_interval(subject, baseline, reps=500, seed=7)
    assert found == bootstrap_interval(subject, baseline, reps=500, seed=7)  # reproducible
    assert found.n == 4 and found.low < found.mean < found.high
    constant = bootstrap_interval([np.full(5, 0.3)] * 3, [np.full(5, 0.1)] * 3, reps=50)
    assert (constant.low, constant.high) == pytest.approx((0.2, 0.2))
    single = bootstrap_interval(subject[:1], baseline[:1])
    assert single.n == 1 and single.low == single.high == single.mean


def test_t_p_value_and_holm_on_known_numbers() -> None:
    from robust_data.report.stats import holm, t_p_value

    # [1, 2, 3]: t = 2 / (1 / sqrt 3) = sqrt 12 on 2 df, whose two-sided p is 1 - t/sqrt(t^2+2)
    assert t_p_value([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(6 / 7))
    assert math.isnan(t_p_value([1.0])) and t_p_value([0.2, 0.2]) == 0.0
    # the same p recovered from the 95% interval the report keeps
    assert interval([1.0, 2.0, 3.0]).p_value() == pytest.approx(1 - math.sqrt(6 / 7))
    assert math.isnan(interval([1.0]).p_value()) and interval([0.2, 0.2]).p_value() == 0.0
    # sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([float("nan"), 0.02, 0.04])  # one seed's NaN does not count in m
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.04, 0.04])
    assert holm([0.5, 0.6]) == [1.0, 1.0]


def test_paired_verdicts_say_not_distinguishable_and_one_seed_has_no_interval() -> None:
    from robust_data.report.stats import paired_verdict

    better = paired_verdict(FLIPS, Interval(-0.03, -0.05, -0.01, 8), "random_subset")
    assert better == (
        "curated is less often flipped than random_subset by -3.0 pt [-5.0, -1.0] (8 seeds)"
    )
    unsure = paired_verdict(FLIPS, Interval(-0.01, -0.03, 0.01, 8), "random_subset")
    assert unsure == (
        "curated and random_subset are not distinguishable on flip_rate: "
        "-1.0 pt [-3.0, +1.0] (8 seeds)"
    )
    worse = paired_verdict(ROBUST, Interval(-0.03, -0.05, -0.01, 3), "the reference")
    assert worse.startswith("curated is worse than the reference on test_robust_fraction")
    held = paired_verdict(ROBUST, Interval(0.03, 0.01, 0.05, 3), "random_subset", adjusted_p=0.09)
    assert held.startswith("curated and random_subset are not distinguishable")
    assert held.endswith("(3 seeds, Holm-adjusted p 0.09)")
    one = paired_verdict(FLIPS, Interval(-0.02, -0.02, -0.02, 1), "the reference")
    assert one == (
        "curated vs the reference on flip_rate: -2.0 pt (1 seed: no interval, cannot tell from "
        "noise)"
    )


def test_judge_options_refuse_no_copies() -> None:
    from robust_data.report.evaluate import JudgeOptions

    with pytest.raises(ValueError, match="expected k >= 1 and robust_seeds >= 0; found 0 and 1"):
        JudgeOptions(k=0)
    assert JudgeOptions(robust_seeds=0).flip_options("pixels").k == 64
