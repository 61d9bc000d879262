"""The curation ledger: one row per training sample, kept or the first rule it failed.

:data:`LEDGER_SCHEMA` with its reasons (:data:`REASONS`, in rule order), the counts read from
it (per reason, per class before and after, the summary record), its chart and its checks.
The rules that fill it are robust_data.curation.policy's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from robust_data.present.plots import grouped_bars
from robust_data.present.summary import ROW_COUNT, StageSummary, logged
from robust_data.store.checks import CheckOutcome, schema_problems
from robust_data.store.schema import column

REASONS = (
    "misclassified",
    "not_robust",
    "label_issue",
    "outlier",
    "duplicate",
    "over_quota",
    "review_drop",
)

LEDGER_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The training sample (raw_samples.sample_id)", nullable=False
        ),
        column("label", pa.int64(), "The stored label, before any relabel", nullable=False),
        column("kept", pa.bool_(), "In curated_samples", nullable=False),
        column(
            "reason",
            pa.string(),
            "The first rule it failed (" + ", ".join(REASONS) + "); null when kept",
        ),
        column(
            "review", pa.string(), "The latest human decision: keep, drop or relabel; null if none"
        ),
        column("overridden", pa.string(), "The rule a keep or relabel review overrode"),
        column("new_label", pa.int64(), "The label it trains with, when relabelled"),
    ]
)
"""One row per input training sample; ``label`` is the stored label, before any relabel."""


@dataclass(frozen=True, kw_only=True)
class CurationSummary(StageSummary):
    """The summary of a curation: samples kept and dropped (of ``rows``, the ledger's), and the
    count per reason (``kept`` first, then the rules in order)."""

    kept: int
    dropped: int
    kept_share: float
    rows: int = field(metadata=logged(key=ROW_COUNT))
    reason_counts: dict[str, int]


def class_counts(ledger: pa.Table) -> tuple[dict[int, int], dict[int, int]]:
    """(before, after) samples per class label of a ``curation_ledger`` table.

    Before counts the stored labels; after counts the labels the kept samples train with
    (``new_label`` where a review relabelled them).
    """
    labels = ledger.column("label").to_numpy()
    kept = ledger.column("kept").to_numpy(zero_copy_only=False).astype(bool)
    trained = labels
    if "new_label" in ledger.column_names:
        trained = pc.coalesce(ledger.column("new_label"), ledger.column("label")).to_numpy()
    classes = sorted(set(labels.tolist()) | set(trained[kept].tolist()))
    return (
        {k: int((labels == k).sum()) for k in classes},
        {k: int(((trained == k) & kept).sum()) for k in classes},
    )


def class_count_chart(ledger: pa.Table, names: Mapping[int, str]) -> bytes:
    """PNG: training samples per class before and after curation (unnamed labels as numbers)."""
    before, after = class_counts(ledger)
    labels = sorted(before)
    return grouped_bars(
        {"before": [before[k] for k in labels], "after": [after[k] for k in labels]},
        [names.get(k, str(k)) for k in labels],
        "Training samples per class, before and after curation",
        "samples",
    )


def check_ledger(ledger: pa.Table, train_rows: int, curated_rows: int) -> CheckOutcome:
    """``curation_ledger``: one row per input sample; kept rows equal the curated table."""
    problems = schema_problems(ledger, LEDGER_SCHEMA)
    kept = int(pc.sum(ledger.column("kept").cast(pa.int64())).as_py() or 0)
    if ledger.num_rows != train_rows:
        problems.append(f"{ledger.num_rows} ledger rows for {train_rows} input samples")
    if kept != curated_rows:
        problems.append(f"{kept} kept in the ledger but {curated_rows} curated rows")
    dropped_without = int(
        pc.sum(
            pc.and_(pc.invert(ledger.column("kept")), pc.is_null(ledger.column("reason")))
        ).as_py()
        or 0
    )
    if dropped_without:
        problems.append(f"{dropped_without} dropped rows without a reason")
    return CheckOutcome(
        problems,
        {
            "input_rows": train_rows,
            "ledger_rows": ledger.num_rows,
            "kept_rows": kept,
            "curated_rows": curated_rows,
        },
    )


#: Guard (a warning, not blocking): curation keeps at least this share of the training set.
MIN_KEPT_SHARE = 0.5


def check_kept_share(ledger: pa.Table, minimum: float = MIN_KEPT_SHARE) -> CheckOutcome:
    """``curation_ledger``: curation kept at least ``minimum`` (in [0, 1]) of the samples.

    Below it the retrained model trains on far less data than the reference and usually
    loses accuracy: a warning, not an error.
    """
    total = ledger.num_rows
    kept = int(pc.sum(ledger.column("kept").cast(pa.int64())).as_py() or 0) if total else 0
    share = kept / total if total else 0.0
    problems = []
    if share < minimum:
        problems.append(
            f"curation kept {kept:,} of {total:,} training samples ({share:.1%}), below "
            f"{minimum:.0%}: expected most of the data kept; use the clean or focus preset or "
            "relax the policy (require_robust, quota_mode) to keep more"
        )
    return CheckOutcome(problems, {"kept": kept, "samples": total, "kept_share": round(share, 4)})
