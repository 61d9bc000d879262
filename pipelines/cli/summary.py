"""The summary a run prints, built from the run's own metadata: verdicts first.

Every line comes from what the run's assets logged when they materialized (typed Dagster
metadata), so the summary repeats the run's numbers instead of re-reading and recomputing
the stored tables. Assets the run did not materialize get no line.
"""

from __future__ import annotations

from typing import Any

from pipelines.cli.common import EXAMPLE_SQL
from pipelines.cli.launch import RunOutcome
from robust_data.explore.query import printable
from robust_data.store.home import table_location
from robust_data.store.store import Store


def _ingest_lines(meta: dict[str, Any]) -> list[str]:
    counts = meta.get("counts") or {}
    classes, splits = counts.get("classes", {}), counts.get("splits", {})
    per_class = f"{min(classes.values()):,}-{max(classes.values()):,} per class" if classes else ""
    return [
        f"  raw_samples: {meta['dagster/row_count']:,} rows, {len(classes)} classes ({per_class}); "
        "splits: " + ", ".join(f"{s} {n:,}" for s, n in splits.items()),
        f"  rejects: {meta.get('rejects', 0):,} unreadable images left out",
        *(f"  note: {printable(note)}" for note in counts.get("notes", [])),
    ]


def _scoring_lines(meta: dict[str, dict[str, Any]]) -> list[str]:
    """One line per stage the run materialized after ingestion."""
    lines = []
    if "reference_model" in meta:
        model = meta["reference_model"]
        test = model.get("test_accuracy")
        test_text = f"test accuracy {test:.2%}" if test == test else "no test split"  # NaN
        lines.append(
            f"  reference_model: {model['arch']}, train accuracy {model['train_accuracy']:.2%}, "
            f"{test_text} (sha256 {model['sha256'][:12]})"
        )
    if "rpr_scores" in meta:
        scores = meta["rpr_scores"]
        fractions = {  # robust_fraction_<split> (robust_fraction_per_class is a plot)
            k.removeprefix("robust_fraction_"): v
            for k, v in scores.items()
            if k.startswith("robust_fraction_") and isinstance(v, float)
        }
        lines.append(
            f"  rpr_scores: {scores['scheme']}, max_steps {scores['max_steps']}: robust fraction "
            + ", ".join(f"{split} {fraction:.4f}" for split, fraction in fractions.items())
        )
    if "label_quality" in meta:
        quality = meta["label_quality"]
        rows, issues = quality["dagster/row_count"], quality["label_issues"]
        extra = ""
        if "outliers" in quality:
            extra = (
                f", {quality['outliers']:,} outliers, "
                f"{quality['near_duplicates']:,} near-duplicates"
            )
        lines.append(
            f"  label_quality: {issues:,} label issues in {rows:,} training samples "
            f"({issues / max(rows, 1):.1%}){extra}"
        )
    if "variants" in meta:
        made = meta["variants"]
        kinds = made.get("transforms", [])
        lines.append(
            f"  variants: {made['dagster/row_count']:,} images from {len(kinds)} transforms "
            f"({', '.join(kinds)})"
        )
    if "curation_ledger" in meta:
        reasons = dict(meta["curation_ledger"].get("reason_counts", {}))
        kept = reasons.pop("kept", 0)
        reasons = {r: n for r, n in reasons.items() if n}
        dropped = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items()))
        lines.append(
            f"  curated_samples: kept {kept:,} of {kept + sum(reasons.values()):,} training samples"
            f" (dropped: {dropped or 'none'})"
        )
    if "curated_dataset" in meta:
        export = meta["curated_dataset"]["export"]
        lines.append(
            f"  curated_dataset: {export} (data/train-*.parquet, data/test-*.parquet, README.md)"
        )
    return lines


def report_lines(store: Store, name: str) -> list[str]:
    """The paper's table from the stored report, and where the full report is."""
    from robust_data.report.build import paper_table_markdown

    table = store.read("robustness_report", name)
    return [
        f"Robustness report for {name!r} (test split):",
        paper_table_markdown(table),
        f"Full report: {store.report_location(name)}/report.md",
    ]


def _verdict_lines(meta: dict[str, dict[str, Any]]) -> list[str]:
    """The report's verdicts on the headline metrics, first in the summary."""
    if "robustness_report" not in meta:
        return []
    headline = meta["robustness_report"]["headline"]
    return [
        f"  verdict (preset {headline['preset']}, {headline['seeds']} seeds, "
        "95% intervals; all metrics in report.md):",
        *(f"    {line}" for line in headline["verdicts"]),
    ]


def _report_section(meta: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The report table, last, when the run made one."""
    if "robustness_report" not in meta:
        return []
    report = meta["robustness_report"]
    return [
        "",
        f"Robustness report for {name!r} (test split):",
        report["paper_table"],
        f"Full report: {report['report']}",
    ]


def summary(store: Store, name: str, outcome: RunOutcome, job: str) -> str:
    """What the run did, from its metadata (``outcome.metadata``), then where to look next."""
    meta = outcome.metadata
    return "\n".join(
        [
            f"{job} for dataset {name!r}: run {outcome.run_id[:8]} "
            f"succeeded in {outcome.seconds:.1f} s",
            *_verdict_lines(meta),
            *(f"  warning: {printable(warning)}" for warning in outcome.warnings),
            *(_ingest_lines(meta["raw_samples"]) if "raw_samples" in meta else []),
            *_scoring_lines(meta),
            f"  Parquet: {table_location(store.tables_root, 'raw_samples', name)} "
            "(and beside it, one folder per table)",
            f"  Dagster instance: {store.dagster_home}",
            f"Open the UI: robust-data ui --home {store.home}   "
            "(then http://127.0.0.1:3000, Assets)",
            f'Query:       robust-data query --home {store.home} "{EXAMPLE_SQL}"',
            *_report_section(meta, name),
        ]
    )
