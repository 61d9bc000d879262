"""Tags on samples: free names a user puts on samples in the browser (``blurry``, ``check``).

Tags live in the ``tags`` table of a dataset (``<store>/tags/<dataset>.parquet``), one row per
change (a tag added to or removed from a sample), appended atomically under the reviews lock
(robust_data.curation.reviews.append_rows). The latest change per (sample, tag) wins. Tags
change nothing in the curation; they are for finding samples again (the grid's tag filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from robust_data.curation.reviews import append_rows, check_sample_ids
from robust_data.errors import DatasetError
from robust_data.explore.filters import parse_tag
from robust_data.store.schema import column
from robust_data.store.store import Store

TABLE = "tags"
TAGS_SCHEMA = pa.schema(
    [
        column(
            "sample_id", pa.string(), "The tagged sample (raw_samples.sample_id)", nullable=False
        ),
        column("tag", pa.string(), "The tag's name", nullable=False),
        column("present", pa.bool_(), "true: tag added; false: tag removed", nullable=False),
        column(
            "tagged_at", pa.timestamp("us", tz="UTC"), "When (UTC); latest wins", nullable=False
        ),
        column("source", pa.string(), "browser or api", nullable=False),
    ]
)
"""One row per change; the latest ``tagged_at`` (then the later row) per (sample, tag) wins."""


def load_tags(store: Store, dataset: str) -> pa.Table:
    """Every recorded tag change of ``dataset`` (:data:`TAGS_SCHEMA`; no rows when none)."""
    if not store.has(TABLE, dataset):
        return TAGS_SCHEMA.empty_table()
    return store.read(TABLE, dataset).cast(TAGS_SCHEMA)


def current_tags(table: pa.Table) -> dict[str, set[str]]:
    """Sample id -> the tags it carries now, from a :data:`TAGS_SCHEMA` table."""
    order = pc.sort_indices(table, sort_keys=[("tagged_at", "ascending")])  # stable
    state: dict[tuple[str, str], bool] = {}
    for row in table.take(order).to_pylist():
        state[(row["sample_id"], row["tag"])] = row["present"]
    tags: dict[str, set[str]] = {}
    for (sample_id, tag), present in state.items():
        if present:
            tags.setdefault(sample_id, set()).add(tag)
    return tags


def record_tags(
    store: Store,
    dataset: str,
    sample_ids: Sequence[str],
    tag: str,
    present: bool = True,
    known: set[str] | None = None,
    source: str = "api",
) -> pa.Table:
    """Add (or, ``present=False``, remove) ``tag`` on samples; the whole tags table after it.

    Parameters
    ----------
    sample_ids : sequence of str
        The samples, each once; at least one.
    tag : str
        A name matching robust_data.explore.filters.TAG (checked here).
    known : set of str, optional
        Every sample id of the dataset; an id outside it is refused.

    Raises
    ------
    DatasetError
        One line for a bad tag, no samples or an unknown sample; nothing is written then.
    """
    name = parse_tag(tag)
    if not sample_ids:
        raise DatasetError("at least one sample to tag", "none", "tick one first")
    if known is not None:
        check_sample_ids(sample_ids, known)
    at = datetime.now(UTC)
    rows = pa.table(
        {
            "sample_id": list(sample_ids),
            "tag": [name] * len(sample_ids),
            "present": [present] * len(sample_ids),
            "tagged_at": [at] * len(sample_ids),
            "source": [source] * len(sample_ids),
        },
        schema=TAGS_SCHEMA,
    )
    return append_rows(store, dataset, TABLE, rows, "sample tags")
