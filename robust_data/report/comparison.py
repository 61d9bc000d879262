"""Compare judged models over seeds: intervals per metric and curated-minus-baseline verdicts.

Split from robust_data.report.evaluate (which runs the models, and so imports torch) so that
reading a stored report's verdicts back (``robust-data report``, the CLI summary) loads no
model code: numpy and the statistics only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robust_data.report.stats import (
    Interval,
    Metric,
    holm,
    interval,
    paired_difference,
    paired_verdict,
)

__all__ = ["METRICS", "Comparison", "compare"]

#: The metrics a report compares; the first is the primary one (no multiplicity adjustment),
#: the others are secondary (Holm-adjusted together, per baseline).
METRICS = (
    Metric("flip_rate", "less often flipped by the scoring perturbation", False),
    Metric("test_accuracy", "more accurate"),
    Metric("worst_class_accuracy", "more accurate on its worst class"),
    Metric("flip_rate_held_out", "less often flipped by a held-out perturbation", False),
    Metric("mce_held_out", "lower in held-out mCE", higher_is_better=False, points=False),
    Metric("corruption_accuracy_held_out", "more accurate under held-out corruptions"),
    Metric("robust_fraction", "more RPR-robust (250 tries)"),
    Metric("mce_seen", "lower in mCE on corruptions used as variants", False, points=False),
    Metric("ece", "better calibrated", higher_is_better=False, points=False),
)


@dataclass
class Comparison:
    """Metrics over seeds and curated-minus-baseline differences.

    Attributes
    ----------
    runs : list of dict
        One row per (seed, model): ``seed``, ``model``, ``train_size``, every metric.
    summary : dict
        Model -> metric -> :class:`Interval` over seeds.
    differences : dict
        Baseline -> metric -> :class:`Interval` of curated minus baseline, paired by seed.
    verdicts : list of str
        One line per metric and baseline (the reference first), NaN metrics skipped.
    """

    runs: list[dict]
    summary: dict[str, dict[str, Interval]]
    differences: dict[str, dict[str, Interval]]
    verdicts: list[str]


def compare(runs: list[dict], subject: str = "curated") -> Comparison:
    """Intervals per model and metric, and ``subject`` minus every other model, by seed.

    A metric measured on some seeds only (the robust fraction: ``robust_seeds``) is compared
    on the seeds where both models have it; one such seed reads "1 seed: no interval". The
    first of :data:`METRICS` is primary; the secondary metrics' t-test p-values are
    Holm-adjusted together per baseline, and a verdict calls a difference only when its
    interval excludes 0 (and, secondary, its adjusted p is below 0.05).

    Parameters
    ----------
    runs : list of dict
        Rows with ``seed``, ``model`` and metrics of :data:`METRICS` (those missing from any
        row are left out).
    """
    models = list(dict.fromkeys(r["model"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    value = {(r["model"], r["seed"]): r for r in runs}
    summary: dict[str, dict[str, Interval]] = {}
    differences: dict[str, dict[str, Interval]] = {}
    verdicts: list[str] = []
    metrics = [m for m in METRICS if all(m.name in r for r in runs)]
    for model in models:
        summary[model] = {}
        for m in metrics:
            values = [value[(model, s)][m.name] for s in seeds if (model, s) in value]
            values = [v for v in values if not np.isnan(v)]
            if values:
                summary[model][m.name] = interval(values)
    for baseline in (m for m in models if m != subject):
        differences[baseline] = {}
        for metric in metrics:
            pairs = [
                (value[(subject, s)][metric.name], value[(baseline, s)][metric.name])
                for s in seeds
                if (subject, s) in value and (baseline, s) in value
            ]
            pairs = [(a, b) for a, b in pairs if not (np.isnan(a) or np.isnan(b))]
            if pairs:
                differences[baseline][metric.name] = paired_difference(
                    [a for a, _ in pairs], [b for _, b in pairs]
                )
        verdicts += _verdicts(differences[baseline], metrics, baseline, subject)
    return Comparison(runs, summary, differences, verdicts)


def _verdicts(
    diffs: dict[str, Interval], metrics: list[Metric], baseline: str, subject: str
) -> list[str]:
    """One line per metric of one baseline: the primary plain, the secondary Holm-adjusted."""
    name = "the reference" if baseline == "reference" else baseline
    present = [m for m in metrics if m.name in diffs]
    secondary = [m for m in present if m.name != METRICS[0].name]
    p_values = [diffs[m.name].p_value() for m in secondary]
    tested = [i for i, p in enumerate(p_values) if not np.isnan(p)]
    adjusted = dict(zip(tested, holm([p_values[i] for i in tested]), strict=True))
    out = []
    for metric in present:
        if metric.name == METRICS[0].name:
            out.append(paired_verdict(metric, diffs[metric.name], name, subject))
            continue
        i = secondary.index(metric)
        out.append(paired_verdict(metric, diffs[metric.name], name, subject, adjusted.get(i)))
    return out
