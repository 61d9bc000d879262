"""The summary a run prints, built from the run's own metadata: verdicts first.

Every line comes from the summary records the run's assets logged when they materialized
(each stage's :class:`~robust_data.present.summary.StageSummary`, rebuilt from the typed
Dagster metadata by :class:`RunSummaries`), so the summary repeats the run's numbers instead of
re-reading and recomputing the stored tables. Assets the run did not materialize get no line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.cli.common import EXAMPLE_SQL, flagged
from pipelines.cli.launch import RunOutcome
from robust_data.explore.formats import printable
from robust_data.store.home import table_location
from robust_data.store.store import Store

if TYPE_CHECKING:
    from robust_data.curation.ledger import CurationSummary
    from robust_data.export.result import ExportSummary
    from robust_data.ingest.build import IngestSummary
    from robust_data.label_quality.assess import LabelQualitySummary
    from robust_data.report.build import ReportSummary
    from robust_data.scoring.reference import ReferenceSummary
    from robust_data.scoring.rpr.score import RprSummary
    from robust_data.variants.make import VariantsSummary


@dataclass(frozen=True, kw_only=True)
class RunSummaries:
    """The summary record of each asset a run materialized; None for the others."""

    ingest: IngestSummary | None = None  # raw_samples
    reference: ReferenceSummary | None = None  # reference_model
    rpr: RprSummary | None = None  # rpr_scores
    label_quality: LabelQualitySummary | None = None  # label_quality
    variants: VariantsSummary | None = None  # variants
    curation: CurationSummary | None = None  # curation_ledger
    export: ExportSummary | None = None  # curated_dataset
    report: ReportSummary | None = None  # robustness_report

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Mapping[str, Any]]) -> RunSummaries:
        """Each record from its asset's metadata (asset name -> plain values).

        The stage modules are imported here, not at the top: they load torch, and the CLI's
        quick commands (query, datasets) never print a run summary.
        """
        from robust_data.curation.ledger import CurationSummary
        from robust_data.export.result import ExportSummary
        from robust_data.ingest.build import IngestSummary
        from robust_data.label_quality.assess import LabelQualitySummary
        from robust_data.report.build import ReportSummary
        from robust_data.scoring.reference import ReferenceSummary
        from robust_data.scoring.rpr.score import RprSummary
        from robust_data.variants.make import VariantsSummary

        kinds: dict[str, tuple[str, Any]] = {
            "ingest": ("raw_samples", IngestSummary),
            "reference": ("reference_model", ReferenceSummary),
            "rpr": ("rpr_scores", RprSummary),
            "label_quality": ("label_quality", LabelQualitySummary),
            "variants": ("variants", VariantsSummary),
            "curation": ("curation_ledger", CurationSummary),
            "export": ("curated_dataset", ExportSummary),
            "report": ("robustness_report", ReportSummary),
        }
        return cls(
            **{
                name: kind.from_metadata(meta[asset])
                for name, (asset, kind) in kinds.items()
                if asset in meta
            }
        )


def _ingest_lines(ingest: IngestSummary) -> list[str]:
    classes, splits = ingest.counts.classes, ingest.counts.splits
    per_class = f"{min(classes.values()):,}-{max(classes.values()):,} per class" if classes else ""
    return [
        f"  raw_samples: {ingest.rows:,} rows, {len(classes)} classes ({per_class}); "
        "splits: " + ", ".join(f"{s} {n:,}" for s, n in splits.items()),
        f"  rejects: {ingest.rejects:,} unreadable images left out",
        *(f"  note: {printable(flagged(note))}" for note in ingest.counts.notes),
    ]


def _reference_line(model: ReferenceSummary) -> str:
    test = model.test_accuracy
    test_text = f"test accuracy {test:.2%}" if test == test else "no test split"  # NaN
    return (
        f"  reference_model: {model.model or model.arch}, "
        f"train accuracy {model.train_accuracy:.2%}, {test_text} (sha256 {model.sha256[:12]})"
    )


def _rpr_line(scores: RprSummary) -> str:
    return (
        f"  rpr_scores: {scores.scheme}, max_steps {scores.max_steps}: robust fraction "
        + ", ".join(f"{split} {f:.4f}" for split, f in scores.robust_fraction.items())
    )


def _label_quality_line(quality: LabelQualitySummary) -> str:
    rows, issues = quality.rows, quality.label_issues
    extra = ""
    if quality.outliers is not None:  # Datalab ran
        extra = f", {quality.outliers:,} outliers, {quality.near_duplicates:,} near-duplicates"
    return (
        f"  label_quality: {issues:,} label issues in {rows:,} training samples "
        f"({issues / max(rows, 1):.1%}){extra}"
    )


def _variants_line(made: VariantsSummary) -> str:
    kinds = made.transforms
    return f"  variants: {made.rows:,} images from {len(kinds)} transforms ({', '.join(kinds)})"


def _curation_line(curation: CurationSummary) -> str:
    reasons = dict(curation.reason_counts)
    kept = reasons.pop("kept", 0)
    reasons = {r: n for r, n in reasons.items() if n}
    dropped = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items()))
    return (
        f"  curated_samples: kept {kept:,} of {kept + sum(reasons.values()):,} training samples"
        f" (dropped: {dropped or 'none'})"
    )


def _stage_lines(run: RunSummaries) -> list[str]:
    """One line per stage the run materialized after ingestion."""
    lines = []
    if run.reference:
        lines.append(_reference_line(run.reference))
    if run.rpr:
        lines.append(_rpr_line(run.rpr))
    if run.label_quality:
        lines.append(_label_quality_line(run.label_quality))
    if run.variants:
        lines.append(_variants_line(run.variants))
    if run.curation:
        lines.append(_curation_line(run.curation))
    if run.export:
        lines.append(
            f"  curated_dataset: {run.export.export} "
            "(data/train-*.parquet, data/test-*.parquet, README.md)"
        )
    return lines


def report_lines(store: Store, name: str) -> list[str]:
    """The stored report's verdicts on the headline metrics, the paper's table, and where the
    full report is (``robust-data report``).

    The verdicts are recomputed from the stored ``robustness_report`` table as the run's
    summary computed them (:func:`robust_data.report.table.headline_verdicts`), the preset and
    seed count from the table's parameters; nothing on this path loads torch.
    """
    from robust_data.report.render import paper_table_markdown
    from robust_data.report.table import headline_verdicts
    from robust_data.store.schema import read_params

    table = store.read("robustness_report", name)
    params = read_params(table.schema)
    seeds = params.get("seeds") or len(set(table.column("seed").to_pylist()))
    return [
        f"Robustness report for {name!r} (test split):",
        *verdict_lines(params.get("preset", "unknown"), seeds, headline_verdicts(table)),
        paper_table_markdown(table),
        f"Full report: {store.report_location(name)}/report.md",
    ]


def verdict_lines(preset: str, seeds: int, verdicts: Sequence[str]) -> list[str]:
    """The report's verdicts on the headline metrics under one heading line (preset, seeds)."""
    return [
        f"  verdict (preset {preset}, {seeds} seeds, 95% intervals; all metrics in report.md):",
        *(f"    {line}" for line in verdicts),
    ]


