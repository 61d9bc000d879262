"""The sample index behind ``robust-data browse``: every sample with every score, through DuckDB.

:class:`SampleIndex` reads a dataset's stored tables once (raw_samples without its images,
rpr_scores, label_quality, curation_ledger, variants, oof_predictions) into an in-memory
DuckDB table, one row per sample, and answers filtered, sorted pages of it. Filters become
SQL parameters, never SQL text; sort columns come from :data:`SORTABLE`. Images are served
from the stored PNG bytes. Nothing here writes; reviews are recorded by
robust_data.curation.reviews.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.curation.ledger import LEDGER_SCHEMA
from robust_data.curation.reviews import Review, latest_decisions, load_reviews
from robust_data.explore.embedding import project_2d, projection_method, seeded_rows
from robust_data.explore.filters import RANGES, SampleFilter
from robust_data.explore.tags import current_tags, load_tags
from robust_data.ingest.arrays import class_names
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.store import Store
from robust_data.variants.make import VARIANTS_SCHEMA

if TYPE_CHECKING:
    from torch import nn

#: Columns a page may be sorted by (any score), in the order the browser offers them.
SORTABLE = (
    "sample_id",
    "label",
    "steps_to_flip",
    "label_quality",
    "outlier_score",
    "near_duplicate_score",
    "clean_pred",
    "suggested_label",
)
PAGE_SIZE = 60
EMBEDDING_POINTS = 3000
_SAMPLES_SQL = """
CREATE TABLE samples AS
SELECT s.sample_id, s.split, s.label, s.label_name,
       r.clean_pred, r.clean_correct, r.steps_to_flip, r.robust, r.flip_pred, r.scheme,
       r.seed AS rpr_seed, r.max_steps,
       q.label_quality, q.is_label_issue, q.suggested_label, q.outlier_score, q.is_outlier,
       q.near_duplicate_score, q.near_duplicate_group,
       l.kept, l.reason,
       (SELECT count(*) FROM variants v WHERE v.parent_sample_id = s.sample_id) AS variants
FROM raw s
LEFT JOIN rpr r USING (sample_id)
LEFT JOIN quality q USING (sample_id)
LEFT JOIN ledger l USING (sample_id)
"""


_SHOWN_SQL = """
CREATE VIEW shown AS
SELECT samples.*,
       (SELECT string_agg(t.tag, ', ' ORDER BY t.tag) FROM tags t
        WHERE t.sample_id = samples.sample_id) AS tags
