"""Human review of samples: keep, drop or relabel, with a note; the next curation honours it.

Reviews live in the ``reviews`` table of a dataset (``<store>/reviews/<dataset>.parquet``),
one row per decision, appended atomically (read, concatenate, write a temporary file, rename)
under ``<home>/.reviews.lock``, a lock of its own so that the browser can record a decision
while a curation run holds the home's writer lock. The latest decision per sample wins.
Writing reviews never touches another table.

Decisions:

- ``keep``: kept whatever the rules say (the ledger's ``overridden`` names the rule it beat),
  and before any other sample of its class when balancing.
- ``drop``: dropped with the reason ``review_drop``.
- ``relabel``: kept as ``keep`` is, with ``new_label`` as its label in the curated set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError
from robust_data.lock import home_lock
from robust_data.schema import table_metadata
from robust_data.store import Store, write_text_atomic

TABLE = "reviews"
DECISIONS = ("keep", "drop", "relabel")
CSV_COLUMNS = ("sample_id", "decision", "new_label", "note", "reviewed_at")
LOCK_NAME = ".reviews.lock"

REVIEWS_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),  # keep, drop or relabel
        pa.field("new_label", pa.int64()),  # the label to train with; set only for relabel
        pa.field("note", pa.string()),
        pa.field("reviewed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # browser, csv or api
    ]
)
"""One row per decision; the latest ``reviewed_at`` (then the later row) per sample wins."""

#: One line per column of :data:`REVIEWS_SCHEMA`.
REVIEWS_COLUMNS_DOC = {
    "sample_id": "The reviewed sample (raw_samples.sample_id)",
    "decision": "keep, drop or relabel",
    "new_label": "The label to train with; set only for relabel",
    "note": "Free text kept with the decision",
    "reviewed_at": "When it was decided (UTC); the latest per sample wins",
    "source": "browser, csv or api",
}


@dataclass(frozen=True)
class Review:
    """One decision about one sample.

    Attributes
    ----------
    sample_id : str
    decision : str
        ``keep``, ``drop`` or ``relabel``.
    new_label : int or None
        The class index to train with; required for ``relabel``, None otherwise.
    note : str or None
        Free text kept with the decision.
    """

    sample_id: str
    decision: str
    new_label: int | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(
                f"expected a decision in {', '.join(DECISIONS)}; found {self.decision!r} "
                f"for {self.sample_id}"
            )
        if (self.decision == "relabel") != (self.new_label is not None):
            raise ValueError(
                f"expected a new label with relabel and only with it; found decision "
                f"{self.decision} and new_label {self.new_label} for {self.sample_id}"
            )


def empty_reviews() -> pa.Table:
    """A reviews table with no rows."""
    return REVIEWS_SCHEMA.empty_table().replace_schema_metadata(
        table_metadata(TABLE, "human review", {})
    )


def load_reviews(store: Store, dataset: str) -> pa.Table:
    """Every recorded decision of ``dataset`` (:data:`REVIEWS_SCHEMA`; no rows when none)."""
    if not store.has(TABLE, dataset):
        return empty_reviews()
    return store.read(TABLE, dataset).cast(REVIEWS_SCHEMA)


def check_reviews(reviews: Sequence[Review], sample_ids: set[str], num_classes: int) -> None:
    """Refuse decisions about unknown samples or relabels outside ``0..num_classes-1``.

    Raises
    ------
    ValueError
        One line naming the first bad decision and how to fix it.
    """
    for review in reviews:
        if review.sample_id not in sample_ids:
            raise ValueError(
                f"expected a sample id of this dataset; found {review.sample_id!r}; "
                "copy ids from the browser or `robust-data query`"
            )
        label = review.new_label
        if label is not None and not 0 <= label < num_classes:
            raise ValueError(
                f"expected a new label in 0..{num_classes - 1}; found {label} "
                f"for {review.sample_id}"
            )


def review_rows(reviews: Sequence[Review], at: datetime, source: str) -> pa.Table:
    """The rows :func:`record_reviews` appends, all stamped ``at`` (UTC)."""
    return pa.table(
        {
            "sample_id": [r.sample_id for r in reviews],
            "decision": [r.decision for r in reviews],
            "new_label": [r.new_label for r in reviews],
            "note": [r.note or None for r in reviews],
            "reviewed_at": [at] * len(reviews),
            "source": [source] * len(reviews),
        },
        schema=REVIEWS_SCHEMA,
    )


def record_reviews(
    store: Store,
    dataset: str,
    reviews: Sequence[Review],
    source: str = "api",
    now: datetime | None = None,
) -> pa.Table:
    """Append decisions to ``dataset``'s reviews table atomically; the whole table after it.

    Callers check the decisions first (:func:`check_reviews`). Nothing but the reviews
    table is written.
    """
    at = now or datetime.now(UTC)
    with home_lock(store.home, "recording reviews", name=LOCK_NAME):
        table = pa.concat_tables([load_reviews(store, dataset), review_rows(reviews, at, source)])
        table = table.replace_schema_metadata(table_metadata(TABLE, "human review", {}))
        store.write(table, TABLE, dataset)
    return table


def latest_decisions(table: pa.Table) -> dict[str, Review]:
    """Sample id -> its latest decision (by ``reviewed_at``, then by row order)."""
    order = pc.sort_indices(table, sort_keys=[("reviewed_at", "ascending")])  # stable
    latest: dict[str, Review] = {}
    for row in table.take(order).to_pylist():  # equal times keep their row order: later wins
        latest[row["sample_id"]] = Review(
            row["sample_id"], row["decision"], row["new_label"], row["note"]
        )
    return latest


def reviews_csv(table: pa.Table) -> str:
    """The decisions as CSV text (:data:`CSV_COLUMNS`, ISO 8601 times), for review export."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.to_pylist():
        label = "" if row["new_label"] is None else row["new_label"]
        at = row["reviewed_at"].isoformat()
        writer.writerow([row["sample_id"], row["decision"], label, row["note"] or "", at])
    return out.getvalue()


def export_reviews_csv(store: Store, dataset: str, path: Path) -> int:
    """Write ``dataset``'s decisions to ``path`` as CSV (atomic); the number of rows."""
    table = load_reviews(store, dataset)
    write_text_atomic(reviews_csv(table), path)
    return table.num_rows


def parse_reviews_csv(text: str, where: str) -> list[Review]:
    """Decisions from CSV text with at least ``sample_id`` and ``decision`` columns.

    ``new_label`` (for relabel) and ``note`` are optional columns; ``reviewed_at`` is ignored
    (an import is a new decision, stamped when it is recorded).

    Raises
    ------
    DatasetError
        One line naming the file, the line and what was wrong.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = {"sample_id", "decision"} - set(reader.fieldnames or [])
    if missing:
        raise DatasetError(
            "a CSV header with sample_id and decision (optional: new_label, note)",
            f"columns {reader.fieldnames} in {where}",
            "export one with `robust-data review export` to see the layout",
        )
    reviews = []
    for line, row in enumerate(reader, start=2):
        raw_label = (row.get("new_label") or "").strip()
        try:
            label = int(raw_label) if raw_label else None
            reviews.append(
                Review(row["sample_id"].strip(), row["decision"].strip(), label, row.get("note"))
            )
        except ValueError as exc:
            raise DatasetError(
                "decisions keep, drop or relabel (with an integer new_label)",
                f"{exc} on line {line} of {where}",
                "fix that line",
            ) from None
    return reviews
