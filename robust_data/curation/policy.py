"""Curation policy: which training samples to keep, and why each of the others was dropped.

Rules run in a fixed order and the ledger records the first one a sample fails:
misclassified, not_robust, label_issue, outlier, duplicate, over_quota. Class balance is a
seeded sample of each class's survivors (rank by sha256(seed, sample_id)). Human reviews
(robust_data.curation.reviews) come last and win: ``drop`` is the reason ``review_drop``;
``keep`` and ``relabel`` keep a sample whatever the rules say (the ledger's ``overridden``
names the rule), first in its class's quota, and ``relabel`` trains it with its ``new_label``.
The ledger that records it all, row by row, is robust_data.curation.ledger's table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.curation.ledger import LEDGER_SCHEMA, REASONS, CurationSummary, class_counts
from robust_data.curation.reviews import Review
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import SampleArrays, class_names
from robust_data.store.schema import column_by_id, table_metadata

QUOTA_MODES = ("fixed", "smallest", "cap", "none")
#: The class_balance check's tolerance (1 - smallest / largest kept class count) when a quota
#: drops samples for balance (see :meth:`CurationPolicy.balance_tolerance`).
BALANCE_TOLERANCE = 0.1


@dataclass(frozen=True)
class CurationPolicy:
    """Which training samples to keep.

    Attributes
    ----------
    require_correct : bool
        Drop samples the reference model misclassifies (``misclassified``).
    require_robust : bool
        Drop samples that are not RPR-robust (``not_robust``).
    min_steps_to_flip : int or None
        With ``require_robust``: instead of the robust flag, keep samples that survived or
        flipped at try >= this (1..max_steps).
    drop_label_issues, drop_outliers : bool
        Drop cleanlab label issues (``label_issue``) and Datalab outliers (``outlier``).
    dedupe : bool
        Keep one sample per near-duplicate group, the first by sample_id (``duplicate``).
    quota_mode : str
        ``fixed``: ``per_class`` from every class (the paper's 1,500; classes that fall short
        keep what they have and are reported); ``smallest``: every class down to the smallest
        class's survivors; ``cap``: at most ``per_class``; ``none``: no balancing.
    per_class : int
        Samples kept per class under ``fixed`` (where a class has them) and at most under
        ``cap``.
    seed : int
        Seeds the per-class sampling.
    relabel_below : float
        In [0, 1]; 0 (default) is off. A label issue whose ``label_quality`` (cleanlab's
        self-confidence: the out-of-fold probability of the given label) is at most this is
        relabelled to cleanlab's ``suggested_label`` and kept, instead of dropped (the model
        is confident the label is wrong); other label issues are dropped as before. The
        ledger keeps it with its ``new_label``; a human review of the sample still wins.
    """

    require_correct: bool = True
    require_robust: bool = True
    min_steps_to_flip: int | None = None
    drop_label_issues: bool = True
    drop_outliers: bool = True
    dedupe: bool = True
    quota_mode: str = "smallest"
    per_class: int = 1500
    seed: int = 0
    relabel_below: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.relabel_below <= 1.0:
            raise RobustDataError(
                "relabel_below in [0, 1] (0: off)",
                str(self.relabel_below),
                "pass e.g. 0.05, or 0 to drop every label issue",
                options=("relabel_below",),
            )
        if self.quota_mode not in QUOTA_MODES:
            raise RobustDataError(
                f"quota_mode in {QUOTA_MODES}",
                repr(self.quota_mode),
                "pass one of those",
                options=("quota_mode",),
            )
        if self.per_class < 1:
            raise RobustDataError(
                "per_class >= 1", str(self.per_class), "pass 1 or more", options=("per_class",)
            )
        if self.min_steps_to_flip is not None and self.min_steps_to_flip < 1:
            raise RobustDataError(
                "min_steps_to_flip >= 1 or None",
                str(self.min_steps_to_flip),
                "pass 1 or more, or None",
                options=("min_steps_to_flip",),
            )

    def balance_tolerance(self) -> float:
        """The class_balance check's default tolerance under this policy.

        :data:`BALANCE_TOLERANCE` when a quota drops samples for balance; 1 (any imbalance
        passes) under ``quota_mode`` ``none``, where class weights balance instead.
        """
        return 1.0 if self.quota_mode == "none" else BALANCE_TOLERANCE


@dataclass
class Curation:
    """The outcome of a policy.

    Attributes
    ----------
    curated : pa.Table
        The kept rows of the input samples table, same schema, input order.
    ledger : pa.Table
        :data:`LEDGER_SCHEMA`, one row per input sample, input order.
    shortfalls : dict
        Class label -> (quota, kept) for classes that kept fewer than their quota.
    """

    curated: pa.Table
    ledger: pa.Table
    shortfalls: dict[int, tuple[int, int]]

    def reason_counts(self) -> dict[str, int]:
        """Dropped samples per reason, in rule order, plus ``kept``."""
        reasons = self.ledger.column("reason").to_pylist()
        counts = {"kept": reasons.count(None)}
        counts.update({r: reasons.count(r) for r in REASONS})
        return counts

    def kept_share(self) -> float:
        """Share of input samples kept, in [0, 1]."""
        return self.curated.num_rows / max(self.ledger.num_rows, 1)

    def class_counts(self) -> tuple[dict[int, int], dict[int, int]]:
        """(before, after) samples per class label."""
        return class_counts(self.ledger)

    def summary(self) -> CurationSummary:
        """The ledger's counts, for its asset's metadata and the CLI."""
        kept = self.curated.num_rows
        return CurationSummary(
            kept=kept,
            dropped=self.ledger.num_rows - kept,
            kept_share=round(self.kept_share(), 4),
            rows=self.ledger.num_rows,
            reason_counts=self.reason_counts(),
        )


def _rank(seed: int, sample_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()


def select_curated(
    samples: pa.Table,
    rpr: pa.Table,
    quality: pa.Table | None,
    policy: CurationPolicy | None = None,
    reviews: Mapping[str, Review] | None = None,
) -> Curation:
    """Apply ``policy`` to the training samples.

    Parameters
    ----------
    samples : pa.Table
        The input samples (the train split of ``raw_samples``).
    rpr : pa.Table
        ``rpr_scores`` rows covering them (``clean_correct``, ``robust``, ``steps_to_flip``).
    quality : pa.Table or None
        ``label_quality`` rows (``is_label_issue``, ``is_outlier``, ``near_duplicate_group``);
        None skips the label, outlier and duplicate rules.
    policy : CurationPolicy or None
        None: the defaults.
    reviews : mapping of str to Review, or None
        Sample id -> its latest human decision (robust_data.curation.reviews.latest_decisions);
        decisions about samples not in ``samples`` are ignored.

    Raises
    ------
    DatasetError
        When a sample has no RPR score.
    """
    policy = policy or CurationPolicy()
    ids = samples.column("sample_id").to_pylist()
    labels = np.asarray(samples.column("label").to_numpy(), np.int64)
    correct = column_by_id(rpr, ids, "clean_correct", None)
    missing = [i for i, c in zip(ids, correct, strict=True) if c is None]
    if missing:
        raise DatasetError(
            "rpr_scores for every sample",
            f"{len(missing)} without (e.g. {missing[0]})",
            "re-materialize rpr_scores for this dataset",
        )
    robust = column_by_id(rpr, ids, "robust", False)
    steps = column_by_id(rpr, ids, "steps_to_flip", None)
    issue = (
        column_by_id(quality, ids, "is_label_issue", False)
        if quality is not None
        else [False] * len(ids)
    )
    outlier = (
        column_by_id(quality, ids, "is_outlier", False)
        if quality is not None
        else [False] * len(ids)
    )
    group = (
        column_by_id(quality, ids, "near_duplicate_group", None)
        if quality is not None
        else [None] * len(ids)
    )

    repaired = _repairs(quality, ids, issue, policy)
    reason: list[str | None] = [None] * len(ids)
    for i in range(len(ids)):
        if policy.require_correct and not correct[i]:
            reason[i] = "misclassified"
        elif policy.require_robust and not _passes_robustness(robust[i], steps[i], policy):
            reason[i] = "not_robust"
        elif policy.drop_label_issues and issue[i] and repaired[i] is None:
            reason[i] = "label_issue"
        elif policy.drop_outliers and outlier[i]:
            reason[i] = "outlier"
    if policy.dedupe:
        seen: set[str] = set()
        for i in sorted(range(len(ids)), key=lambda j: ids[j]):
            key = group[i]
            if reason[i] is None and key is not None:
                if key in seen:
                    reason[i] = "duplicate"
                seen.add(key)
    decided = [reviews.get(i) if reviews else None for i in ids]
    overridden = _apply_reviews(decided, reason)
    reviewed = [d is not None and d.decision != "drop" for d in decided]
    new_label = [
        d.new_label if d is not None else (repaired[i] if reason[i] is None else None)
        for i, d in enumerate(decided)
    ]
    trained = np.array([k if k is not None else labels[i] for i, k in enumerate(new_label)])
    shortfalls = _apply_quota(ids, trained.astype(np.int64), reason, policy, reviewed)
    kept = np.array([r is None for r in reason])
    ledger = pa.table(
        {
            "sample_id": ids,
            "label": labels,
            "kept": kept,
            "reason": reason,
            "review": [d.decision if d is not None else None for d in decided],
            "overridden": overridden,
            "new_label": new_label,
        },
        schema=LEDGER_SCHEMA,
    )
    meta = table_metadata(
        "curation_ledger", "raw_samples, rpr_scores, label_quality", asdict(policy)
    )
    curated = _relabelled(samples, new_label).filter(pa.array(kept))
    curated = curated.replace_schema_metadata(
        table_metadata("curated_samples", "raw_samples, rpr_scores, label_quality", asdict(policy))
    )
    return Curation(curated, ledger.replace_schema_metadata(meta), shortfalls)


def _repairs(
    quality: pa.Table | None, ids: list[str], issue: list[bool], policy: CurationPolicy
) -> list[int | None]:
    """Per sample, cleanlab's suggested label where ``policy.relabel_below`` repairs it."""
    if quality is None or policy.relabel_below <= 0 or not policy.drop_label_issues:
        return [None] * len(ids)
    score = column_by_id(quality, ids, "label_quality", 1.0)
    suggested = column_by_id(quality, ids, "suggested_label", None)
    return [
        int(s) if flagged and s is not None and q <= policy.relabel_below else None
        for flagged, q, s in zip(issue, score, suggested, strict=True)
    ]


