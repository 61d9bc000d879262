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
import re
import threading
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.curation.ledger import LEDGER_SCHEMA
from robust_data.curation.reviews import Review, latest_decisions, load_reviews
from robust_data.errors import DatasetError
from robust_data.ingest.arrays import class_names
from robust_data.ingest.images import encode_png
from robust_data.ingest.sources.base import MAX_LABEL
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
#: The largest value each numeric URL or form parameter may take (whole numbers from 0).
INT_LIMITS = {
    "offset": 1_000_000_000,
    "label": MAX_LABEL,
    "suggested_label": MAX_LABEL,
    "new_label": MAX_LABEL,
    "min_steps": 1_000_000_000,
    "max_steps": 1_000_000_000,
}
_WHOLE = re.compile(r"[0-9]{1,20}")


def shown(value: str, limit: int = 60) -> str:
    """A URL value as quoted in a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def parse_whole(
    name: str, raw: str, fix: str = "fix the address, or press clear on the filters"
) -> int:
    """A numeric URL or form parameter: a whole number in ``0..INT_LIMITS[name]``.

    Raises
    ------
    DatasetError
        One line naming the parameter, the range expected and the value found.
    """
    high = INT_LIMITS[name]
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    if value is None or value > high:
        raise DatasetError(
            f"{name} as a whole number in 0..{high:,}",
            shown(raw),
            fix,
        )
    return value


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


@dataclass(frozen=True)
class SampleFilter:
    """Which samples a page shows; None leaves a field unfiltered.

    Attributes
    ----------
    split : str or None
        ``train`` or ``test``.
    label, suggested_label : int or None
        Class index (the stored label; cleanlab's suggestion).
    robust, label_issue, outlier, kept : bool or None
    min_steps, max_steps : int or None
        Range of ``steps_to_flip`` (inclusive); a robust sample (no flip) counts as
        ``max_steps`` of its scoring run + 1, so ``min_steps`` keeps it.
    group : str or None
        A near-duplicate group (its first sample id).
    reason : str or None
        A ledger reason (``kept`` for kept rows).
    transform : str or None
        Samples with a variant made by this transform spec.
    review : str or None
        The latest review decision (``keep``, ``drop``, ``relabel``) or ``none``.
    """

    split: str | None = None
    label: int | None = None
    robust: bool | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    label_issue: bool | None = None
    suggested_label: int | None = None
    outlier: bool | None = None
    group: str | None = None
    kept: bool | None = None
    reason: str | None = None
    transform: str | None = None
    review: str | None = None

    @classmethod
    def from_query(cls, params: dict[str, str]) -> SampleFilter:
        """From URL query parameters: empty values are unset; bools are ``true``/``false``.

        Raises
        ------
        DatasetError
            One line naming the parameter, the value expected and the value found.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (params.get(f.name) or "").strip()
            if not raw:
                continue
            if f.type in ("int | None",):
                values[f.name] = parse_whole(f.name, raw)
            elif f.type in ("bool | None",):
                if raw not in ("true", "false"):
                    raise DatasetError(
                        f"true or false for {f.name}", shown(raw), "pick yes or no in the filters"
                    )
                values[f.name] = raw == "true"
            else:
                values[f.name] = raw
        return cls(**values)

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition over ``samples`` (alias-free) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            clauses.append(sql)
            params.append(value)

        for name, column in (
            ("split", "split"),
            ("label", "label"),
            ("robust", "robust"),
            ("label_issue", "is_label_issue"),
            ("suggested_label", "suggested_label"),
            ("outlier", "is_outlier"),
            ("group", "near_duplicate_group"),
            ("kept", "kept"),
        ):
            value = getattr(self, name)
            if value is not None:
                add(f"{column} = ?", value)
        steps = "coalesce(steps_to_flip, max_steps + 1)"
        if self.min_steps is not None:
            add(f"{steps} >= ?", self.min_steps)
        if self.max_steps is not None:
            add(f"{steps} <= ?", self.max_steps)
        if self.reason is not None:
            add("coalesce(reason, CASE WHEN kept THEN 'kept' END) = ?", self.reason)
        if self.transform is not None:
            add(
                "sample_id IN (SELECT parent_sample_id FROM variants WHERE transform = ?)",
                self.transform,
            )
        if self.review is not None:
            add("coalesce(review, 'none') = ?", self.review)
        return (" AND ".join(clauses) or "TRUE"), params


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
        self.refresh_reviews()

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

    # -- pages ---------------------------------------------------------------------------

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._con.execute(sql, params)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count(self, where: SampleFilter) -> int:
        """How many samples pass ``where``."""
        condition, params = where.where()
        return int(
            self._rows(f"SELECT count(*) AS n FROM samples WHERE {condition}", params)[0]["n"]
        )

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
        condition, params = where.where()
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT * FROM samples WHERE {condition} "
            f"ORDER BY {sort} {direction} NULLS LAST, sample_id LIMIT ? OFFSET ?"
        )
        return self._rows(sql, [*params, max(1, limit), max(0, offset)])

    def sample(self, sample_id: str) -> dict[str, Any] | None:
        """Every score of one sample, or None when the id is unknown."""
        rows = self._rows("SELECT * FROM samples WHERE sample_id = ?", [sample_id])
        return rows[0] if rows else None

    def group_members(self, group: str) -> list[str]:
        """Sample ids of a near-duplicate group, in id order."""
        rows = self._rows(
            "SELECT sample_id FROM samples WHERE near_duplicate_group = ? ORDER BY 1", [group]
        )
        return [r["sample_id"] for r in rows]

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

    def embedding_2d(self, max_points: int = EMBEDDING_POINTS) -> list[dict[str, Any]]:
        """The stored embeddings (oof_predictions) projected to 2-D by PCA, with their scores.

        At most ``max_points`` samples (a seeded, deterministic subset of the training split).
        Each point: ``sample_id``, ``x``, ``y`` in [0, 1], ``label``, ``robust``,
        ``is_label_issue``. Empty when no embeddings are stored.
        """
        if self._oof is None or not self._oof.num_rows:
            return []
        ids = self._oof.column("sample_id").to_pylist()
        take = np.sort(np.random.default_rng(0).permutation(len(ids))[:max_points])
        vectors = np.stack(
            [
                np.asarray(v, np.float32)
                for v in self._oof.column("embedding").take(take).to_pylist()
            ]
        )
        xy = _pca_2d(vectors)
        scores = {
            r["sample_id"]: r
            for r in self._rows(
                "SELECT sample_id, label, robust, is_label_issue FROM samples WHERE split = ?",
                ["train"],
            )
        }
        points = []
        for (x, y), i in zip(xy, take, strict=True):
            row = scores.get(ids[i], {})
            points.append(
                {
                    "sample_id": ids[i],
                    "x": float(x),
                    "y": float(y),
                    "label": row.get("label"),
                    "robust": row.get("robust"),
                    "is_label_issue": row.get("is_label_issue"),
                }
            )
        return points


