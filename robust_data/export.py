"""Export a curated dataset as Parquet or an ImageFolder, with a dataset card and lineage.

Parquet: one file per split (``train.parquet``, ``test.parquet``) in the samples-table layout
with the image as a ``{bytes, path}`` struct, so Hugging Face ``datasets``, pyarrow and DuckDB
read it directly, and every score column joined on. ImageFolder: ``split/label/sample.png``.
Both get ``README.md`` (the dataset card), ``lineage.json`` and ``plots/``. The export is
written into a temporary folder beside the target and swapped in at the end, so a failure
leaves the previous export as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robust_data.arrays import class_names
from robust_data.curation import class_count_chart
from robust_data.images import content_sha256, decode_image
from robust_data.schema import META_PREFIX, column_by_id, read_metadata
from robust_data.store import Store, read_bytes, table_location
from robust_data.version import __version__, code_revision

FORMATS = ("parquet", "imagefolder")
MARKER = "robust-data-export/1"
RPR_COLUMNS = ("clean_pred", "clean_correct", "steps_to_flip", "robust", "flip_pred")
QUALITY_COLUMNS = (
    "label_quality",
    "is_label_issue",
    "suggested_label",
    "outlier_score",
    "is_outlier",
    "near_duplicate_group",
)
UPSTREAM = (
    "raw_samples",
    "rpr_scores",
    "label_quality",
    "curated_samples",
    "curation_ledger",
    "reference_model",
)


class ExportError(ValueError):
    """A refused or impossible export, as one line."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds."""

    path: Path
    format: str
    rows: dict[str, int]  # split -> rows


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_name(name: str) -> str:
    """A file or folder name that cannot leave its parent: [A-Za-z0-9._-] only, no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return cleaned or "_"


def _join_scores(base: pa.Table, scores: pa.Table | None, columns: tuple[str, ...]) -> pa.Table:
    """``base`` with ``columns`` of ``scores`` matched on sample_id (nulls where absent)."""
    ids = base.column("sample_id").to_pylist()
    for name in columns:
        if scores is None:
            values = pa.nulls(len(ids))
        else:
            values = pa.array(column_by_id(scores, ids, name), type=scores.schema.field(name).type)
        base = base.append_column(name, values)
    return base


def _split_tables(
    store: Store, dataset: str, curated: pa.Table, with_variants: bool
) -> dict[str, pa.Table]:
    raw = store.read("raw_samples", dataset)
    rpr = store.read("rpr_scores", dataset)
    quality = store.read("label_quality", dataset)
    test = raw.filter(pc.equal(raw.column("split"), "test"))
    tables = {}
    for split, base in (("train", curated), ("test", test)):
        table = _join_scores(base.replace_schema_metadata(None), rpr, RPR_COLUMNS)
        table = _join_scores(table, quality if split == "train" else None, QUALITY_COLUMNS)
        table = table.append_column("parent_sample_id", pa.nulls(table.num_rows, pa.string()))
        tables[split] = table.append_column("transform", pa.nulls(table.num_rows, pa.string()))
    if with_variants:
        tables["train"] = pa.concat_tables(
            [tables["train"], _variant_rows(store, dataset, curated, tables["train"].schema)]
        )
    return tables


def _variant_rows(store: Store, dataset: str, curated: pa.Table, schema: pa.Schema) -> pa.Table:
    variants = store.read("variants", dataset)
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
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def _lineage(
    store: Store,
    dataset: str,
    curated: pa.Table,
    runs: dict[str, str],
    rows: dict[str, int],
    fmt: str,
    with_variants: bool,
) -> dict[str, Any]:
    tables = {}
    for name in (*UPSTREAM, *(("variants",) if with_variants else ())):
        location = table_location(store.tables_root, name, dataset)
        data = read_bytes(location)
        tables[name] = {
            "path": location,
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": pq.read_metadata(pa.BufferReader(data)).num_rows,
            "run_id": runs.get(name),
        }
    model = store.read("reference_model", dataset).to_pylist()[0]
    policy = json.loads(read_metadata(curated.schema).get("params", "{}"))
    return {
        "format": MARKER,
        "dataset": dataset,
        "export_format": fmt,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "robust_data_version": __version__,
        "code_revision": code_revision(),
        "policy": policy,
        "model": {
            "path": model["path"],
            "sha256": model["sha256"],
            "arch": model["arch"],
            "config": json.loads(model["config"]),
        },
        "tables": tables,
        "rows": rows,
    }


def _card(lineage: dict[str, Any], tables: dict[str, pa.Table], ledger: pa.Table) -> str:
    reasons = ledger.column("reason").to_pylist()
    lines = [
        f"# {lineage['dataset']} (curated by robust-data {lineage['robust_data_version']})",
        "",
        f"Exported {lineage['created']} as {lineage['export_format']}; code revision {lineage['code_revision']}.",
        "Training samples were kept by the policy below; the test split is the dataset's own, untouched.",
        "",
        "## Provenance",
        "",
        f"- Reference model: {lineage['model']['arch']}, sha256 `{lineage['model']['sha256']}`",
        *(
            f"- `{name}`: {t['rows']:,} rows, sha256 `{t['sha256'][:16]}`, run {t['run_id'] or 'unknown'}"
            for name, t in lineage["tables"].items()
        ),
        "",
        "## Policy",
        "",
        "```json",
        json.dumps(lineage["policy"], indent=2, sort_keys=True),
        "```",
        "",
        "## Ledger (input training samples)",
        "",
        "| outcome | samples |",
        "|---|---:|",
        f"| kept | {reasons.count(None):,} |",
        *(f"| {r} | {reasons.count(r):,} |" for r in sorted({r for r in reasons if r is not None})),
        "",
        "## Rows per class and split",
        "",
        "| class | " + " | ".join(tables) + " |",
        "|---|" + "---:|" * len(tables),
    ]
    names = sorted({n for t in tables.values() for n in t.column("label_name").to_pylist()})
    counts = {s: Counter(t.column("label_name").to_pylist()) for s, t in tables.items()}
    lines += [
        f"| {n} | " + " | ".join(f"{counts[s].get(n, 0):,}" for s in tables) + " |" for n in names
    ]
    lines += [
        "",
        "## Plots",
        "",
        "![samples per class before and after curation](plots/class_counts.png)",
        "",
    ]
    return "\n".join(lines)


def _write_parquet(folder: Path, tables: dict[str, pa.Table], lineage: dict[str, Any]) -> None:
    meta = {
        f"{META_PREFIX}table": "curated_dataset",
        f"{META_PREFIX}version": __version__,
        f"{META_PREFIX}policy": json.dumps(lineage["policy"], sort_keys=True),
        f"{META_PREFIX}model_sha256": lineage["model"]["sha256"],
        f"{META_PREFIX}upstream": json.dumps(
            {k: v["sha256"] for k, v in lineage["tables"].items()}, sort_keys=True
        ),
    }
    for split, table in tables.items():
        meta["huggingface"] = json.dumps({"info": {"features": _hf_features(table, tables)}})
        # datasets applies the features only to fields that match its own (nullable) fields
        table = table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))
        table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
        pq.write_table(table, folder / f"{split}.parquet", compression="zstd")


_HF_DTYPES = {
    pa.string(): "string",
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.bool_(): "bool",
    pa.float64(): "float64",
}


def _hf_features(table: pa.Table, tables: dict[str, pa.Table]) -> dict[str, Any]:
    """Hugging Face ``datasets`` features: the image decodes to a PIL image, labels are named."""
    names: dict[int, str] = {}
    for t in tables.values():
        names.update(
            zip(t.column("label").to_pylist(), t.column("label_name").to_pylist(), strict=True)
        )
    features: dict[str, Any] = {}
    for field in table.schema:
        if field.name == "image":
            features[field.name] = {"_type": "Image"}
        elif field.name == "label":
            labels = [names.get(k, str(k)) for k in range(max(names) + 1)]
            features[field.name] = {"names": labels, "_type": "ClassLabel"}
        else:
            features[field.name] = {"dtype": _HF_DTYPES.get(field.type, "string"), "_type": "Value"}
    return features


def _write_imagefolder(folder: Path, tables: dict[str, pa.Table]) -> None:
    for split, table in tables.items():
        labels = sorted(
            set(
                zip(
                    table.column("label").to_pylist(),
                    table.column("label_name").to_pylist(),
                    strict=True,
                )
            )
        )
        used: dict[str, int] = {}
        folders = {}
        for label, name in labels:
            safe = safe_name(name)
            if safe in used and used[safe] != label:
                safe = f"{safe}_{label}"
            used[safe] = label
            folders[label] = safe
        blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
        for sample_id, label, blob in zip(
            table.column("sample_id").to_pylist(),
            table.column("label").to_pylist(),
            blobs,
            strict=True,
        ):
            target = folder / safe_name(split) / folders[label]
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{safe_name(sample_id)}.png").write_bytes(blob)


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / "lineage.json").read_text()).get("format") == MARKER
    except (OSError, ValueError):
        return False


def export_dataset(
    store: Store,
    dataset: str,
    out: str | os.PathLike[str],
    fmt: str = "parquet",
    with_variants: bool = False,
    force: bool = False,
    runs: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``dataset``'s curated training set and its test split.

    Raises
    ------
    ExportError
        Unknown format, or a non-empty target that is not an earlier export (without force).
    FileNotFoundError
        When an upstream table has not been materialized.
    """
    if fmt not in FORMATS:
        raise ExportError(f"expected a format in {FORMATS}; found {fmt!r}")
    target = Path(out).resolve()
    if target.exists() and any(target.iterdir()) and not _is_export(target) and not force:
        raise ExportError(
            f"expected an empty folder or an earlier export at {target}; found other files; "
            "pass --force to replace it, or choose another --out"
        )
    curated = store.read("curated_samples", dataset)
    tables = _split_tables(store, dataset, curated, with_variants)
    rows = {split: t.num_rows for split, t in tables.items()}
    lineage = _lineage(store, dataset, curated, runs or {}, rows, fmt, with_variants)
    ledger = store.read("curation_ledger", dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (tmp / "plots").mkdir()
        chart = class_count_chart(ledger, dict(enumerate(class_names(curated))))
        (tmp / "plots" / "class_counts.png").write_bytes(chart)
        if fmt == "parquet":
            _write_parquet(tmp, tables, lineage)
        else:
            _write_imagefolder(tmp, tables)
        (tmp / "README.md").write_text(_card(lineage, tables, ledger))
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True))
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(target, fmt, rows)


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` with renames; the old export is removed only at the end."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