FROM samples
"""


def _order(sort: str, descending: bool) -> str:
    """The ORDER BY of a page: ``sort`` (one of SORTABLE) with NULLs last, then the id."""
    return f"{sort} {'DESC' if descending else 'ASC'} NULLS LAST, sample_id"


#: The tables an index is built from (reviews and tags are re-read on their own).
INDEXED_TABLES = (
    "raw_samples",
    "rpr_scores",
    "label_quality",
    "curation_ledger",
    "variants",
    "oof_predictions",
    "reference_model",
)


#: What people write beside the index (the browser, ``review import``, the API): re-read alone.
NOTE_TABLES = ("reviews", "tags")


def tables_stamp(
    store: Store, dataset: str, tables: tuple[str, ...] = INDEXED_TABLES
) -> tuple[int | None, ...]:
    """When each of ``tables`` of ``dataset`` was last written (ns; None: absent).

    A changed stamp means the stored tables changed (a new curation, a re-ingest) and an
    index built before is stale. Stores at a URL have no local times: always ``()``.
    """
    if store.tables_url:
        return ()
    stamps: list[int | None] = []
    for table in tables:
        try:
            stamps.append(store.table_path(table, dataset).stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _or_empty(store: Store, table: str, dataset: str, schema: pa.Schema) -> pa.Table:
    """A stored table partition, or an empty one with its schema when it is not made yet."""
    if store.has(table, dataset):
        return store.read(table, dataset)
    return schema.empty_table()


class SampleIndex:
    """One dataset's samples with their scores, ready for filtered pages.

    Parameters
    ----------
    store : Store
    dataset : str
        A dataset with ``raw_samples`` stored.

    Raises
    ------
    FileNotFoundError
        When the dataset has no ``raw_samples`` (ingest it first).
    """

    def __init__(self, store: Store, dataset: str) -> None:
        self.store = store
        self.dataset = dataset
        self.stamp = tables_stamp(store, dataset)  # before reading: a later write shows as new
        self.notes_stamp = tables_stamp(store, dataset, NOTE_TABLES)
        raw = store.read("raw_samples", dataset)
        self._row = {sid: i for i, sid in enumerate(raw.column("sample_id").to_pylist())}
        self._images = raw.column("image")
        self.class_names = class_names(raw)
        self.variants = _or_empty(store, "variants", dataset, VARIANTS_SCHEMA)
        self._lock = threading.Lock()
        self._con = duckdb.connect(":memory:")
        self._con.register("raw", raw.drop_columns(["image"]))
        self._con.register("rpr", _or_empty(store, "rpr_scores", dataset, RPR_SCHEMA))
        quality = _or_empty(store, "label_quality", dataset, LABEL_QUALITY_SCHEMA)
        self._con.register("quality", quality)
        self._con.register("ledger", _or_empty(store, "curation_ledger", dataset, LEDGER_SCHEMA))
        self._con.register("variants", self.variants.drop_columns(["image"]))
        self._con.execute(_SAMPLES_SQL)
        self._con.execute("ALTER TABLE samples ADD COLUMN review VARCHAR")
        self._con.execute("ALTER TABLE samples ADD COLUMN new_label BIGINT")
        self._con.execute("CREATE TABLE tags (sample_id VARCHAR, tag VARCHAR)")
        self._con.execute("CREATE TABLE embedding_xy (sample_id VARCHAR, x DOUBLE, y DOUBLE)")
        self._con.execute(_SHOWN_SQL)
        self._projected: dict[str, list[dict[str, Any]]] = {}
        self.refresh_reviews()
        self.refresh_tags()

    @property
    def sample_ids(self) -> set[str]:
        """Every sample id of the dataset."""
        return set(self._row)

    # -- reviews -------------------------------------------------------------------------

    def refresh_reviews(self) -> dict[str, Review]:
        """Re-read the reviews table into the index; the latest decision per sample."""
        latest = latest_decisions(load_reviews(self.store, self.dataset))
        table = pa.table(
            {
                "sid": list(latest),
                "decision": [r.decision for r in latest.values()],
                "label": pa.array([r.new_label for r in latest.values()], pa.int64()),
            }
        )
        with self._lock:
            self._con.register("latest", table)
            self._con.execute("UPDATE samples SET review = NULL, new_label = NULL")
            self._con.execute(
                "UPDATE samples SET review = latest.decision, new_label = latest.label "
                "FROM latest WHERE samples.sample_id = latest.sid"
            )
            self._con.unregister("latest")
        return latest

    def refresh_tags(self) -> dict[str, set[str]]:
        """Re-read the tags table into the index; sample id -> its tags."""
        tags = current_tags(load_tags(self.store, self.dataset))
        pairs = sorted((sid, tag) for sid, names in tags.items() for tag in names)
        table = pa.table(
            {"sid": [p[0] for p in pairs], "tag": [p[1] for p in pairs]},
            schema=pa.schema([("sid", pa.string()), ("tag", pa.string())]),
        )
        with self._lock:
            self._con.register("current", table)
            self._con.execute("DELETE FROM tags")
            self._con.execute("INSERT INTO tags SELECT sid, tag FROM current")
            self._con.unregister("current")
        return tags

    def refresh_notes(self, force: bool = False) -> bool:
        """Re-read reviews and tags when they were written since (by anyone), or ``force``
        (after a write of this process: a coarse file clock may not show it); whether they were.
        """
        stamp = tables_stamp(self.store, self.dataset, NOTE_TABLES)
        if stamp == self.notes_stamp and not force:
            return False
        self.notes_stamp = stamp
        self.refresh_reviews()
        self.refresh_tags()
        return True

    def tag_names(self) -> list[str]:
        """Every tag some sample carries now, sorted."""
        return [r["tag"] for r in self._rows("SELECT DISTINCT tag FROM tags ORDER BY 1", [])]

    # -- pages ---------------------------------------------------------------------------

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._con.execute(sql, params)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _condition(self, where: SampleFilter) -> tuple[str, list[Any]]:
        """``where`` as SQL; a box filter first projects the embedding it is drawn on."""
        if where.box is not None:
            self.embedding_2d()
        return where.where()

    def count(self, where: SampleFilter) -> int:
        """How many samples pass ``where``."""
        condition, params = self._condition(where)
        return int(self._rows(f"SELECT count(*) AS n FROM shown WHERE {condition}", params)[0]["n"])

    def page(
        self,
        where: SampleFilter,
        sort: str = "sample_id",
        descending: bool = False,
        offset: int = 0,
        limit: int = PAGE_SIZE,
    ) -> list[dict[str, Any]]:
        """Rows of ``samples`` that pass ``where``, sorted (NULLs last), ``limit`` from ``offset``.

        Raises
        ------
        ValueError
            When ``sort`` is not one of :data:`SORTABLE`.
        """
        if sort not in SORTABLE:
            raise ValueError(f"expected a sort column in {', '.join(SORTABLE)}; found {sort!r}")
        condition, params = self._condition(where)
        order = _order(sort, descending)
        sql = f"SELECT * FROM shown WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"
        return self._rows(sql, [*params, max(1, limit), max(0, offset)])

    def ids(self, where: SampleFilter, limit: int = 1_000_000) -> list[str]:
        """Sample ids that pass ``where``, in id order, at most ``limit``."""
        condition, params = self._condition(where)
        sql = f"SELECT sample_id FROM shown WHERE {condition} ORDER BY sample_id LIMIT ?"
        return [r["sample_id"] for r in self._rows(sql, [*params, limit])]

    def neighbours(
        self, where: SampleFilter, sort: str, descending: bool, sample_id: str
    ) -> tuple[str | None, str | None, int, int]:
        """The samples before and after ``sample_id`` in the grid's order; its 1-based place.

        Returns
        -------
        (previous id or None, next id or None, position, total)
            Position 0 when the sample does not pass ``where``.
        """
        if sort not in SORTABLE:
            raise ValueError(f"expected a sort column in {', '.join(SORTABLE)}; found {sort!r}")
        condition, params = self._condition(where)
        sql = (
            "WITH ranked AS (SELECT sample_id, "
            f"row_number() OVER (ORDER BY {_order(sort, descending)}) AS k "
            f"FROM shown WHERE {condition}) "
            "SELECT (SELECT max(k) FROM ranked) AS total, k, "
            "(SELECT r.sample_id FROM ranked r WHERE r.k = me.k - 1) AS prev, "
            "(SELECT r.sample_id FROM ranked r WHERE r.k = me.k + 1) AS next "
            "FROM ranked me WHERE sample_id = ?"
        )
        rows = self._rows(sql, [*params, sample_id])
        if not rows:
            return None, None, 0, self.count(where)
        row = rows[0]
        return row["prev"], row["next"], int(row["k"]), int(row["total"])

    def histogram(self, prefix: str, where: SampleFilter, bins: int = 20) -> dict[str, Any]:
        """Counts of one score over the samples passing ``where`` without that score's range.

        Parameters
        ----------
        prefix : str
            A key of robust_data.explore.filters.RANGES: ``quality``, ``outlier`` or ``steps``.

        Returns
        -------
        dict
            ``prefix``, ``title``, ``low`` and ``high`` (the axis), ``whole`` (integer axis),
            ``bins`` (list of ``{"low", "high", "count"}``, ``high`` exclusive but the last)
            and ``selected`` (the current ``(min, max)``, None where unset). For steps the
            last value, ``max_steps + 1``, stands for robust samples.
        """
        column, title = RANGES[prefix]
        condition, params = self._condition(where.without(prefix))
        low, high, whole = 0.0, 1.0, prefix == "steps"
        spread, last = bins, math.inf  # bins over [low, high]; whole: the last holds robust
        if whole:
            top = int(self._rows("SELECT max(max_steps) AS m FROM samples", [])[0]["m"] or 1)
            low, high, last = 1.0, float(top + 1), float(top + 1)
            bins = max(2, min(bins, top + 1))
            spread = bins - 1
        width = (min(high, last) - low) / spread
        sql = (
            f"SELECT CASE WHEN {column} >= ? THEN ? "
            f"ELSE least(greatest(floor(({column} - ?) / ?), 0), ?) END AS b, count(*) AS n "
            f"FROM shown WHERE {condition} AND {column} IS NOT NULL GROUP BY b"
        )
        found = self._rows(sql, [last, bins - 1, low, width, spread - 1, *params])
        counts = {int(r["b"]): int(r["n"]) for r in found}
        edges = [low + width * k for k in range(spread + 1)] + ([high] if whole else [])
        return {
            "prefix": prefix,
            "title": title,
            "low": low,
            "high": high,
            "whole": whole,
            "bins": [
                {"low": edges[k], "high": edges[k + 1], "count": counts.get(k, 0)}
                for k in range(bins)
            ],
            "selected": (getattr(where, f"min_{prefix}"), getattr(where, f"max_{prefix}")),
        }

    def sample(self, sample_id: str) -> dict[str, Any] | None:
        """Every score of one sample, or None when the id is unknown."""
        rows = self._rows("SELECT * FROM shown WHERE sample_id = ?", [sample_id])
        return rows[0] if rows else None

    def group_members(self, group: str) -> list[str]:
        """Sample ids of a near-duplicate group, in id order."""
        rows = self._rows(
            "SELECT sample_id FROM samples WHERE near_duplicate_group = ? ORDER BY 1", [group]
        )
        return [r["sample_id"] for r in rows]

    def splits(self) -> list[str]:
        """The splits of the dataset (``train``, ``test``), sorted."""
        return [r["split"] for r in self._rows("SELECT DISTINCT split FROM samples ORDER BY 1", [])]

    def transforms(self) -> list[str]:
        """The transform specs the variants table holds."""
        return sorted(set(self.variants.column("transform").to_pylist()))

    def reasons(self) -> list[str]:
        """Ledger outcomes present (``kept`` and the reasons)."""
        rows = self._rows(
            "SELECT DISTINCT coalesce(reason, 'kept') AS r FROM samples WHERE kept IS NOT NULL", []
        )
        return sorted(r["r"] for r in rows)

    # -- images --------------------------------------------------------------------------

    def image(self, sample_id: str) -> bytes:
        """The stored PNG of a sample; KeyError when unknown."""
        return self._images[self._row[sample_id]].as_py()["bytes"]

    def sample_variants(self, sample_id: str) -> list[dict[str, Any]]:
        """``variant_id``, ``transform`` and ``kind`` of each variant of a sample."""
        mask = pc.equal(self.variants.column("parent_sample_id"), sample_id)
        chosen = self.variants.filter(mask).select(["variant_id", "transform", "kind"])
        return chosen.to_pylist()

    def variant_image(self, variant_id: str) -> bytes:
        """The PNG of one variant; KeyError when unknown."""
        chosen = self.variants.filter(pc.equal(self.variants.column("variant_id"), variant_id))
        if not chosen.num_rows:
            raise KeyError(variant_id)
        return chosen.column("image")[0].as_py()["bytes"]

    # -- read on first use: the embeddings and the reference model ------------------------

    @functools.cached_property
    def _oof(self) -> pa.Table | None:
        """``oof_predictions`` (read when the embedding view first asks), or None."""
        if not self.store.has("oof_predictions", self.dataset):
            return None
        return self.store.read("oof_predictions", self.dataset)

    @functools.cached_property
    def reference_model(self) -> nn.Module:
        """The stored reference model (sha256 checked), loaded once, in eval mode."""
        from robust_data.scoring.reference import load_reference

        trained, _ = load_reference(self.store.read("reference_model", self.dataset))
        return trained.model.eval()

    # -- embedding -----------------------------------------------------------------------

    def embedding_2d(
        self, max_points: int = EMBEDDING_POINTS, method: str = "auto"
    ) -> list[dict[str, Any]]:
        """A seeded subset of both splits projected to 2-D, with the scores to colour them by.

        Features: the stored reference model's penultimate activations (training and test
        images), or without one the stored out-of-fold embeddings (training images only);
        projected by robust_data.explore.embedding.project_2d (UMAP when installed, else PCA).
        Made once per (method, size) and kept; the default one is what box filters select in.

        Returns
        -------
        list of dict
            At most ``max_points``; each ``sample_id``, ``split``, ``x``, ``y`` in [0, 1],
            ``label``, ``robust``, ``is_label_issue``, ``clean_correct``. Empty when neither
            a reference model nor embeddings are stored.
        """
        chosen = projection_method(method)
        key = f"{chosen}:{max_points}"
        if key not in self._projected:
            ids, vectors = self._features(max_points)
            xy = project_2d(vectors, chosen) if ids else np.zeros((0, 2))
            self._projected[key] = self._points(ids, xy)
            if (method, max_points) == ("auto", EMBEDDING_POINTS):
                self._register_xy(self._projected[key])
        return self._projected[key]

    def _features(self, max_points: int) -> tuple[list[str], np.ndarray]:
        """Ids and (N, D) features of the embedding's seeded subset (see :meth:`embedding_2d`)."""
        if self.store.has("reference_model", self.dataset):
            from robust_data.ingest.images import decode_image, to_model_batch
            from robust_data.scoring.models import embed

            by_split: dict[str, list[str]] = {}
            for r in self._rows("SELECT sample_id, split FROM samples ORDER BY sample_id", []):
                by_split.setdefault(r["split"], []).append(r["sample_id"])
            rows = seeded_rows({k: len(v) for k, v in by_split.items()}, max_points)
            ids = [by_split[split][int(k)] for split, take in rows.items() for k in take]
            if not ids:
                return [], np.zeros((0, 1), np.float32)
            images = to_model_batch([decode_image(self.image(i)) for i in ids])
            return ids, embed(self.reference_model, images, device="cpu")
        if self._oof is None or not self._oof.num_rows:
            return [], np.zeros((0, 1), np.float32)
        all_ids = self._oof.column("sample_id").to_pylist()
        take = seeded_rows({"train": len(all_ids)}, max_points)["train"]
        column = self._oof.column("embedding").take(take).to_pylist()
        return [all_ids[int(i)] for i in take], np.stack(
            [np.asarray(v, np.float32) for v in column]
        )

    def _points(self, ids: list[str], xy: np.ndarray) -> list[dict[str, Any]]:
        """The embedding's points: each id at its place, with the scores it is coloured by."""
        scores = {
            r["sample_id"]: r
            for r in self._rows(
                "SELECT sample_id, split, label, robust, is_label_issue, clean_correct "
                "FROM samples",
                [],
            )
        }
        return [
            {**scores.get(sid, {"sample_id": sid}), "x": float(x), "y": float(y)}
            for sid, (x, y) in zip(ids, xy, strict=True)
        ]

    def _register_xy(self, points: list[dict[str, Any]]) -> None:
        """Put the default projection's points where box filters look (``embedding_xy``)."""
        table = pa.table(
            {
                "sid": [p["sample_id"] for p in points],
                "x": pa.array([p["x"] for p in points], pa.float64()),
                "y": pa.array([p["y"] for p in points], pa.float64()),
            }
        )
        with self._lock:
            self._con.register("xy", table)
            self._con.execute("DELETE FROM embedding_xy")
            self._con.execute("INSERT INTO embedding_xy SELECT sid, x, y FROM xy")
            self._con.unregister("xy")
