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


#: Guard (a warning, not blocking): no class loses more than this share of its training
#: samples to the curation's rules.
MAX_CLASS_LOSS = 0.1

#: Drops the class-loss guard leaves out: a quota's balancing and a human's decision.
INTENDED_DROPS = ("over_quota", "review_drop")

#: The policy option (robust_data.curation.policy.CurationPolicy) behind each rule's reason.
_RULE_OPTIONS = {
    "misclassified": "require_correct",
    "not_robust": "require_robust",
    "label_issue": "drop_label_issues",
    "outlier": "drop_outliers",
    "duplicate": "dedupe",
}


def class_losses(ledger: pa.Table) -> dict[int, tuple[int, dict[str, int]]]:
    """Per stored label: (training samples, rule drops per reason, most first).

    Rule drops are the dropped rows whose reason is not in :data:`INTENDED_DROPS`.
    """
    labels = ledger.column("label").to_pylist()
    kept = ledger.column("kept").to_pylist()
    reasons = ledger.column("reason").to_pylist()
    losses: dict[int, tuple[int, dict[str, int]]] = {}
    for label, is_kept, reason in zip(labels, kept, reasons, strict=True):
        total, dropped = losses.get(label, (0, {}))
        if not is_kept and reason not in INTENDED_DROPS:
            key = reason or "unknown"
            dropped[key] = dropped.get(key, 0) + 1
        losses[label] = (total + 1, dropped)
    return {
        label: (total, dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))))
        for label, (total, dropped) in sorted(losses.items())
    }


def check_class_loss(
    ledger: pa.Table, maximum: float = MAX_CLASS_LOSS, names: Mapping[int, str] | None = None
) -> CheckOutcome:
    """``curation_ledger``: no class lost more than ``maximum`` (in [0, 1]) of its samples.

    A class's loss is the share of its training samples (by stored label, before any relabel)
    that the rules dropped (misclassified, not_robust, label_issue, outlier, duplicate); higher
    is worse: the retrained model sees less of that class and usually does worse on it, which
    the overall kept share and the class-balance check (an empty class only) do not show.
    ``over_quota`` drops do not count: evening the classes out is what a quota policy is for,
    and the class_balance check and the shortfalls cover its effect. ``review_drop`` drops do
    not count either: a human decided each one. A warning, not an error.

    Parameters
    ----------
    ledger : pyarrow.Table
        A ``curation_ledger`` table (:data:`LEDGER_SCHEMA`), one row per training sample.
    maximum : float
        The largest share of a class the rules may drop, in [0, 1]; default 0.1.
    names : mapping of int to str, optional
        Class names by label, shown in the problems (the label's number when missing).

    Returns
    -------
    CheckOutcome
        One problem per class above ``maximum`` (its name, dropped and total counts, share and
        reasons with counts, most first); metadata ``class_loss`` (name -> share in [0, 1]),
        ``worst_class_loss`` and ``maximum``.
    """
    names = names or {}
    problems = []
    shares: dict[str, float] = {}
    for label, (total, dropped) in class_losses(ledger).items():
        lost = sum(dropped.values())
        share = lost / total if total else 0.0
        name = names.get(label, str(label))
        shares[name] = round(share, 4)
        if share > maximum:
            why = ", ".join(f"{reason} {count}" for reason, count in dropped.items())
            rules = ", ".join(_RULE_OPTIONS[r] for r in dropped if r in _RULE_OPTIONS)
            problems.append(
                f"class {name}: dropped {lost:,} of {total:,} ({share:.1%}): {why}; expected at "
                f"most {maximum:.0%} of a class dropped; look at its dropped rows in the ledger, "
                f"and turn the rule off ({rules}) if they are good samples"
            )
    worst = max(shares.values(), default=0.0)
    return CheckOutcome(
        problems, {"maximum": maximum, "worst_class_loss": worst, "class_loss": shares}
    )
