"""The robustness report: does the curated set train more robust models, with statistics.

Every model of every seed (robust_data.report.retrain) is judged on the untouched test split
(robust_data.report.evaluate): clean accuracy and calibration, RPR robust fraction under the scoring
scheme and under a held-out perturbation family, accuracy and mCE under the corruptions used
as variants and under the held-out ones. The report opens with one verdict line per metric
and baseline (curated minus baseline, paired by seed, 95% interval), then the mean and
interval of every model, the paper's table, and seed 0's curves and per-corruption errors.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError
from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.io.files import write_bytes
from robust_data.present.plots import grouped_bars
from robust_data.present.summary import StageSummary, logged
from robust_data.report.corruption_suite import SUITE_SCHEMA
from robust_data.report.evaluate import (
    METRICS,
    JudgeOptions,
    Measured,
    compare,
    judged_from,
    measure_models,
)
from robust_data.scoring.models import TrainedModel
from robust_data.scoring.rpr.plots import plot_curves
from robust_data.scoring.rpr.table import robustness_curve
from robust_data.store.checks import CheckOutcome, nan_problems, range_problems, schema_problems
from robust_data.store.schema import column, column_by_id, table_metadata

REPORT_SCHEMA = pa.schema(
    [
        column("seed", pa.int64(), "Training seed (each seed trains every model)", nullable=False),
        column(
            "model",
            pa.string(),
            "The training set: reference, curated, random_subset, ...",
            nullable=False,
        ),
        column("train_size", pa.int64(), "Training images: originals + variants", nullable=False),
        column(
            "test_accuracy", pa.float64(), "Clean test accuracy; higher is better", nullable=False
        ),
        column(
            "robust_fraction",
            pa.float64(),
            "Test images RPR-robust under the scoring scheme; higher is better",
            nullable=False,
        ),
        column(
            "robust_fraction_held_out",
            pa.float64(),
            "Test images RPR-robust under a held-out perturbation family; higher is better",
            nullable=False,
        ),
        column(
            "corruption_accuracy_held_out",
            pa.float64(),
            "Accuracy on corruptions not used as variants; higher is better; NaN: none held out",
        ),
        column(
            "corruption_accuracy_seen",
            pa.float64(),
            "Accuracy on corruptions used as variants; higher is better; NaN: none used",
        ),
        column(
            "mce_held_out",
            pa.float64(),
            "The headline mCE, on held-out corruptions: 1 = the reference; lower is better",
        ),
        column("mce_seen", pa.float64(), "mCE on corruptions used as variants; lower is better"),
        column(
            "ece",
            pa.float64(),
            "Expected calibration error on the clean test split, 15 bins; lower is better",
            nullable=False,
        ),
        column("model_sha256", pa.string(), "sha256 of the model's weights", nullable=False),
    ]
)
"""One row per (seed, model): every metric the verdicts compare."""

PAPER_TABLE = [
    {
        "model": "paper: M (all of MNIST train)",
        "train_size": 60000,
        "test_accuracy": 0.9885,
        "robust_fraction": 0.2957,
    },
    {
        "model": "paper: M_R (1,500 robust per class)",
        "train_size": 15000,
        "test_accuracy": 0.9692,
        "robust_fraction": 0.5101,
    },
]

#: Metrics the CLI summary shows verdicts for (report.md shows them all).
HEADLINE = ("test_accuracy", "robust_fraction", "robust_fraction_held_out", "mce_held_out")


@dataclass
class Candidate:
    """A model to report on: ``name`` (a training set) trained with seed ``seed``."""

    name: str
    seed: int
    model: TrainedModel
    sha256: str
    train_size: int


@dataclass(frozen=True)
class ReportSetup:
    """What the models were trained on and how they are judged.

    Attributes
    ----------
    dataset : str
    preset : str
        The curation preset behind ``curated``.
    seen : set of str
        Corruptions and perturbation families the variants used (``used_families``).
    judge : JudgeOptions
        Scoring scheme, held-out scheme, tries, RPR seed, device.
    """

    dataset: str
    preset: str
    seen: frozenset[str]
    judge: JudgeOptions


def add_variants(data: SampleArrays, variants: pa.Table) -> SampleArrays:
    """``data`` followed by the rows of a ``variants`` table whose parent is in ``data``.

    Gives the random-subset baseline the same variants the curated export carries, so the two
    differ only in which originals were chosen.
    """
    chosen = pa.array(list(data.sample_ids), pa.string())
    rows = variants.filter(pc.is_in(variants.column("parent_sample_id"), chosen))
    rows = rows.select(["variant_id", "split", "label", "image"]).rename_columns(
        ["sample_id", "split", "label", "image"]
    )
    extra = decode_samples(rows)
    if not len(extra):
        return data
    return SampleArrays(
        list(data.sample_ids) + extra.sample_ids,
        np.concatenate([data.images, extra.images]),
        np.concatenate([data.labels, extra.labels]),
        np.concatenate([data.splits, extra.splits]),
    )


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
        doc = self.document
        judge = doc["judge"]
        lines = [
            f"# Robustness report: {doc['dataset']}",
            "",
            *(f"- {v}" for v in doc["verdicts"]),
            "",
            f"Curated with preset `{doc['preset']}`; {doc['seeds']} seeds per model; intervals are "
            "95% Student-t intervals over seeds, differences paired by seed. Test split: "
            f"{doc['test_samples']:,} images. RPR: {judge['scheme']}, {judge['max_steps']} tries; "
            f"held-out perturbation: {judge['held_out_scheme']}. Variants used "
            f"{', '.join(sorted(doc['seen'])) or 'nothing'}: corruptions among them count as "
            "seen, the others as held out (the headline mCE is held out).",
            "",
            "## Models (mean [95% interval] over seeds)",
            "",
            summary_markdown(doc["summary"], doc["train_sizes"]),
            "",
            "## The paper's table (means over seeds)",
            "",
            paper_table_markdown(self.table),
            "",
            "The paper's own numbers on full MNIST, for comparison: "
            + "; ".join(
                f"{r['model']}: {r['train_size']:,} images, accuracy {r['test_accuracy']:.4f}, "
                f"robust {r['robust_fraction']:.4f}"
                for r in PAPER_TABLE
            ),
            "",
            "## RPR robustness curves (seed 0)",
            "",
            "![robustness curves](plots/robustness_curves.png)",
            "",
            "## Corruption error per corruption (seed 0, relative to the reference)",
            "",
            "| corruption | seen in variants | " + " | ".join(doc["seed0"]) + " |",
            "|---|---|" + "---:|" * len(doc["seed0"]),
        ]
        for corruption in doc["suite_corruptions"]:
            seen = "yes" if corruption in doc["seen"] else "no"
            lines.append(
                f"| {corruption} | {seen} | "
                + " | ".join(f"{doc['seed0'][m]['ce'][corruption]:.3f}" for m in doc["seed0"])
                + " |"
            )
        lines += ["", "![accuracy per corruption](plots/corruption_accuracy.png)", ""]
        return "\n".join(lines)


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


def summary_markdown(summary: dict[str, dict[str, list[float]]], sizes: dict[str, int]) -> str:
    """Model rows, metric columns: ``mean [low, high]`` (``n/a`` where undefined)."""
    names = [m.name for m in METRICS]
    lines = [
        "| model | train images | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for model, metrics in summary.items():
        cells = [
            f"{metrics[n][0]:.4f} [{metrics[n][1]:.4f}, {metrics[n][2]:.4f}]"
            if n in metrics
            else "n/a"
            for n in names
        ]
        lines.append(f"| {model} | {sizes[model]:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_rows(
    summary: dict[str, dict[str, list[float]]], sizes: dict[str, int]
) -> list[dict[str, Any]]:
    """One row per model: ``model``, ``train_size`` and each metric's mean over seeds.

    Metrics are those of :data:`METRICS` (columns of :data:`REPORT_SCHEMA`); NaN where a
    model has no value (e.g. ``mce_seen`` when no corruption was used as a variant).
    """
    return [
        {
            "model": model,
            "train_size": sizes[model],
            **{m.name: metrics[m.name][0] if m.name in metrics else float("nan") for m in METRICS},
        }
        for model, metrics in summary.items()
    ]


def paper_table_markdown(table: pa.Table) -> str:
    """Model, training-set size, test accuracy, test robust fraction (means over seeds)."""
    lines = [
        "| model | training-set size | test accuracy | test robust fraction |",
        "|---|---:|---:|---:|",
    ]
    rows = table.to_pylist()
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        lines.append(
            f"| {model} | {mine[0]['train_size']:,} "
            f"| {np.mean([r['test_accuracy'] for r in mine]):.4f} "
            f"| {np.mean([r['robust_fraction'] for r in mine]):.4f} |"
        )
    return "\n".join(lines)


def stored_steps(
    rpr: pa.Table, test: SampleArrays, candidates: list[Candidate]
) -> dict[tuple[str, int], np.ndarray]:
    """RPR tries (N,) of the test split already stored in ``rpr`` (the ``rpr_scores`` table),
    keyed by the (model, seed) candidate whose weights scored them; ``{}`` when none did."""
    rows = rpr.filter(pc.equal(rpr.column("split"), "test"))
    if rows.num_rows != len(test) or rows.num_rows == 0:
        return {}
    sha = rows.column("model_sha256")[0].as_py()
    steps = column_by_id(rows, list(test.sample_ids), "steps_to_flip")
    return {
        (c.name, c.seed): np.asarray([s or 0 for s in steps], np.int64)
        for c in candidates
        if c.sha256 == sha
    }


MEASURED_SCHEMA = pa.schema(
    [
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("train_size", pa.int64(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("steps", pa.list_(pa.int64()), nullable=False),
        pa.field("held_out_steps", pa.list_(pa.int64()), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
    ]
)
"""One evaluation step's output: a row per measured (seed, model) with its RPR tries (N,)
under the scoring and held-out schemes and its corruption suite (SUITE_SCHEMA rows as JSON)."""


def _measured_row(candidate: Candidate, measured: Measured) -> dict[str, Any]:
    return {
        "seed": candidate.seed,
        "model": candidate.name,
        "train_size": candidate.train_size,
        "model_sha256": candidate.sha256,
        "steps": measured.steps.tolist(),
        "held_out_steps": measured.held_out_steps.tolist(),
        "suite": json.dumps(measured.suite.to_pylist(), allow_nan=True),
    }


def measure_candidates(
    setup: ReportSetup,
    candidates: list[Candidate],
    test: SampleArrays,
    corrupted: pa.Table | None,
    known_steps: dict[tuple[str, int], np.ndarray] | None = None,
    progress: bool = True,
) -> pa.Table:
    """Measure ``candidates`` on ``test`` (one evaluation step's call, with one candidate).

    Candidates of a seed are measured together (each corrupted chunk read once for them);
    the result is the same row by row as one call per candidate.

    Returns
    -------
    pa.Table
        :data:`MEASURED_SCHEMA`, one row per candidate.
    """
    rows = []
    for seed in sorted({c.seed for c in candidates}):
        mine = [c for c in candidates if c.seed == seed]
        measured = measure_models(
            {c.name: c.model.model for c in mine},
            test,
            int(max(c.model.num_classes for c in mine)),
            setup.judge,
            corrupted=corrupted,
            known_steps={n: v for (n, s), v in (known_steps or {}).items() if s == seed},
            progress=progress,
        )
        rows += [_measured_row(c, measured[c.name]) for c in mine]
    return pa.Table.from_pylist(rows, schema=MEASURED_SCHEMA)


def _measured(row: dict[str, Any]) -> Measured:
    suite = pa.Table.from_pylist(json.loads(row["suite"]), schema=SUITE_SCHEMA)
    return Measured(
        suite, np.asarray(row["steps"], np.int64), np.asarray(row["held_out_steps"], np.int64)
    )


def report_from_measurements(
    setup: ReportSetup,
    measurements: list[pa.Table],
    order: list[tuple[int, str]] | None = None,
) -> Report:
    """Compare the measured models (:func:`measure_candidates` tables, in any order).

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
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        names = {r["model"] for r in mine}
        if not {"reference", "curated"} <= names:
            raise DatasetError(
                f"a reference and a curated model for seed {seed}",
                str(sorted(names)),
                "re-run the report from its evaluation steps",
            )
        judged = judged_from({r["model"]: _measured(r) for r in mine}, set(setup.seen))
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
            if seed == seeds[0]:
                curves[row["model"]] = robustness_curve(result.steps, setup.judge.max_steps)
                seed0[row["model"]] = {
                    "curve": curves[row["model"]].tolist(),
                    "ce": result.ce,
                    "suite": result.suite.to_pylist(),
                }
    return _report(setup, runs, seed0, curves, len(seeds), len(rows[0]["steps"]))


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
    figures = {
        "robustness_curves": plot_curves(
            curves, f"RPR robustness curves, test split ({setup.judge.scheme}, seed 0)"
        ),
        "corruption_accuracy": grouped_bars(
            {
                name: [
                    float(np.mean([r["accuracy"] for r in entry["suite"] if r["corruption"] == c]))
                    for c in suite_names
                ]
                for name, entry in seed0.items()
            },
            suite_names,
            "Test accuracy per corruption (seed 0, mean over severities)",
            "accuracy",
        ),
    }
    params = {k: document[k] for k in ("preset", "seeds", "seen", "judge")}
    table = pa.Table.from_pylist(runs, schema=REPORT_SCHEMA).replace_schema_metadata(
        table_metadata("robustness_report", "retrained_model, corrupted_test, rpr_scores", params)
    )
    return Report(table, document, figures)


def headline_verdicts(table: pa.Table, metrics: tuple[str, ...] = HEADLINE) -> list[str]:
    """Verdict lines of a stored report table on ``metrics`` only (curated vs each baseline)."""
    keep = {"seed", "model", *metrics}
    return compare([{k: v for k, v in r.items() if k in keep} for r in table.to_pylist()]).verdicts


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


def check_report(report: pa.Table) -> CheckOutcome:
    """``robustness_report``: schema; accuracies, robust fractions and ECE present and in
    [0, 1]; mCEs >= 0 where defined (NaN: no such corruption); every seed has a reference
    and a curated row, and the reference's held-out mCE is 1 (it is the base)."""
    problems = schema_problems(report, REPORT_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": report.num_rows})
    required = ["test_accuracy", "robust_fraction", "robust_fraction_held_out", "ece"]
    problems += nan_problems(report, required)
    for name in [*required, "corruption_accuracy_held_out", "corruption_accuracy_seen"]:
        problems += range_problems(report, name, 0.0, 1.0)
    for name in ("mce_held_out", "mce_seen"):
        problems += range_problems(report, name, 0.0, math.inf)
    rows = report.to_pylist()
    for seed in sorted({r["seed"] for r in rows}):
        models = {r["model"]: r for r in rows if r["seed"] == seed}
        missing = sorted({"reference", "curated"} - set(models))
        if missing:
            problems.append(f"seed {seed} has no {' or '.join(missing)} row")
            continue
        mce = models["reference"]["mce_held_out"]
        if not math.isnan(mce) and abs(mce - 1.0) > 1e-9:
            problems.append(f"seed {seed}: the reference's held-out mCE is {mce:g}, expected 1")
    if not rows:
        problems.append("no model judged")
    names = sorted({r["model"] for r in rows})
    return CheckOutcome(problems, {"rows": report.num_rows, "models": json.dumps(names)})