def _apply_reviews(decided: list[Review | None], reason: list[str | None]) -> list[str | None]:
    """Let each decision win over the rules, in place; the rule each keep/relabel overrode."""
    overridden: list[str | None] = [None] * len(reason)
    for i, decision in enumerate(decided):
        if decision is None:
            continue
        if decision.decision == "drop":
            reason[i] = "review_drop"
        else:
            overridden[i], reason[i] = reason[i], None
    return overridden


def _relabelled(samples: pa.Table, new_label: list[int | None]) -> pa.Table:
    """``samples`` with ``label`` (and ``label_name``) replaced where a review or a repair
    gave a new one."""
    if all(label is None for label in new_label):
        return samples
    labels = pc.coalesce(pa.array(new_label, pa.int64()), samples.column("label").cast(pa.int64()))
    out = samples
    if "label_name" in samples.column_names:  # the new label's name, not the old one's
        names = class_names(samples)
        given = samples.column("label_name").to_pylist()
        named = [
            old if k is None else _name(names, k) for k, old in zip(new_label, given, strict=True)
        ]
        index = samples.column_names.index("label_name")
        field = samples.schema.field("label_name")
        out = out.set_column(index, field, pa.array(named, field.type))
    index = samples.column_names.index("label")
    field = samples.schema.field("label")
    return out.set_column(index, field, labels.cast(field.type))


