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

Review export and import as CSV files are robust_data.curation.reviews_csv's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError
from robust_data.store.lock import home_lock
from robust_data.store.schema import column, table_metadata
from robust_data.store.store import Store

TABLE = "reviews"
DECISIONS = ("keep", "drop", "relabel")
LOCK_NAME = ".reviews.lock"

REVIEWS_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The reviewed sample (raw_samples.sample_id)", nullable=False
        ),
        column("decision", pa.string(), "keep, drop or relabel", nullable=False),
        column("new_label", pa.int64(), "The label to train with; set only for relabel"),
        column("note", pa.string(), "Free text kept with the decision"),
        column(
            "reviewed_at",
            pa.timestamp("us", tz="UTC"),
            "When it was decided (UTC); the latest per sample wins",
            nullable=False,
        ),
        column("source", pa.string(), "browser, csv or api", nullable=False),
    ]
)
"""One row per decision; the latest ``reviewed_at`` (then the later row) per sample wins."""


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
            raise DatasetError(
                f"a decision in {', '.join(DECISIONS)}",
                f"{self.decision!r} for {self.sample_id}",
                "write one of those",
            )
        if (self.decision == "relabel") != (self.new_label is not None):
            raise DatasetError(
                "a new label with relabel and only with it",
                f"decision {self.decision} and new_label {self.new_label} for {self.sample_id}",
                "give new_label with relabel only",
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


def check_reviews(
    reviews: Sequence[Review],
    sample_ids: set[str],
    num_classes: int,
    where: Sequence[str] = (),
) -> None:
    """Refuse decisions about unknown samples or relabels outside ``0..num_classes-1``.

    ``where`` names each decision's origin (``line 3 of reviews.csv``) for the message.

    Raises
    ------
    DatasetError
        One line naming the first bad decision (and where it came from) and how to fix it.
    """
    check_sample_ids([r.sample_id for r in reviews], sample_ids, where)
    for k, review in enumerate(reviews):
        at = f" on {where[k]}" if k < len(where) else ""
        label = review.new_label
        if label is not None and not 0 <= label < num_classes:
            raise DatasetError(
                f"a new label in 0..{num_classes - 1}",
                f"{label} for {review.sample_id}{at}",
                "relabel to a class index of this dataset",
            )


def check_sample_ids(ids: Sequence[str], known: set[str], where: Sequence[str] = ()) -> None:
    """Refuse the first id that is not one of ``known`` (``where[k]`` names id k's origin).

    Raises
    ------
    DatasetError
        One line with the id, where it came from and where to copy ids from.
    """
    for k, sample_id in enumerate(ids):
        if sample_id not in known:
            at = f" on {where[k]}" if k < len(where) else ""
            raise DatasetError(
                "a sample id of this dataset",
                f"{sample_id!r}{at}",
                "copy ids from the browser or `robust-data query`",
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
    rows = review_rows(reviews, now or datetime.now(UTC), source)
    return append_rows(store, dataset, TABLE, rows, "human review")


def append_rows(
    store: Store, dataset: str, name: str, rows: pa.Table, description: str
) -> pa.Table:
    """Append ``rows`` to table ``name`` of ``dataset`` atomically, under the reviews lock.

    The stored rows are read under the lock (cast to ``rows``' schema), so two writers never
    lose each other's rows; a temporary file is renamed over the old one. Returns the whole
    table written.

    Raises
    ------
    DatasetError
        One line when the store cannot be written (read-only, full disk, no permission).
    """
    with home_lock(store.home, f"recording {name}", name=LOCK_NAME):
        before = rows.schema.empty_table()
        if store.has(name, dataset):
            before = store.read(name, dataset).cast(rows.schema)
        table = pa.concat_tables([before, rows])
        table = table.replace_schema_metadata(table_metadata(name, description, {}))
        try:
            store.write(table, name, dataset)
        except OSError as error:  # a read-only file system, a full disk, no permission
            raise DatasetError(
                "a store you can write",
                f"the {name} of {dataset} cannot be written under {store.tables_root} "
                f"({error.strerror or error})",
                "pass `home` with a folder you can write, or fix its permissions",
                options=("home",),
            ) from None
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
