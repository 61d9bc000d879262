"""Data checks on every table: schema, no NaN, values in range, class balance, conservation.

Each check takes the table (and what it must agree with) and returns a :class:`CheckOutcome`
listing every problem found; an empty list passes. The Dagster assets turn outcomes into
blocking asset checks, so bad data stops before downstream assets consume it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.curation.policy import LEDGER_SCHEMA
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.label_quality.oof import OOF_SCHEMA
from robust_data.report.build import REPORT_SCHEMA
from robust_data.report.testset import CORRUPTED_SCHEMA, corrupted_jobs
from robust_data.scoring.reference import REFERENCE_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.schema import REJECTS_SCHEMA, SAMPLES_SCHEMA, column_by_id, read_params
from robust_data.store.store import exists_anywhere, sha256_anywhere
from robust_data.variants.make import VARIANTS_SCHEMA

#: Most problems listed in one outcome (the count is always exact).
_SHOWN = 5


@dataclass
class CheckOutcome:
    """The result of one check.

    Attributes
    ----------
    problems : list of str
        One line per problem found; empty when the check passed.
    metadata : dict
        JSON-serialisable figures the check looked at (row counts, ranges, ...).
    """

    problems: list[str] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``ok`` or the problems, the first few spelled out."""
        if self.passed:
            return "ok"
        shown = "; ".join(self.problems[:_SHOWN])
        more = len(self.problems) - _SHOWN
        return shown + (f"; and {more} more" if more > 0 else "")


def schema_problems(table: pa.Table, schema: pa.Schema) -> list[str]:
    """Columns missing, unexpected or of the wrong type; nulls in non-nullable columns."""
    problems = []
    found = set(table.schema.names)
    missing = [n for n in schema.names if n not in found]
    extra = [n for n in table.schema.names if n not in schema.names]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    for wanted in schema:
        if wanted.name not in found:
            continue
        column = table.column(wanted.name)
        if column.type != wanted.type:
            problems.append(f"column {wanted.name} is {column.type}, expected {wanted.type}")
        if not wanted.nullable and column.null_count:
            problems.append(f"column {wanted.name} has {column.null_count} nulls")
    return problems


def nan_problems(table: pa.Table, columns: list[str] | None = None) -> list[str]:
    """NaN or infinite values in float columns (and float lists) of ``table``."""
    problems = []
    for name in columns or table.schema.names:
        column = table.column(name)
        values = column
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            values = pc.list_flatten(column)
        if not pa.types.is_floating(values.type):
            continue
        # Nulls are the schema check's business: only the present values count here.
        array = values.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            problems.append(f"column {name} has {bad} NaN or infinite values")
    return problems


def range_problems(
    table: pa.Table, column: str, low: float, high: float, what: str = "values"
) -> list[str]:
    """Non-null values of ``column`` outside [low, high]."""
    values = table.column(column).drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    outside = values[(values < low) | (values > high)]
    if outside.size:
        return [
            f"{outside.size} {what} of {column} outside [{low:g}, {high:g}] (e.g. {outside[0]:g})"
        ]
    return []


def _unique_problems(table: pa.Table, column: str) -> list[str]:
    ids = table.column(column)
    repeated = ids.length() - pc.count_distinct(ids).as_py()
    return [f"{repeated} repeated {column} values"] if repeated else []


def _agreement_problems(
    table: pa.Table, samples: pa.Table, id_column: str, label_column: str, what: str
) -> list[str]:
    """Every id of ``table`` is a sample, with the sample's label."""
    ids = table.column(id_column).to_pylist()
    labels = column_by_id(samples, ids, "label")  # None for an id that is not a sample
    unknown = [i for i, y in zip(ids, labels, strict=True) if y is None]
    if unknown:
        return [f"{len(unknown)} {what} not in raw_samples (e.g. {unknown[0]!r})"]
    given = table.column(label_column).to_pylist()
    wrong = [i for i, y, g in zip(ids, labels, given, strict=True) if y != g]
    return [f"{len(wrong)} {what} disagree with raw_samples' label"] if wrong else []


