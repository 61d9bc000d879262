"""Label quality with cleanlab: label issues, outliers, near-duplicates, class imbalance.

Inputs are the ``oof_predictions`` table (out-of-fold ``pred_probs`` and embeddings); the
output is one row per training sample. Also here: planting known label noise, which the
benchmark and the tests use to check that detection works.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import decode_samples
from robust_data.label_quality.oof_table import matrix_column
from robust_data.present.plots import image_grid
from robust_data.present.summary import ROW_COUNT, StageSummary, logged
from robust_data.store.checks import (
    CheckOutcome,
    nan_problems,
    range_problems,
    schema_problems,
    unique_problems,
)
from robust_data.store.schema import column, table_metadata

METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
)

LABEL_QUALITY_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The training sample (raw_samples.sample_id)", nullable=False
        ),
        column("given_label", pa.int64(), "The stored label", nullable=False),
        column("oof_pred", pa.int64(), "Argmax of the out-of-fold pred_probs", nullable=False),
        column("label_quality", pa.float64(), "In [0, 1]; low = suspect label", nullable=False),
        column(
            "is_label_issue",
            pa.bool_(),
            "cleanlab finds the given label likely wrong",
            nullable=False,
        ),
        column(
            "suggested_label",
            pa.int64(),
            "oof_pred if a label issue, else the given label",
            nullable=False,
        ),
        column("outlier_score", pa.float64(), "In [0, 1]; low = outlier; null without Datalab"),
        column("is_outlier", pa.bool_(), "Datalab flags it an outlier; null without Datalab"),
        column(
            "near_duplicate_score",
            pa.float64(),
            "In [0, 1]; low = near-duplicate; null without Datalab",
        ),
        column(
            "is_near_duplicate",
            pa.bool_(),
            "Datalab flags it a near-duplicate; null without Datalab",
        ),
        column(
            "near_duplicate_group",
            pa.string(),
            "First sample_id of its near-duplicate group; null if none",
        ),
    ]
)
"""One row per training sample. Low ``label_quality`` / ``outlier_score`` is bad."""


@dataclass(frozen=True)
class LabelQualityOptions:
    """How to assess labels.

    Attributes
    ----------
    method : str
        Score of ``cleanlab.rank.get_label_quality_scores``: self_confidence,
        normalized_margin or confidence_weighted_entropy.
    filter_by : str
        Rule of ``cleanlab.filter.find_label_issues`` (default prune_by_noise_rate).
    datalab : bool
        Also run cleanlab Datalab on the embeddings: outliers, near-duplicates, class
        imbalance.
    """

    method: str = "self_confidence"
    filter_by: str = "prune_by_noise_rate"
    datalab: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise RobustDataError(
                f"method in {METHODS}", repr(self.method), "pass one of those", options=("method",)
            )
        if self.filter_by not in FILTERS:
            raise RobustDataError(
                f"filter_by in {FILTERS}",
                repr(self.filter_by),
                "pass one of those",
                options=("filter_by",),
            )


@dataclass
class LabelQuality:
    """Label-quality rows and the dataset-level findings.

    Attributes
    ----------
    table : pa.Table
        :data:`LABEL_QUALITY_SCHEMA` rows.
    class_imbalance : dict
        Datalab's finding: ``is_issue``, ``score`` (0..1, low = imbalanced), ``rarest_class``,
        ``threshold``; empty without Datalab.
    issue_summary : list of dict
        Datalab's summary: issue type, score, number of issues.
    """

    table: pa.Table
    class_imbalance: dict[str, Any]
    issue_summary: list[dict[str, Any]]

    def flagged_share(self) -> float:
        """Share of samples flagged as label issues, in [0, 1]."""
        return float(pc.mean(self.table.column("is_label_issue").cast(pa.int8())).as_py() or 0.0)

    def summary(self, datalab: bool) -> LabelQualitySummary:
        """The counts, for the asset's metadata and the CLI (outliers and near-duplicates only
        when ``datalab`` ran)."""

        def flagged(name: str) -> int:
            return sum(self.table.column(name).to_pylist())

        return LabelQualitySummary(
            label_issues=flagged("is_label_issue"),
            flagged_share=round(self.flagged_share(), 4),
            outliers=flagged("is_outlier") if datalab else None,
            near_duplicates=flagged("is_near_duplicate") if datalab else None,
            rows=self.table.num_rows,
        )

    def per_class(self, classes: int) -> list[tuple[int, int, int]]:
        """(class, samples, label issues) by given label, for every class 0..K-1."""
        given = self.table.column("given_label").to_numpy()
        issue = self.table.column("is_label_issue").to_numpy(zero_copy_only=False).astype(bool)
        totals = np.bincount(given, minlength=classes)
        flagged = np.bincount(given[issue], minlength=classes)
        return [(k, int(totals[k]), int(flagged[k])) for k in range(classes)]

    def suspects(self, count: int = 20) -> pa.Table:
        """The ``count`` lowest-quality label issues, worst first."""
        issues = self.table.filter(self.table.column("is_label_issue"))
        order = pc.sort_indices(issues, sort_keys=[("label_quality", "ascending")])
        return issues.take(order).slice(0, count)

    def suspect_grid(self, samples: pa.Table, class_names: list[str], count: int = 20) -> bytes:
        """PNG: the most suspect images with given and suggested label."""
        worst = self.suspects(count)
        ids = worst.column("sample_id").to_pylist()
        chosen = samples.filter(pc.is_in(samples.column("sample_id"), pa.array(ids, pa.string())))
        data = decode_samples(chosen)
        image_of = dict(zip(data.sample_ids, data.images, strict=True))
        items = [
            (
                image_of[r["sample_id"]],
                f"{class_names[r['given_label']]}→{class_names[r['suggested_label']]}",
            )
            for r in worst.to_pylist()
        ]
        rows = [items[i : i + 10] for i in range(0, len(items), 10)] or [[]]
        return image_grid(rows, "Most suspect labels: given → suggested")


@dataclass(frozen=True, kw_only=True)
class LabelQualitySummary(StageSummary):
    """The summary of label quality: label issues and their share of the training samples,
    outliers and near-duplicates (None without Datalab)."""

    label_issues: int
    flagged_share: float
    outliers: int | None = None
    near_duplicates: int | None = None
    rows: int = field(metadata=logged(key=ROW_COUNT))


def assess_labels(oof: pa.Table, options: LabelQualityOptions | None = None) -> LabelQuality:
    """cleanlab on out-of-fold predictions (and Datalab on the embeddings).

    Parameters
    ----------
    oof : pa.Table
        An ``oof_predictions`` table: ``sample_id``, ``label``, ``pred_probs`` (K,),
        ``embedding`` (D,).
    options : LabelQualityOptions, optional

    Raises
    ------
    DatasetError
        When labels fall outside the pred_probs width or the table is empty.
    """
    from cleanlab.filter import find_label_issues  # imported when used: sklearn takes seconds
    from cleanlab.rank import get_label_quality_scores

    options = options or LabelQualityOptions()
    labels = np.asarray(oof.column("label").to_numpy(), np.int64)
    pred_probs = matrix_column(oof, "pred_probs")
    if len(labels) == 0:
        raise DatasetError(
            "out-of-fold predictions for at least one sample",
            "none",
            "re-materialize oof_predictions",
        )
    if labels.max() >= pred_probs.shape[1] or labels.min() < 0:
        raise DatasetError(
            f"labels in [0, {pred_probs.shape[1]}) to match pred_probs",
            f"{labels.min()}..{labels.max()}",
            "re-materialize oof_predictions",
        )
    quality = get_label_quality_scores(labels, pred_probs, method=options.method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes without predictions
        issues = find_label_issues(labels, pred_probs, filter_by=options.filter_by, n_jobs=1)
    oof_pred = pred_probs.argmax(axis=1).astype(np.int64)
    ids = oof.column("sample_id").to_pylist()
    columns: dict[str, Any] = {
        "sample_id": ids,
        "given_label": labels,
        "oof_pred": oof_pred,
        "label_quality": quality.astype(np.float64),
        "is_label_issue": issues.astype(bool),
        "suggested_label": np.where(issues, oof_pred, labels),
    }
    imbalance: dict[str, Any] = {}
    summary: list[dict[str, Any]] = []
    empty = [None] * len(ids)
    if options.datalab:
        found, imbalance, summary = _datalab(labels, matrix_column(oof, "embedding"), ids)
        columns.update(found)
    else:
        columns.update({name: empty for name in LABEL_QUALITY_SCHEMA.names[6:]})
    table = pa.table(columns, schema=LABEL_QUALITY_SCHEMA)
    meta = {"method": options.method, "filter_by": options.filter_by, "datalab": options.datalab}
    table = table.replace_schema_metadata(table_metadata("label_quality", "oof_predictions", meta))
    return LabelQuality(table, imbalance, summary)


def _datalab(
    labels: np.ndarray, embeddings: np.ndarray, ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Outliers, near-duplicates and class imbalance from cleanlab Datalab."""
    from cleanlab import Datalab  # imports Hugging Face datasets: only when used

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    k = min(10, len(ids) - 1)  # Datalab's default neighbourhood, smaller for tiny datasets
    checks: dict[str, dict[str, Any]] = {"class_imbalance": {}}
    if k >= 1:
        checks.update({"outlier": {"k": k}, "near_duplicate": {"k": k}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(features=embeddings, issue_types=checks)
    n = len(ids)
    outlier = _issues(lab, "outlier")
    dup = _issues(lab, "near_duplicate")
    found: dict[str, Any] = {
        "outlier_score": [None] * n,
        "is_outlier": [None] * n,
        "near_duplicate_score": [None] * n,
        "is_near_duplicate": [None] * n,
        "near_duplicate_group": [None] * n,
    }
    if outlier is not None:
        found["outlier_score"] = outlier["outlier_score"].to_numpy(np.float64)
        found["is_outlier"] = outlier["is_outlier_issue"].to_numpy(bool)
    if dup is not None:
        flagged = dup["is_near_duplicate_issue"].to_numpy(bool)
        found["near_duplicate_score"] = dup["near_duplicate_score"].to_numpy(np.float64)
        found["is_near_duplicate"] = flagged
        found["near_duplicate_group"] = _duplicate_groups(
            dup["near_duplicate_sets"].tolist(), flagged, ids
        )
    imbalance_rows = _issues(lab, "class_imbalance")
    imbalance: dict[str, Any] = {}
    if imbalance_rows is not None:
        info = lab.get_info("class_imbalance")
        imbalance = {
            "is_issue": bool(imbalance_rows["is_class_imbalance_issue"].any()),
            "score": float(imbalance_rows["class_imbalance_score"].min()),
            "rarest_class": str(info.get("Rarest Class", "NA")),
            "threshold": float(info.get("threshold", float("nan"))),
        }
    summary = [
        {"issue_type": str(r.issue_type), "score": float(r.score), "num_issues": int(r.num_issues)}
        for r in lab.get_issue_summary().itertuples()
    ]
    return found, imbalance, summary


def _issues(lab: Any, issue_type: str) -> Any:
    """Datalab's rows for ``issue_type``, or None when Datalab could not check it.

    Datalab skips a check it cannot run (too few samples for its neighbour graph, say); the
    columns of that check then stay null and its summary row says so.
    """
    try:
        return lab.get_issues(issue_type)
    except ValueError:
        return None


def _duplicate_groups(sets: list, flagged: np.ndarray, ids: list[str]) -> list[str | None]:
    """Connected components of the near-duplicate sets, named by their first sample_id."""
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, members in enumerate(sets):
        for j in np.asarray(members, dtype=np.int64).tolist():
            a, b = root(i), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [ids[root(i)] if flagged[i] else None for i in range(len(ids))]


def plant_label_noise(
    labels: np.ndarray, share: float, classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Flip a known share of labels to a different, uniformly chosen class.

    Parameters
    ----------
    labels : np.ndarray
        (N,) int in [0, classes).
    share : float
        In [0, 1]: round(share * N) labels are flipped.
    classes : int
    seed : int
        Seeds a local generator (the global one is untouched).

    Returns
    -------
    (noisy, flipped)
        (N,) int64 labels and (N,) bool mask of the flipped rows.
    """
    if not 0 <= share <= 1:
        raise RobustDataError("a noise share in [0, 1]", str(share), "pass e.g. 0.1")
    rng = np.random.default_rng(seed)
    n = len(labels)
    chosen = rng.choice(n, size=round(share * n), replace=False)
    noisy = np.asarray(labels, np.int64).copy()
    noisy[chosen] = (noisy[chosen] + rng.integers(1, classes, size=len(chosen))) % classes
    flipped = np.zeros(n, bool)
    flipped[chosen] = True
    return noisy, flipped


def check_label_quality(quality: pa.Table, oof: pa.Table) -> CheckOutcome:
    """``label_quality``: schema, one row per out-of-fold row, scores in [0, 1], no NaN."""
    problems = schema_problems(quality, LABEL_QUALITY_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": quality.num_rows})
    problems += unique_problems(quality, "sample_id")
    if quality.num_rows != oof.num_rows:
        problems.append(f"{quality.num_rows} rows for {oof.num_rows} out-of-fold rows")
    problems += nan_problems(quality)
    for name in ("label_quality", "outlier_score", "near_duplicate_score"):
        problems += range_problems(quality, name, 0.0, 1.0, "scores")
    issues = int(pc.sum(quality.column("is_label_issue").cast(pa.int64())).as_py() or 0)
    return CheckOutcome(problems, {"rows": quality.num_rows, "label_issues": issues})
