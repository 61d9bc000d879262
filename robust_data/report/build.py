"""The robustness report: does the curated set train more robust models, with statistics.

Every model of every seed (robust_data.report.retrain) is judged on the untouched test split
(robust_data.report.evaluate): the primary flip rate over K shared perturbed copies under the
scoring scheme, the same under a held-out perturbation family, clean accuracy overall, per
class and of the worst class, calibration, accuracy and mCE under the corruptions used as
variants and under the held-out ones, and the paper's RPR robust fraction on the first seed.
The report opens with one verdict line per metric and baseline (curated minus baseline,
paired by seed and image, 95% interval, Holm-adjusted secondary metrics), then the mean and
interval of every model, per-class accuracy, the paper's table, and seed 0's curves and
per-corruption errors.

Here: the comparison of measured models (robust_data.report.measure) into the report's
document, table (robust_data.report.table) and figures (robust_data.report.render), its
summary record, and the files it is written to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from robust_data.errors import DatasetError
from robust_data.io.files import write_bytes
from robust_data.present.summary import StageSummary, logged
from robust_data.report.comparison import compare
from robust_data.report.evaluate import judged_from
from robust_data.report.measure import ReportSetup, measured_from_row
from robust_data.report.render import (
    PAPER_TABLE,
    paper_table_markdown,
    report_figures,
    report_markdown,
)
from robust_data.report.table import REPORT_SCHEMA, headline_verdicts
from robust_data.scoring.rpr.table import robustness_curve
from robust_data.store.schema import table_metadata


@dataclass
class Report:
    """The report: its table (:data:`REPORT_SCHEMA`), JSON document, and figures."""

    table: pa.Table
    document: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        """One line per metric and baseline, the reference first."""
        return list(self.document["verdicts"])

    def summary(self, location: str) -> ReportSummary:
        """Where the report is, its headline verdicts and the paper's table, for the asset's
        metadata and the CLI; ``location`` is report.md's (:func:`write_report`)."""
        headline = ReportHeadline(
            preset=self.document["preset"],
            seeds=self.document["seeds"],
            verdicts=tuple(headline_verdicts(self.table)),
        )
        return ReportSummary(
            report=location, headline=headline, paper_table=paper_table_markdown(self.table)
        )

    def markdown(self) -> str:
        """The report as Markdown (verdicts first), figures linked from ``plots/``."""
        return report_markdown(self.document, self.table)


@dataclass(frozen=True, kw_only=True)
class ReportHeadline:
    """The preset and seeds the report compared, and its verdicts on the headline metrics."""

    preset: str
    seeds: int
    verdicts: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReportSummary(StageSummary):
    """The summary of a report: report.md's location, the headline, the paper's table."""

    report: str = field(metadata=logged(kind="path"))
    headline: ReportHeadline
    paper_table: str = field(metadata=logged(kind="md"))