def _name(names: list[str], label: int) -> str:
    """Class ``label``'s name (its number where the table names no such class)."""
    return names[label] if 0 <= label < len(names) else str(label)


def _passes_robustness(robust: bool, steps: int | None, policy: CurationPolicy) -> bool:
    if policy.min_steps_to_flip is None:
        return bool(robust)
    return steps is None or steps >= policy.min_steps_to_flip


def _apply_quota(
    ids: list[str],
    labels: np.ndarray,
    reason: list[str | None],
    policy: CurationPolicy,
    reviewed: list[bool],
) -> dict[int, tuple[int, int]]:
    """Mark ``over_quota`` in place; return classes short of their quota.

    Reviewed samples (``reviewed[i]``: a keep or relabel decision) fill their class's quota
    first and are never marked, even past the quota.
    """
    survivors: dict[int, list[int]] = {int(k): [] for k in np.unique(labels)}
    for i, r in enumerate(reason):
        if r is None:
            survivors[int(labels[i])].append(i)
    if policy.quota_mode == "none":
        return {}
    if policy.quota_mode == "smallest":
        quota = min(len(v) for v in survivors.values())
    else:
        quota = policy.per_class
    shortfalls = {}
    for label, members in survivors.items():
        if policy.quota_mode == "fixed" and len(members) < quota:
            shortfalls[label] = (quota, len(members))
        ranked = sorted(members, key=lambda i: (not reviewed[i], _rank(policy.seed, ids[i])))
        for i in ranked[quota:]:
            if not reviewed[i]:
                reason[i] = "over_quota"
    return shortfalls


def select_scored(
    data: SampleArrays,
    clean_correct: np.ndarray,
    robust: np.ndarray,
    policy: CurationPolicy,
    quality: pa.Table | None = None,
) -> SampleArrays:
    """The policy's RPR rules and quota on decoded samples and their scores, in order.

    For experiments outside the asset graph. Without a ``label_quality`` table
    (robust_data.label_quality.assess) its rules are skipped.

    Parameters
    ----------
    data : SampleArrays
        N training samples.
    clean_correct, robust : np.ndarray
        (N,) bool, row-aligned with ``data`` (an engine result's flags).
    """
    samples = pa.table({"sample_id": data.sample_ids, "label": data.labels})
    rpr = pa.table(
        {
            "sample_id": data.sample_ids,
            "clean_correct": np.asarray(clean_correct, bool),
            "robust": np.asarray(robust, bool),
            "steps_to_flip": pa.nulls(len(data), pa.int32()),
        }
    )
    kept = select_curated(samples, rpr, quality, policy).curated.column("sample_id").to_pylist()
    kept = set(kept)
    return data.where(np.array([i in kept for i in data.sample_ids], bool))
