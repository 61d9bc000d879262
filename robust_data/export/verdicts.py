"""The robustness report's verdicts for an export's card, when a current report exists.

The report (``robustness_report``, robust_data.report) is built after the export in the main
job, so the export a job writes cannot show it; an export made once the report exists (``robust-data
export`` after the job, or the job run again after a report) can. A stored report counts only
when it was written after every training table of this export (``curated_samples``,
``curation_ledger``, and ``variants`` when included): one written earlier judged an earlier
curation, and the card says so instead of showing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from robust_data.io.files import filesystem
from robust_data.store.home import table_location
from robust_data.store.schema import read_params
from robust_data.store.store import Store

REPORT_TABLE = "robustness_report"


@dataclass(frozen=True)
class ReportFinding:
    """What the card says about the robustness report.

    Attributes
    ----------
    status : str
        ``included`` (current: shown), ``older`` (written before this curation: not shown),
        ``unknown age`` (its time could not be read: not shown) or ``none`` (no report yet).
    verdicts : tuple of str
        The verdict lines on the headline metrics, curated against each baseline (included
        only).
    table : str
        The paper's table as Markdown: models, training-set size, test accuracy, robust
        fraction (included only).
    params : dict
        The report's recorded parameters (preset, seeds, judge, seen); empty without a report.
    curated_size : int or None
        Training images of the report's first curated model (included only).
    """

    status: str
    verdicts: tuple[str, ...] = ()
    table: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    curated_size: int | None = None

    def record(self, report_md: str) -> dict[str, Any]:
        """``lineage.json``'s ``report``: the status, and for a shown report what it says."""
        found: dict[str, Any] = {"status": self.status}
        if self.status == "included":
            found.update(
                report_md=report_md,
                preset=self.params.get("preset"),
                seeds=self.params.get("seeds"),
                verdicts=list(self.verdicts),
            )
        return found


def modified(location: str) -> datetime | None:
    """When the file at a local path or fsspec URL was last written (UTC); None if unknown."""
    fs, path = filesystem(location)
    try:
        when = fs.modified(path)
    except (NotImplementedError, OSError, KeyError, ValueError):
        return None
    if not isinstance(when, datetime):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def find_report(store: Store, dataset: str, inputs: tuple[str, ...]) -> ReportFinding:
    """The stored report of ``dataset`` if it is newer than every table in ``inputs``.

    Parameters
    ----------
    inputs : tuple of str
        Stored tables of this export's training set; the report must postdate each of them.
    """
    if not store.has(REPORT_TABLE, dataset):
        return ReportFinding("none")
    report = store.read(REPORT_TABLE, dataset)
    params = read_params(report.schema)
    written = modified(table_location(store.tables_root, REPORT_TABLE, dataset))
    made = [modified(table_location(store.tables_root, name, dataset)) for name in inputs]
    if written is None or any(when is None for when in made):
        return ReportFinding("unknown age", params=params)
    if any(written < when for when in made if when is not None):
        return ReportFinding("older", params=params)
    sizes = [r["train_size"] for r in report.to_pylist() if r["model"] == "curated"]
    return ReportFinding(
        "included",
        *_verdicts_and_table(report),
        params=params,
        curated_size=sizes[0] if sizes else None,
    )


def _verdicts_and_table(report: pa.Table) -> tuple[tuple[str, ...], str]:
    """The headline verdicts and the paper's table of a stored report table."""
    from robust_data.report.render import paper_table_markdown
    from robust_data.report.table import headline_verdicts

    return tuple(headline_verdicts(report)), paper_table_markdown(report)


def report_lines(finding: ReportFinding, report_md: str, train_rows: int) -> list[str]:
    """The card's section on the robustness report: the verdicts and table, or why not.

    ``train_rows`` is this export's train split; when the report's curated models trained on
    another number of images (an export without the plan's variants), the card says so.
    """
    lines = ["## Robustness report", ""]
    if finding.status == "included":
        params = finding.params
        if finding.curated_size is not None and finding.curated_size != train_rows:
            lines += [
                f"Note: the report's curated models trained on {finding.curated_size:,} images; "
                f"this export's train split holds {train_rows:,}, so the verdicts describe the "
                "curated set with its planned variants, not these files alone.",
                "",
            ]
        lines += [
            f"From the stored report of this curation (preset `{params.get('preset')}`, "
            f"{params.get('seeds')} seeds per model; full report: `{report_md}` in the home). "
            "Verdicts on the headline metrics, curated against each baseline (95% intervals "
            "over seeds):",
            "",
            *(f"- {line}" for line in finding.verdicts),
            "",
            finding.table,
        ]
    elif finding.status == "none":
        lines.append(
            "None yet: no robustness report existed for this dataset when this export was "
            "made. The main job builds the report after its export; run `robust-data export` "
            "after the job to get a card with the report's verdicts."
        )
    elif finding.status == "older":
        lines.append(
            "Not shown: the stored report was written before this curation (it judged an "
            "earlier curated set). Run the report again, then export."
        )
    else:
        lines.append(
            "Not shown: the time the stored report was written could not be read, so whether "
            "it judged this curation is unknown."
        )
    return [*lines, ""]