def report_from_measurements(
    setup: ReportSetup,
    measurements: list[pa.Table],
    order: list[tuple[int, str]] | None = None,
) -> Report:
    """Compare the measured models (robust_data.report.measure.measure_candidates tables, in
    any order).

    Every seed must have a ``reference`` (the mCE base) and a ``curated`` model. ``order``
    lists (seed, model) in the order the report's rows take (the retrained_model table's);
    default: as measured.

    Raises
    ------
    DatasetError
        When a seed lacks either, or a (seed, model) was measured twice.
    """
    rows = [r for table in measurements for r in table.to_pylist()]
    if not rows:
        raise DatasetError("measured models", "none", "materialize retrained_model")
    keys = [(r["seed"], r["model"]) for r in rows]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise DatasetError(
            "each (seed, model) measured once",
            f"{twice} twice",
            "re-run the report from its evaluation steps",
        )
    if order is not None:
        rank = {key: i for i, key in enumerate(order)}
        rows.sort(key=lambda r: rank.get((r["seed"], r["model"]), len(rank)))
    seeds = sorted({r["seed"] for r in rows})
    runs, seed0 = [], {}
    curves: dict[str, np.ndarray] = {}
    per_class: dict[str, list[list[float]]] = {}
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        names = {r["model"] for r in mine}
        if not {"reference", "curated"} <= names:
            raise DatasetError(
                f"a reference and a curated model for seed {seed}",
                str(sorted(names)),
                "re-run the report from its evaluation steps",
            )
        judged = judged_from({r["model"]: measured_from_row(r) for r in mine}, set(setup.seen))
        for row in mine:
            result = judged[row["model"]]
            runs.append(
                {
                    "seed": seed,
                    "model": row["model"],
                    "train_size": row["train_size"],
                    **{
                        f.name: result.metrics[f.name]
                        for f in REPORT_SCHEMA
                        if f.name in result.metrics
                    },
                    "model_sha256": row["model_sha256"],
                }
            )
            per_class.setdefault(row["model"], []).append(list(row["class_accuracy"]))
            if seed == seeds[0]:
                if len(result.steps):
                    curves[row["model"]] = robustness_curve(result.steps, setup.judge.max_steps)
                seed0[row["model"]] = {
                    "curve": curves[row["model"]].tolist() if row["model"] in curves else [],
                    "ce": result.ce,
                    "suite": result.suite.to_pylist(),
                }
    class_means = {
        model: [float(v) for v in np.nanmean(np.asarray(values, np.float64), axis=0)]
        for model, values in per_class.items()
    }
    report = _report(setup, runs, seed0, curves, len(seeds), len(rows[0]["flips"]))
    report.document["class_accuracy"] = class_means
    return report


def _report(
    setup: ReportSetup,
    runs: list[dict[str, Any]],
    seed0: dict[str, Any],
    curves: dict[str, np.ndarray],
    seeds: int,
    test_samples: int,
) -> Report:
    """The document, figures and table of compared runs."""
    first_seed = min(r["seed"] for r in runs)
    comparison = compare(runs)
    suite_names = [
        c
        for c in dict.fromkeys(r["corruption"] for r in next(iter(seed0.values()))["suite"])
        if c != "clean"
    ]
    document = {
        "dataset": setup.dataset,
        "preset": setup.preset,
        "seeds": seeds,
        "test_samples": test_samples,
        "seen": sorted(setup.seen),
        "judge": asdict(setup.judge),
        "verdicts": comparison.verdicts,
        "summary": {
            m: {k: [v.mean, v.low, v.high] for k, v in per.items()}
            for m, per in comparison.summary.items()
        },
        "differences": {
            b: {k: [v.mean, v.low, v.high] for k, v in per.items()}
            for b, per in comparison.differences.items()
        },
        "train_sizes": {r["model"]: r["train_size"] for r in runs if r["seed"] == first_seed},
        "runs": runs,
        "suite_corruptions": suite_names,
        "seed0": seed0,
        "paper": PAPER_TABLE,
    }
    figures = report_figures(curves, seed0, suite_names, setup.judge.scheme)
    params = {k: document[k] for k in ("preset", "seeds", "seen", "judge")}
    table = pa.Table.from_pylist(runs, schema=REPORT_SCHEMA).replace_schema_metadata(
        table_metadata("robustness_report", "retrained_model, corrupted_test, rpr_scores", params)
    )
    return Report(table, document, figures)


def write_report(report: Report, folder: str | Path) -> str:
    """Write report.md, report.json and plots/*.png under ``folder`` (each file atomically).

    ``folder`` is a local folder (temporary files, then rename) or an fsspec URL (one put per
    file). Returns the location of report.md; it is written last.
    """
    base = str(folder).rstrip("/")
    for name, png in report.figures.items():
        write_bytes(png, f"{base}/plots/{name}.png")
    document = json.dumps(report.document, indent=2, allow_nan=True)
    write_bytes(document.encode(), f"{base}/report.json")
    return write_bytes(report.markdown().encode(), f"{base}/report.md")
