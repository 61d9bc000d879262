"""The export tables: one typed schema for every split, joined from the stored tables.

Every split has one typed schema (:func:`export_schema`): the samples columns, the RPR and
label-quality scores and the variant columns, typed as in the stored tables they come from and
all nullable, so a split without a score holds typed nulls and readers can union the splits.
Each column's description (its field metadata, which the exported files keep and the dataset
card shows) is the stored table's plus what the export adds (:data:`EXPORT_NOTES`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from robust_data.export.layout import ExportError
from robust_data.ingest.arrays import class_names
from robust_data.ingest.images import content_sha256, decode_image
from robust_data.store.schema import SAMPLES_SCHEMA, column_by_id, describe, with_description
from robust_data.store.store import Store

SAMPLE_COLUMNS = tuple(SAMPLES_SCHEMA.names)
RPR_COLUMNS = ("clean_pred", "clean_correct", "steps_to_flip", "robust", "flip_pred")
QUALITY_COLUMNS = (
    "label_quality",
    "is_label_issue",
    "suggested_label",
    "outlier_score",
    "is_outlier",
    "near_duplicate_group",
)
VARIANT_COLUMNS = ("parent_sample_id", "transform")
UPSTREAM = (
    "raw_samples",
    "rpr_scores",
    "label_quality",
    "curated_samples",
    "curation_ledger",
    "reference_model",
)

#: What the export adds to a stored column's description (the stored table's field metadata):
#: where its nulls come from, what a variant row holds. The exported field carries both.
EXPORT_NOTES: dict[str, str] = {
    "sample_id": "a variant's is its variants.variant_id",
    "label": "the names are the ClassLabel's",
    "image": "`datasets` decodes it to a PIL image",
    **dict.fromkeys(RPR_COLUMNS, "null where not scored"),
    **dict.fromkeys(QUALITY_COLUMNS, "null on test rows and variants"),
    **dict.fromkeys(VARIANT_COLUMNS, "null for originals"),
}


def _field(schema: pa.Schema, name: str, table: str) -> pa.Field:
    """Field ``name`` of a stored table's schema.

    Raises
    ------
    ExportError
        When the table has no such column.
    """
    if name not in schema.names:
        raise ExportError(
            f"column {name} in the stored table {table}",
            str(schema.names),
            f"materialize {table} again with this version of robust-data",
        )
    return schema.field(name)


def export_schema(
    samples: pa.Schema, rpr: pa.Schema, quality: pa.Schema, variants: pa.Schema | None = None
) -> pa.Schema:
    """The columns of every exported split, typed as in the stored tables and all nullable.

    Parameters
    ----------
    samples, rpr, quality : pyarrow.Schema
        Schemas of the stored ``curated_samples``, ``rpr_scores`` and ``label_quality`` tables.
    variants : pyarrow.Schema, optional
        Schema of the stored ``variants`` table; without it the variant columns are strings.

    Returns
    -------
    pyarrow.Schema
        The samples, RPR, label-quality and variant columns, in that order, without table
        metadata; each field's description is the stored column's plus its
        :data:`EXPORT_NOTES`.
    """
    fields = [_field(samples, n, "curated_samples") for n in SAMPLE_COLUMNS]
    fields += [_field(rpr, n, "rpr_scores") for n in RPR_COLUMNS]
    fields += [_field(quality, n, "label_quality") for n in QUALITY_COLUMNS]
    fields += [
        pa.field(n, pa.string()) if variants is None else _field(variants, n, "variants")
        for n in VARIANT_COLUMNS
    ]
    return pa.schema([_exported(f) for f in fields])


def _exported(field: pa.Field) -> pa.Field:
    """A stored column as exported: nullable, its description followed by its export note."""
    text = "; ".join(t for t in (describe(field), EXPORT_NOTES.get(field.name, "")) if t)
    return with_description(field.with_nullable(True), text)


def hf_features(schema: pa.Schema, names: list[str]) -> Any:
    """Hugging Face ``datasets.Features`` of an export schema.

    ``image`` is an ``Image`` (decoded to PIL), ``label`` a ``ClassLabel`` named by ``names``
    (indexed by label; repeated names get their label appended), every other column the
    ``Value`` of its Arrow type. ``features.arrow_schema`` is the schema the splits are cast to.
    """
    from datasets import ClassLabel, Features, Image

    features = Features.from_arrow_schema(schema.remove_metadata())
    features["image"] = Image()
    features["label"] = ClassLabel(names=_distinct_names(names))
    return features


def _distinct_names(names: list[str]) -> list[str]:
    """``names`` with repeats made distinct by their index: ``["x", "x"]`` -> ``["x", "x (1)"]``."""
    taken: set[str] = set()
    distinct = []
    for index, name in enumerate(names):
        if name in taken:
            name = f"{name} ({index})"
        while name in taken:
            name += "_"
        taken.add(name)
        distinct.append(name)
    return distinct


def _join_scores(
    base: pa.Table, scores: pa.Table | None, columns: tuple[str, ...], schema: pa.Schema
) -> pa.Table:
    """``base`` with ``columns`` of ``scores`` matched on sample_id, typed as in ``schema``.

    Rows missing from ``scores``, and every row when ``scores`` is None, get typed nulls.
    """
    ids = base.column("sample_id").to_pylist()
    for name in columns:
        kind = schema.field(name).type
        if scores is None:
            values = pa.nulls(len(ids), kind)
        else:
            values = pa.array(column_by_id(scores, ids, name), type=kind)
        base = base.append_column(pa.field(name, kind), values)
    return base


def split_tables(
    store: Store, dataset: str, curated: pa.Table, with_variants: bool
) -> dict[str, pa.Table]:
    """The train (curated, plus variants) and test tables, both cast to one schema."""
    raw = store.read("raw_samples", dataset)
    rpr = store.read("rpr_scores", dataset)
    quality = store.read("label_quality", dataset)
    variants = store.read("variants", dataset) if with_variants else None
    columns = export_schema(
        curated.schema, rpr.schema, quality.schema, None if variants is None else variants.schema
    )
    hf_schema = hf_features(columns, class_names(raw)).arrow_schema
    schema = pa.schema(
        [with_description(f, describe(columns.field(f.name))) for f in hf_schema],
        metadata=hf_schema.metadata,
    )
    test = raw.filter(pc.equal(raw.column("split"), "test"))
    tables = {}
    for split, base in (("train", curated), ("test", test)):
        table = base.select(list(SAMPLE_COLUMNS)).replace_schema_metadata(None)
        table = _join_scores(table, rpr, RPR_COLUMNS, schema)
        table = _join_scores(table, quality if split == "train" else None, QUALITY_COLUMNS, schema)
        tables[split] = _join_scores(table, None, VARIANT_COLUMNS, schema).cast(schema)
    if variants is not None:
        extra = _variant_rows(variants, dataset, curated, schema)
        tables["train"] = pa.concat_tables([tables["train"], extra])
    return tables


def _variant_rows(
    variants: pa.Table, dataset: str, curated: pa.Table, schema: pa.Schema
) -> pa.Table:
    """The variants of the kept samples as rows of ``schema`` (their scores null)."""
    kept = set(curated.column("sample_id").to_pylist())
    variants = variants.filter(
        pa.array([p in kept for p in variants.column("parent_sample_id").to_pylist()])
    )
    images = variants.column("image").combine_chunks().field("bytes").to_pylist()
    pixels = [decode_image(b) for b in images]
    columns: dict[str, Any] = {
        name: pa.nulls(variants.num_rows, schema.field(name).type) for name in schema.names
    }
    columns.update(
        {
            "sample_id": variants.column("variant_id"),
            "dataset": pa.array([dataset] * variants.num_rows),
            "content_sha256": pa.array([content_sha256(p) for p in pixels]),
            "split": variants.column("split"),
            "label": variants.column("label"),
            "label_name": variants.column("label_name"),
            "image": variants.column("image"),
            "height": pa.array([p.shape[0] for p in pixels], pa.int32()),
            "width": pa.array([p.shape[1] for p in pixels], pa.int32()),
            "channels": pa.array([p.shape[2] for p in pixels], pa.int32()),
            "parent_sample_id": variants.column("parent_sample_id"),
            "transform": variants.column("transform"),
        }
    )
    return pa.table({name: columns[name] for name in schema.names}).cast(schema)