def _verdict_lines(report: ReportSummary | None) -> list[str]:
    """The report's verdicts on the headline metrics, first in the summary."""
    if report is None:
        return []
    headline = report.headline
    return verdict_lines(headline.preset, headline.seeds, headline.verdicts)


def _report_section(report: ReportSummary | None, name: str) -> list[str]:
    """The report table, last, when the run made one."""
    if report is None:
        return []
    return [
        "",
        f"Robustness report for {name!r} (test split):",
        report.paper_table,
        f"Full report: {report.report}",
    ]


def summary(store: Store, name: str, outcome: RunOutcome, job: str) -> str:
    """What the run did, from its metadata (``outcome.metadata``), then where to look next."""
    run = RunSummaries.from_metadata(outcome.metadata)
    return "\n".join(
        [
            f"{job} for dataset {name!r}: run {outcome.run_id[:8]} "
            f"succeeded in {outcome.seconds:.1f} s",
            *_verdict_lines(run.report),
            *(f"  warning: {printable(warning)}" for warning in outcome.warnings),
            *(_ingest_lines(run.ingest) if run.ingest else []),
            *_stage_lines(run),
            f"  Parquet: {table_location(store.tables_root, 'raw_samples', name)} "
            "(and beside it, one folder per table)",
            f"  Dagster instance: {store.dagster_home}",
            f"Open the UI: robust-data ui --home {store.home}   "
            "(then http://127.0.0.1:3000, Assets)",
            f'Query:       robust-data query --home {store.home} "{EXAMPLE_SQL}"',
            *_report_section(run.report, name),
        ]
    )