def _pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2) first two principal components, scaled into [0, 1] per axis."""
    centred = vectors - vectors.mean(axis=0)
    if len(vectors) < 2:
        return np.full((len(vectors), 2), 0.5)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    low, high = xy.min(axis=0), xy.max(axis=0)
    return (xy - low) / np.where(high > low, high - low, 1.0)


def flipped_image(index: SampleIndex, sample_id: str) -> tuple[bytes, int, int | None, int] | None:
    """The perturbed image that flipped a sample, regenerated, and the reference model's view.

    Returns
    -------
    (png, step, stored flip_pred, prediction now) or None
        None when the sample is robust or unscored. The noise is keyed by (seed, sample, try),
        so the image is the one scoring saw; the prediction is the stored reference model's
        on it now (fp32 here; scoring may have used bf16, so it can differ at the margin).
    """
    import torch

    from robust_data.ingest.images import decode_image
    from robust_data.scoring.rpr.engine import perturbed_at

    row = index.sample(sample_id)
    if row is None or row["steps_to_flip"] is None:
        return None
    pixels = decode_image(index.image(sample_id))  # (H, W, C) uint8
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    perturbed = perturbed_at(image, sample_id, row["scheme"], row["rpr_seed"], row["steps_to_flip"])
    with torch.no_grad():
        prediction = int(index.reference_model(perturbed[None]).argmax(dim=1)[0])
    png = encode_png((perturbed.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return png, int(row["steps_to_flip"]), row["flip_pred"], prediction