def check_samples(samples: pa.Table) -> CheckOutcome:
    """``raw_samples``: schema, unique ids, labels 0..K-1 named consistently, both splits' sizes.

    Fails on: a schema mismatch, repeated sample_ids, a negative label, a label with two names,
    a split other than train/test, or fewer than two classes in train.
    """
    problems = schema_problems(samples, SAMPLES_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": samples.num_rows})
    problems += _unique_problems(samples, "sample_id")
    problems += range_problems(samples, "label", 0, math.inf, "labels")
    pairs = pc.unique(
        pc.binary_join_element_wise(
            pc.cast(samples.column("label"), pa.string()), samples.column("label_name"), "\x00"
        )
    ).to_pylist()
    labels = [p.split("\x00", 1)[0] for p in pairs]
    if len(labels) != len(set(labels)):
        problems.append("a label has more than one label_name")
    splits = set(pc.unique(samples.column("split")).to_pylist())
    if splits - {"train", "test"}:
        problems.append(f"unknown splits {sorted(splits - {'train', 'test'})}")
    train = samples.filter(pc.equal(samples.column("split"), "train"))
    classes = pc.count_distinct(train.column("label")).as_py() if train.num_rows else 0
    if classes < 2:
        problems.append(f"{classes} classes in the train split, expected at least 2")
    counts = {s: int(pc.sum(pc.equal(samples.column("split"), s)).as_py() or 0) for s in splits}
    return CheckOutcome(problems, {"rows": samples.num_rows, "classes": classes, **counts})


def check_rejects(rejects: pa.Table) -> CheckOutcome:
    """``ingest_rejects``: schema, and every row says why."""
    problems = schema_problems(rejects, REJECTS_SCHEMA)
    if not problems:
        empty = int(pc.sum(pc.equal(pc.utf8_length(rejects.column("reason")), 0)).as_py() or 0)
        if empty:
            problems.append(f"{empty} rejects without a reason")
    return CheckOutcome(problems, {"rows": rejects.num_rows})


def check_model_table(table: pa.Table, schema: pa.Schema = REFERENCE_SCHEMA) -> CheckOutcome:
    """A model table (reference or retrained): accuracies in [0, 1], weight files match sha256.

    Fails when a weight file is missing or its bytes do not hash to the recorded sha256.
    """
    problems = schema_problems(table, schema)
    if problems:
        return CheckOutcome(problems, {"rows": table.num_rows})
    if table.num_rows == 0:
        problems.append("no model rows")
    problems += nan_problems(table)
    for name in ("train_accuracy", "test_accuracy"):
        if name in table.schema.names:
            problems += range_problems(table, name, 0.0, 1.0, "accuracies")
    paths, shas = table.column("path").to_pylist(), table.column("sha256").to_pylist()
    for path, sha in zip(paths, shas, strict=True):
        if not exists_anywhere(path):
            problems.append(f"weight file {path} is missing")
        elif sha256_anywhere(path) != sha:
            problems.append(f"weight file {path} does not match its sha256 {sha[:12]}")
    return CheckOutcome(problems, {"rows": table.num_rows})


def check_rpr_scores(scores: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``rpr_scores``: schema, one row per scored sample, steps in 1..max_steps, flags agree.

    Fails when: ids repeat or are not samples, labels differ from raw_samples, steps_to_flip
    is outside 1..max_steps, ``robust`` disagrees with a null steps_to_flip, ``clean_correct``
    disagrees with ``clean_pred == label``, or a flip predicts the label itself.
    """
    problems = schema_problems(scores, RPR_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": scores.num_rows})
    problems += _unique_problems(scores, "sample_id")
    problems += _agreement_problems(scores, samples, "sample_id", "label", "scored samples")
    max_steps = int(pc.max(scores.column("max_steps")).as_py() or 0)
    problems += range_problems(scores, "steps_to_flip", 1, max_steps, "steps")
    steps_null = pc.is_null(scores.column("steps_to_flip"))
    if pc.all(pc.equal(steps_null, scores.column("robust"))).as_py() not in (True, None):
        problems.append("robust disagrees with a null steps_to_flip")
    correct = pc.equal(scores.column("clean_pred"), scores.column("label"))
    if pc.all(pc.equal(correct, scores.column("clean_correct"))).as_py() not in (True, None):
        problems.append("clean_correct disagrees with clean_pred == label")
    same = pc.equal(scores.column("flip_pred"), scores.column("label"))
    if pc.any(same).as_py():
        problems.append("a flip_pred equals the label (a flip must change the prediction)")
    robust = scores.column("robust").to_numpy(zero_copy_only=False)
    return CheckOutcome(
        problems,
        {
            "rows": scores.num_rows,
            "max_steps": max_steps,
            "robust_fraction": round(float(robust.mean()), 4) if robust.size else None,
        },
    )


def check_oof(oof: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``oof_predictions``: schema, no NaN, each row's probabilities in [0, 1] summing to 1."""
    problems = schema_problems(oof, OOF_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": oof.num_rows})
    problems += _unique_problems(oof, "sample_id")
    problems += _agreement_problems(oof, samples, "sample_id", "label", "training samples")
    problems += nan_problems(oof)
    if oof.num_rows and not problems:
        probs = np.asarray(oof.column("pred_probs").to_pylist(), np.float64)
        if probs.min() < 0 or probs.max() > 1:
            problems.append("pred_probs outside [0, 1]")
        off = np.abs(probs.sum(axis=1) - 1.0) > 1e-3
        if off.any():
            problems.append(f"{int(off.sum())} rows of pred_probs do not sum to 1")
    return CheckOutcome(problems, {"rows": oof.num_rows})


def check_label_quality(quality: pa.Table, oof: pa.Table) -> CheckOutcome:
    """``label_quality``: schema, one row per out-of-fold row, scores in [0, 1], no NaN."""
    problems = schema_problems(quality, LABEL_QUALITY_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": quality.num_rows})
    problems += _unique_problems(quality, "sample_id")
    if quality.num_rows != oof.num_rows:
        problems.append(f"{quality.num_rows} rows for {oof.num_rows} out-of-fold rows")
    problems += nan_problems(quality)
    for name in ("label_quality", "outlier_score", "near_duplicate_score"):
        problems += range_problems(quality, name, 0.0, 1.0, "scores")
    issues = int(pc.sum(quality.column("is_label_issue").cast(pa.int64())).as_py() or 0)
    return CheckOutcome(problems, {"rows": quality.num_rows, "label_issues": issues})


def check_variants(variants: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``variants``: schema, unique ids, every parent a sample with the same label and split."""
    problems = schema_problems(variants, VARIANTS_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": variants.num_rows})
    problems += _unique_problems(variants, "variant_id")
    problems += _agreement_problems(variants, samples, "parent_sample_id", "label", "parents")
    problems += range_problems(variants, "severity", 1, 5, "severities")
    return CheckOutcome(problems, {"rows": variants.num_rows})


def class_balance(counts: Mapping[int, int]) -> float:
    """Imbalance of per-class counts: 1 - smallest / largest, in [0, 1]; 0 is balanced."""
    values = [v for v in counts.values()]
    if not values or max(values) == 0:
        return 1.0
    return 1.0 - min(values) / max(values)


def check_class_balance(curated: pa.Table, classes: int, tolerance: float) -> CheckOutcome:
    """``curated_samples``: every class present and 1 - min/max count <= ``tolerance``.

    Parameters
    ----------
    curated : pa.Table
        The kept samples (samples schema).
    classes : int
        K, the dataset's class count: a class with no kept sample counts as 0.
    tolerance : float
        In [0, 1]: 0 demands equal counts, 1 accepts anything but an empty table.
    """
    problems = schema_problems(curated, SAMPLES_SCHEMA)
    labels = curated.column("label").to_numpy() if "label" in curated.schema.names else []
    counts = {k: int(np.count_nonzero(np.asarray(labels) == k)) for k in range(classes)}
    imbalance = class_balance(counts)
    if curated.num_rows == 0:
        problems.append("no sample kept")
    elif imbalance > tolerance + 1e-12:
        smallest = min(counts, key=counts.__getitem__)
        largest = max(counts, key=counts.__getitem__)
        problems.append(
            f"class imbalance {imbalance:.3f} (class {smallest}: {counts[smallest]}, class "
            f"{largest}: {counts[largest]}) above the policy's tolerance {tolerance:g}"
        )
    return CheckOutcome(
        problems,
        {
            "imbalance": round(imbalance, 4),
            "tolerance": tolerance,
            "per_class": {str(k): v for k, v in counts.items()},
        },
    )


def split_rows(samples: pa.Table, split: str = "train") -> int:
    """Rows of ``samples`` in ``split`` (the input count a ledger must account for)."""
    return int(pc.sum(pc.equal(samples.column("split"), split).cast(pa.int64())).as_py() or 0)


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


def _parquet_rows(location: str) -> int:
    """Rows in the Parquet file at a local path or an fsspec URL (its footer only is read)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(location, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def check_export(table: pa.Table) -> CheckOutcome:
    """``curated_dataset``: every exported file exists, hashes to its sha256, has its rows.

    A path may be local or an fsspec URL (an export published to the store URL); a URL's
    object is read back through fsspec.
    """
    problems = []
    for row in table.to_pylist():
        location = row["path"]
        if not exists_anywhere(location):
            problems.append(f"{location} is missing")
            continue
        if sha256_anywhere(location) != row["sha256"]:
            problems.append(f"{location} does not match its sha256")
        try:
            rows = _parquet_rows(location)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            problems.append(f"{location} is not a readable Parquet file ({error})")
            continue
        if rows != row["rows"]:
            problems.append(f"{location} has {rows} rows, expected {row['rows']}")
    if table.num_rows == 0:
        problems.append("no exported split")
    return CheckOutcome(problems, {"files": table.num_rows})


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


def check_corrupted_test(table: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``corrupted_test``: schema; every job holds exactly the test split's ids and labels, in
    order; every row's pixels have the image's byte count."""
    problems = schema_problems(table, CORRUPTED_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": table.num_rows})
    test = samples.filter(pc.equal(samples.column("split"), "test"))
    ids, labels = test.column("sample_id").to_pylist(), test.column("label").to_pylist()
    jobs = corrupted_jobs(table)
    if not ids:
        problems.append("the dataset has no test split")
    if table.num_rows != len(ids) * len(jobs):
        problems.append(
            f"{table.num_rows} rows, expected {len(ids)} test images x {len(jobs)} jobs"
        )
    else:
        for j, (corruption, severity) in enumerate(jobs):
            rows = table.slice(j * len(ids), len(ids))
            if (
                rows.column("sample_id").to_pylist() != ids
                or rows.column("label").to_pylist() != labels
            ):
                problems.append(
                    f"{corruption}/{severity}: ids or labels differ from the test split"
                )
    params = read_params(table.schema)
    width = int(np.prod(params.get("shape", [0])))
    lengths = pc.binary_length(table.column("pixels"))
    wrong = table.num_rows - pc.sum(pc.equal(lengths, width)).as_py() if table.num_rows else 0
    if wrong:
        problems.append(f"{wrong} rows whose pixels are not {width} bytes")
    return CheckOutcome(problems, {"rows": table.num_rows, "jobs": len(jobs), "samples": len(ids)})


#: Guards (warnings, not blocking): curation keeps at least this share of the training set...
MIN_KEPT_SHARE = 0.5
#: ... and a retrained model loses at most this much test accuracy against the reference.
MAX_ACCURACY_LOSS = 0.01


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


def check_accuracy_loss(
    retrained: pa.Table, reference_accuracy: float | None = None, limit: float = MAX_ACCURACY_LOSS
) -> CheckOutcome:
    """``retrained_model``: no model's mean test accuracy is more than ``limit`` below the
    reference's.

    Accuracies are averaged over the table's seeds per model; the reference's is the mean of
    its ``reference`` rows, or ``reference_accuracy`` when the table has none. ``limit`` and
    accuracies in [0, 1]; higher accuracy is better. Passes when there is no reference figure.
    """
    rows = [r for r in retrained.to_pylist() if r["test_accuracy"] is not None]
    means = {
        m: float(np.mean([r["test_accuracy"] for r in rows if r["model"] == m]))
        for m in dict.fromkeys(r["model"] for r in rows)
    }
    reference = means.pop("reference", reference_accuracy)
    problems = []
    worst = {}
    for model, accuracy in means.items():
        if reference is None:
            continue
        loss = reference - accuracy
        worst[model] = round(loss, 4)
        if loss > limit:
            problems.append(
                f"{model} test accuracy {accuracy:.4f} is {loss * 100:.1f} pt below the "
                f"reference's {reference:.4f} (limit {limit * 100:.0f} pt, means over seeds): "
                "expected curation not to cost accuracy; keep more data (clean or focus preset)"
            )
    return CheckOutcome(problems, {"accuracy_loss": worst})
