"""The generic data checks every table's check is built from: schema, no NaN, values in range,
unique ids, agreement with ``raw_samples``, class balance; and the checks of the tables whose
schemas live in the store (``raw_samples``, ``ingest_rejects``, ``curated_samples``).

Each check takes the table (and what it must agree with) and returns a :class:`CheckOutcome`
listing every problem found; an empty list passes. Each stage defines its own table's check
beside the table's schema (e.g. :func:`robust_data.scoring.rpr.table.check_rpr_scores`) on top
of these helpers; the Dagster assets turn outcomes into blocking asset checks, so bad data
stops before downstream assets consume it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.store.schema import REJECTS_SCHEMA, SAMPLES_SCHEMA, column_by_id

#: Most problems listed in one outcome (the count is always exact).
_SHOWN = 5

#: A figure a check reports: a JSON value (the assets show it as the check's metadata).
Figure = int | float | str | list[Any] | dict[str, Any] | None


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
    metadata: dict[str, Figure] = field(default_factory=dict)

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


def unique_problems(table: pa.Table, column: str) -> list[str]:
    """Repeated values in ``column`` of ``table`` (an id column whose values must be unique)."""
    ids = table.column(column)
    repeated = ids.length() - pc.count_distinct(ids).as_py()
    return [f"{repeated} repeated {column} values"] if repeated else []


def agreement_problems(
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
    problems += unique_problems(samples, "sample_id")
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
