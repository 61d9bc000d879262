"""Export a curated dataset as Parquet or an ImageFolder, with a dataset card and lineage.

Every split has one typed schema (:func:`export_schema`): the samples columns, the RPR and
label-quality scores and the variant columns, typed as in the stored tables they come from and
all nullable, so a split without a score holds typed nulls and readers can union the splits.

Parquet: ``data/<split>-00000-of-00001.parquet`` (the Hugging Face layout), the image a
``{bytes, path}`` struct, the schema carrying Hugging Face ``datasets`` features (``Image``,
``ClassLabel`` with the class names), so ``datasets``, pandas, pyarrow and DuckDB read
``data/`` directly. ImageFolder: ``<split>/<class>/<sample>.png`` plus
``<split>/metadata.parquet`` holding every other column (``file_name`` relative to the split
folder), which ``datasets``' ``imagefolder`` joins on. Both get ``README.md`` (the dataset card,
opening with Hugging Face YAML: configs, dataset_info, license), ``lineage.json`` (paths relative
to the home, the sha256 of every exported file) and ``plots/``.

The export is written into a temporary folder beside the target and swapped in at the end, so a
failure leaves the previous export as it was; folders that a killed export left beside the
target are removed (or the previous export restored) by the next export to that target. An
export never replaces or writes into the home, the storage root, the Dagster instance or the
tables it reads, an export's inside or another robust-data home, nor anywhere inside the home
other than ``<home>/exports/NAME`` (:func:`robust_data.store.targets.check_output`, the rules of
every path written for the user).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robust_data.curation.policy import class_count_chart
from robust_data.ingest.arrays import class_names
from robust_data.ingest.images import content_sha256, decode_image
from robust_data.present.markdown import count_table
from robust_data.store.schema import (
    META_PREFIX,
    SAMPLES_SCHEMA,
    column_by_id,
    read_metadata,
    read_params,
    table_metadata,
)
from robust_data.store.store import (
    ROW_GROUP_ROWS,
    Store,
    default_mode,
    is_url,
    local_path,
    pid_alive,
    publish_folder,
    read_bytes,
    sha256_anywhere,
    table_location,
)
from robust_data.store.targets import (
    EXPORT_MARKER,
    Output,
    TargetError,
    check_output,
    input_tables,
    inside,
    owned_paths,
)
from robust_data.version import __version__, code_revision

if TYPE_CHECKING:
    from huggingface_hub import DatasetCardData

FORMATS = ("parquet", "imagefolder")
MARKER = EXPORT_MARKER  # lineage.json's "format": what marks a folder as an export
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
DATA_FOLDER = "data"
METADATA_FILE = "metadata.parquet"

#: What each exported column holds and which of its values are bad: (meaning, bad when).
COLUMN_DOCS: dict[str, tuple[str, str]] = {
    "sample_id": (
        "`<dataset>:<split>:<source key>`; a variant's `<parent>~<transform>~<seed>`",
        "",
    ),
    "dataset": ("dataset name", ""),
    "content_sha256": ("sha256 of the decoded pixels; equal values are identical images", ""),
    "split": ("`train` or `test`", ""),
    "label": ("class index; the names are the ClassLabel's", ""),
    "label_name": ("class name", ""),
    "image": ("the PNG (`{bytes, path}`; `datasets` decodes it to a PIL image)", ""),
    "height": ("pixels", ""),
    "width": ("pixels", ""),
    "channels": ("1 grayscale, 3 RGB", ""),
    "clean_pred": ("reference model's prediction on the image; null where not scored", "≠ label"),
    "clean_correct": ("`clean_pred == label`", "false"),
    "steps_to_flip": ("RPR perturbation steps until the prediction flipped; null if never", "low"),
    "robust": ("the prediction survived every RPR step", "false"),
    "flip_pred": ("prediction after the flip; null when robust", ""),
    "label_quality": ("cleanlab label quality in [0, 1]; null on test rows and variants", "low"),
    "is_label_issue": ("cleanlab flags the label as likely wrong", "true"),
    "suggested_label": (
        "out-of-fold prediction if the label is an issue, else the label",
        "≠ label",
    ),
    "outlier_score": ("Datalab outlier score in [0, 1]; null without Datalab", "low"),
    "is_outlier": ("Datalab flags the image as an outlier", "true"),
    "near_duplicate_group": ("first sample_id of its near-duplicate group; null if none", "set"),
    "parent_sample_id": ("the original a variant was made from; null for originals", ""),
    "transform": ("the variant's transform spec; null for originals", ""),
}

#: Licenses of registry sources whose publishers state one: (Hugging Face id, who states it).
SOURCE_LICENSES: dict[str, tuple[str, str]] = {
    "digits": ("cc-by-4.0", "the UCI Machine Learning Repository (Optical Recognition of Digits)"),
    "fashion-mnist": ("mit", "Zalando Research's Fashion-MNIST repository"),
    "kmnist": ("cc-by-sa-4.0", "ROIS-DS CODH's Kuzushiji-MNIST repository"),
}


class ExportError(ValueError):
    """A refused or impossible export, as one line."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds.

    ``removed`` lists the folders that killed exports had left beside the target and that this
    export removed; ``restored`` is the one of them renamed back to the target, the previous
    export (listed in ``removed`` too); :meth:`cleanup_lines` says so, one line each.

    ``location`` is the fsspec URL the export was published to (:func:`publish_export`), and
    ``hashes`` the sha256 of each published file by relative path (``lineage.json``'s
    ``files``); both empty for a local export. A published export's ``path`` is the local
    folder it was written to, which :func:`export_to_store` removes once it is published.
    """

    path: Path
    format: str
    rows: dict[str, int]  # split -> rows
    removed: tuple[Path, ...] = ()
    location: str = ""
    hashes: dict[str, str] = field(default_factory=dict)
    restored: Path | None = None

    def cleanup_lines(self) -> list[str]:
        """What became of each folder stopped exports left beside the target, one line each."""
        return StaleExports(self.path, self.removed, self.restored).lines()

    @property
    def where(self) -> str:
        """The export's URL when it was published, else its local folder."""
        return self.location or str(self.path)

    def files_table(self, source: str = "curated_samples, variants, raw_samples") -> pa.Table:
        """One row per exported Parquet file: split, path, rows, sha256; with table metadata.

        Only for the Parquet format (``data/<split>-00000-of-00001.parquet`` per split). The
        paths are URLs for a published export, whose sha256 come from its ``hashes``.
        """
        if self.location:
            names = [data_file(split) for split in self.rows]
            paths = [f"{self.location}/{name}" for name in names]
            digests = [self.hashes[name] for name in names]
        else:
            files = [self.path / data_file(split) for split in self.rows]
            paths = [str(f) for f in files]
            digests = [sha256_anywhere(f) for f in files]
        table = pa.table(
            {
                "split": list(self.rows),
                "path": paths,
                "rows": list(self.rows.values()),
                "sha256": digests,
            },
            schema=FILES_SCHEMA,
        )
        params = {"format": self.format, "export": self.where}
        return table.replace_schema_metadata(table_metadata("curated_dataset", source, params))


FILES_SCHEMA = pa.schema(
    [
        pa.field("split", pa.string()),
        pa.field("path", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("sha256", pa.string()),
    ]
)
"""``curated_dataset``: one row per exported Parquet data file."""

#: One line per column of :data:`FILES_SCHEMA`.
FILES_COLUMNS_DOC = {
    "split": "train or test",
    "path": "The exported data file (data/<split>-00000-of-00001.parquet in the export)",
    "rows": "Rows in the file: originals and variants of that split",
    "sha256": "Hex sha256 of the file's bytes (lineage.json lists it too)",
}


def data_file(split: str) -> str:
    """A split's Parquet file in an export, relative to it: ``data/<split>-00000-of-00001``."""
    return f"{DATA_FOLDER}/{safe_name(split)}-00000-of-00001.parquet"


def safe_name(name: str) -> str:
    """A file or folder name that cannot leave its parent: [A-Za-z0-9._-] only, no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return cleaned or "_"


# ---------------------------------------------------------------------------------------------
# one typed schema for every split


def _field(schema: pa.Schema, name: str, table: str) -> pa.Field:
    """Field ``name`` of a stored table's schema.

    Raises
    ------
    ExportError
        When the table has no such column.
    """
    if name not in schema.names:
        raise ExportError(
            f"expected column {name} in the stored table {table}; found {schema.names}; "
            f"materialize {table} again with this version of robust-data"
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
        The samples, RPR, label-quality and variant columns, in that order, without metadata.
    """
    fields = [_field(samples, n, "curated_samples") for n in SAMPLE_COLUMNS]
    fields += [_field(rpr, n, "rpr_scores") for n in RPR_COLUMNS]
    fields += [_field(quality, n, "label_quality") for n in QUALITY_COLUMNS]
    fields += [
        pa.field(n, pa.string()) if variants is None else _field(variants, n, "variants")
        for n in VARIANT_COLUMNS
    ]
    return pa.schema([f.with_nullable(True) for f in fields])


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


def _split_tables(
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
    schema = hf_features(columns, class_names(raw)).arrow_schema
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


# ---------------------------------------------------------------------------------------------
# lineage


def _relative(location: str, home: Path) -> str:
    """A local absolute path relative to ``home`` (``..`` where it lies outside); else as is."""
    if is_url(location) or not local_path(location).is_absolute():
        return location
    return Path(os.path.relpath(local_path(location), home.absolute())).as_posix()


def _source_label(spec: str) -> str:
    """A source spec without its folders: ``imagefolder:/data/pets`` -> ``imagefolder:pets``."""
    kind, _, where = spec.partition(":")
    return f"{kind}:{Path(where).name}" if where else kind


def _license(source: str) -> dict[str, str]:
    """``{"id", "stated_by"}``: the source's license where known, else ``unknown``."""
    license_id, stated_by = SOURCE_LICENSES.get(source.partition(":")[0], ("unknown", ""))
    return {"id": license_id, "stated_by": stated_by}


def _lineage(
    store: Store,
    dataset: str,
    curated: pa.Table,
    runs: dict[str, str],
    rows: dict[str, int],
    fmt: str,
    with_variants: bool,
) -> dict[str, Any]:
    """What the export was made from; paths relative to the home. ``files`` is added later."""
    tables, schemas = {}, {}
    for name in (*UPSTREAM, *(("variants",) if with_variants else ())):
        location = table_location(store.tables_root, name, dataset)
        data = read_bytes(location)
        schemas[name] = pq.read_schema(pa.BufferReader(data))
        tables[name] = {
            "path": _relative(location, store.home),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": pq.read_metadata(pa.BufferReader(data)).num_rows,
            "run_id": runs.get(name),
        }
    model = store.read("reference_model", dataset).to_pylist()[0]
    source = _source_label(read_metadata(schemas["raw_samples"]).get("source", "unknown"))
    return {
        "format": MARKER,
        "dataset": dataset,
        "source": source,
        "license": _license(source),
        "export_format": fmt,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "robust_data_version": __version__,
        "code_revision": code_revision(),
        "paths_relative_to": "the robust-data home",
        "policy": read_params(curated.schema),
        "model": {
            "path": _relative(model["path"], store.home),
            "sha256": model["sha256"],
            "arch": model["arch"],
            "config": json.loads(model["config"]),
        },
        "tables": tables,
        "rows": rows,
    }


def _file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but its ``lineage.json``, by POSIX relative path."""
    return {
        path.relative_to(folder).as_posix(): sha256_anywhere(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != folder / "lineage.json"
    }


# ---------------------------------------------------------------------------------------------
# the dataset card


def _card(
    folder: Path, lineage: dict[str, Any], tables: dict[str, pa.Table], ledger: pa.Table
) -> str:
    """The dataset card: Hugging Face YAML front matter, then what a reader needs to know."""
    from huggingface_hub import DatasetCard

    header = _card_data(folder, lineage, tables).to_yaml()
    body = _card_body(lineage, tables, ledger)
    return str(DatasetCard(f"---\n{header}\n---\n\n{body}"))


def _data_patterns(fmt: str, splits: list[str]) -> list[dict[str, str]]:
    """The card's ``data_files``: one glob per split (the images and their metadata for folders)."""
    if fmt == "parquet":
        return [{"split": s, "path": f"{DATA_FOLDER}/{safe_name(s)}-*.parquet"} for s in splits]
    return [{"split": s, "path": f"{safe_name(s)}/**"} for s in splits]


def _card_data(
    folder: Path, lineage: dict[str, Any], tables: dict[str, pa.Table]
) -> DatasetCardData:
    """The card's YAML, made by ``datasets``: license, configs and dataset_info."""
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    splits = SplitDict()
    for split, table in tables.items():
        splits.add(SplitInfo(name=split, num_bytes=table.nbytes, num_examples=table.num_rows))
    fmt = lineage["export_format"]
    files = [folder / (data_file(s) if fmt == "parquet" else safe_name(s)) for s in tables]
    info = DatasetInfo(
        features=Features.from_arrow_schema(next(iter(tables.values())).schema),
        splits=splits,
        download_size=sum(_bytes_under(path) for path in files),
        dataset_size=sum(table.nbytes for table in tables.values()),
    )
    data = DatasetCardData(
        license=lineage["license"]["id"],
        pretty_name=f"{lineage['dataset']} (curated by robust-data)",
        task_categories=["image-classification"],
        tags=["robust-data", "curated"],
    )
    MetadataConfigs(
        {"default": {"data_files": _data_patterns(fmt, list(tables))}}
    ).to_dataset_card_data(data)
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def _bytes_under(path: Path) -> int:
    """Size of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _card_body(lineage: dict[str, Any], tables: dict[str, pa.Table], ledger: pa.Table) -> str:
    """The card's markdown: license, how to load, columns, counts, provenance, policy, plots."""
    schema = next(iter(tables.values())).schema
    lines = [
        f"# {lineage['dataset']} (curated by robust-data {lineage['robust_data_version']})",
        "",
        f"Exported {lineage['created']} as {lineage['export_format']}; "
        f"code revision {lineage['code_revision']}; source `{lineage['source']}`. "
        "Training samples were kept by the policy below; "
        "the test split is the dataset's own, untouched.",
        "",
        *_license_lines(lineage),
        *_load_lines(lineage["export_format"]),
        *_column_lines(schema),
        *_count_lines(tables),
        *_provenance_lines(lineage, ledger),
        "## Plots",
        "",
        "![samples per class before and after curation](plots/class_counts.png)",
        "",
    ]
    return "\n".join(lines)


def _license_lines(lineage: dict[str, Any]) -> list[str]:
    """The license section: the source's license where known, else says it is unknown."""
    found = lineage["license"]
    if found["id"] == "unknown":
        text = (
            "Unknown: robust-data does not know the license of this dataset's source. The images "
            "and labels keep their source's terms; check them before you share this export."
        )
    else:
        text = (
            f"`{found['id']}`, as stated by {found['stated_by']} for the source images and "
            "labels; check it there before you share this export."
        )
    return ["## License", "", text, ""]


LOAD_PARQUET = """\
One file per split, `data/<split>-00000-of-00001.parquet`, all with the same schema.

```python
import datasets, duckdb, pandas, pyarrow.dataset

folder = "path/to/this/export"
ds = datasets.load_dataset(folder)  # this card's configs: image -> PIL, label -> ClassLabel
ds = datasets.load_dataset("parquet", data_dir=f"{folder}/data")
df = pandas.read_parquet(f"{folder}/data")
table = pyarrow.dataset.dataset(f"{folder}/data").to_table()
duckdb.sql(f"SELECT split, count(*) FROM read_parquet('{folder}/data/*.parquet') GROUP BY 1")
```

PyTorch: `robust_data.CuratedDataset(folder, split="train")` yields (image, label)."""

LOAD_IMAGEFOLDER = """\
Images at `<split>/<class>/<sample>.png`; every other column in `<split>/metadata.parquet`
(`file_name` relative to the split folder; the same schema in every split).

```python
import datasets
from torchvision.datasets import ImageFolder

folder = "path/to/this/export"
ds = datasets.load_dataset(folder)  # this card's configs: label a ClassLabel, scores as columns
ds = datasets.load_dataset("imagefolder", data_dir=folder)  # the same columns
train = ImageFolder(f"{folder}/train")  # images and class folders only
```"""


def _load_lines(fmt: str) -> list[str]:
    """The section on where the files are and how each reader loads them."""
    return ["## Load it", "", LOAD_PARQUET if fmt == "parquet" else LOAD_IMAGEFOLDER, ""]


def _feature_type(feature: Any) -> str:
    """A ``datasets`` feature as the card's type column: ``Image``, ``ClassLabel``, a dtype."""
    name = type(feature).__name__
    return str(feature.dtype) if name == "Value" else name


def _column_lines(schema: pa.Schema) -> list[str]:
    """One row per column: name, ``datasets`` type, meaning, which values are bad."""
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    lines = ["## Columns", "", "| column | type | meaning | bad when |", "|---|---|---|---|"]
    for name, feature in features.items():
        meaning, bad = COLUMN_DOCS.get(name, ("", ""))
        lines.append(f"| `{name}` | {_feature_type(feature)} | {meaning} | {bad or '-'} |")
    return [*lines, ""]


def _count_lines(tables: dict[str, pa.Table]) -> list[str]:
    """Rows per class: originals and variants in each split, then the totals."""
    counts = {split: _class_counts(table) for split, table in tables.items()}
    classes = sorted({key for found in counts.values() for key in found})
    header = [f"{split} {kind}" for split in tables for kind in ("originals", "variants")]
    lines = [
        "## Rows per class and split",
        "",
        "Originals are the dataset's own images; variants are images robust-data made from "
        "kept training samples (`parent_sample_id` set).",
        "",
        "| label | class | " + " | ".join(header) + " |",
        "|---:|---|" + "---:|" * len(header),
    ]
    for label, name in classes:
        cells = [f"{counts[s].get((label, name), [0, 0])[k]:,}" for s in tables for k in (0, 1)]
        lines.append(
            f"| {label} | {str(name).replace('|', '&#124;')} | " + " | ".join(cells) + " |"
        )
    totals = [f"{sum(c[k] for c in counts[s].values()):,}" for s in tables for k in (0, 1)]
    return [*lines, "| | **total** | " + " | ".join(totals) + " |", ""]


def _class_counts(table: pa.Table) -> dict[tuple[int, str], list[int]]:
    """``(label, name) -> [originals, variants]`` of one split."""
    counts: dict[tuple[int, str], list[int]] = {}
    rows = zip(
        table.column("label").to_pylist(),
        table.column("label_name").to_pylist(),
        table.column("parent_sample_id").to_pylist(),
        strict=True,
    )
    for label, name, parent in rows:
        counts.setdefault((label, name), [0, 0])[parent is not None] += 1
    return counts


def _provenance_lines(lineage: dict[str, Any], ledger: pa.Table) -> list[str]:
    """Model and input tables, the policy, and what the ledger did with the training samples."""
    reasons = ledger.column("reason").to_pylist()
    outcomes = {
        "kept": reasons.count(None),
        **{r: reasons.count(r) for r in sorted({r for r in reasons if r is not None})},
    }
    return [
        "## Provenance",
        "",
        f"- Reference model: {lineage['model']['arch']}, sha256 `{lineage['model']['sha256']}`",
        *(
            f"- `{name}`: {t['rows']:,} rows, sha256 `{t['sha256'][:16]}`, "
            f"run {t['run_id'] or 'unknown'}"
            for name, t in lineage["tables"].items()
        ),
        "",
        "`lineage.json` holds the full sha256 of these tables and of every file of this export.",
        "",
        "## Policy",
        "",
        "```json",
        json.dumps(lineage["policy"], indent=2, sort_keys=True),
        "```",
        "",
        "## Ledger (input training samples)",
        "",
        count_table(outcomes, "outcome", "samples"),
        "",
    ]


# ---------------------------------------------------------------------------------------------
# writing the files


def _write_parquet(folder: Path, tables: dict[str, pa.Table], lineage: dict[str, Any]) -> None:
    """Write ``data/<split>-00000-of-00001.parquet``, keeping the Hugging Face features."""
    meta = {
        f"{META_PREFIX}table": "curated_dataset",
        f"{META_PREFIX}version": __version__,
        f"{META_PREFIX}policy": json.dumps(lineage["policy"], sort_keys=True),
        f"{META_PREFIX}model_sha256": lineage["model"]["sha256"],
        f"{META_PREFIX}upstream": json.dumps(
            {k: v["sha256"] for k, v in lineage["tables"].items()}, sort_keys=True
        ),
    }
    (folder / DATA_FOLDER).mkdir(exist_ok=True)
    for split, table in tables.items():
        merged = {
            **(table.schema.metadata or {}),
            **{k.encode(): v.encode() for k, v in meta.items()},
        }
        pq.write_table(
            table.replace_schema_metadata(merged),
            folder / data_file(split),
            compression="zstd",
            row_group_size=ROW_GROUP_ROWS,
        )


#: Longest file or folder name (before ``.png``) taken from a sample id or class name.
NAME_LIMIT = 100


def _class_folders(tables: dict[str, pa.Table]) -> dict[int, str]:
    """One folder name per label, the same in every split and distinct even ignoring case.

    A label gets :func:`safe_name` of its name; when a smaller label already has that name
    (say ``"a b"`` and ``"a_b"``, or ``"Cat"`` and ``"cat"``), the label's number is appended,
    then ``_`` until the name is free.
    """
    names: dict[int, str] = {}
    for table in tables.values():
        pairs = zip(
            table.column("label").to_pylist(), table.column("label_name").to_pylist(), strict=True
        )
        for label, name in sorted(set(pairs), key=lambda pair: (pair[0], str(pair[1]))):
            names.setdefault(label, str(label) if name is None else name)
    folders: dict[int, str] = {}
    taken: set[str] = set()
    for label in sorted(names):
        folder = safe_name(names[label])[:NAME_LIMIT]
        if folder.casefold() in taken:
            folder = f"{folder}_{label}"
        while folder.casefold() in taken:
            folder += "_"
        taken.add(folder.casefold())
        folders[label] = folder
    return folders


def _file_stems(sample_ids: list[str], where: str) -> list[str]:
    """Distinct file names (without ``.png``) for the samples of one folder, in order.

    A sample gets :func:`safe_name` of its id. Ids whose safe names coincide, also when only
    their case differs (as on macOS and Windows file systems), all get 16 hex digits of the
    sha256 of the exact id appended: ``"x y"`` and ``"x_y"`` become ``x_y-<hash>.png`` twice
    with different hashes, and so do names in other scripts, which all map to ``_``.

    Raises
    ------
    ExportError
        When names still coincide: the same sample id twice in one folder.
    """
    stems = [safe_name(i)[:NAME_LIMIT] for i in sample_ids]
    counts = Counter(stem.casefold() for stem in stems)
    stems = [
        stem if counts[stem.casefold()] == 1 else f"{stem}-{_short_hash(i)}"
        for stem, i in zip(stems, sample_ids, strict=True)
    ]
    seen: dict[str, int] = {}
    for row, stem in enumerate(stems):
        first = seen.setdefault(stem.casefold(), row)
        if first != row:
            raise ExportError(
                f"expected one file name per sample in {where}; found {sample_ids[first]!r} "
                f"and {sample_ids[row]!r} both named {stem}.png; give the samples distinct ids"
            )
    return stems


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_imagefolder(folder: Path, tables: dict[str, pa.Table]) -> None:
    """Write ``split/<class>/<sample>.png`` for every row and ``split/metadata.parquet``.

    Raises
    ------
    ExportError
        When a split's files do not number its rows (nothing may overwrite anything).
    """
    folders = _class_folders(tables)
    for split, table in tables.items():
        root = folder / safe_name(split)
        files = _write_images(root, table, folders, split)
        _check_file_count(root, split, table.num_rows)
        _write_metadata(root, table, files)


def _write_images(root: Path, table: pa.Table, folders: dict[int, str], split: str) -> list[str]:
    """Write one split's images under ``root/<class>/``; return each row's file from ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    ids = table.column("sample_id").to_pylist()
    blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
    by_folder: dict[str, list[int]] = {}
    for row, label in enumerate(table.column("label").to_pylist()):
        by_folder.setdefault(folders[label], []).append(row)
    files = [""] * table.num_rows
    for name, rows in by_folder.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        stems = _file_stems([ids[r] for r in rows], f"{split}/{name}")
        for row, stem in zip(rows, stems, strict=True):
            (root / name / f"{stem}.png").write_bytes(blobs[row])
            files[row] = f"{name}/{stem}.png"
    return files


def _write_metadata(root: Path, table: pa.Table, files: list[str]) -> None:
    """``root/metadata.parquet``: ``file_name``, then every column of ``table`` but the image.

    Typed as ``table`` (its ``datasets`` features too, so ``label`` stays a ``ClassLabel``); the
    Hugging Face ``imagefolder`` loader joins it on the images.
    """
    from datasets import Features, Value

    features = Features.from_arrow_schema(table.schema)
    kept = [name for name in table.column_names if name != "image"]
    meta = Features({"file_name": Value("string"), **{name: features[name] for name in kept}})
    columns = [pa.chunked_array([pa.array(files, pa.string())]), *map(table.column, kept)]
    metadata = pa.Table.from_arrays(columns, schema=meta.arrow_schema)
    pq.write_table(metadata, root / METADATA_FILE, compression="zstd")


def _check_file_count(root: Path, split: str, rows: int) -> None:
    files = sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0
    if files != rows:
        raise ExportError(
            f"expected {rows} image files in split {split}, one per row; found {files}; "
            "nothing was exported; report this with the dataset's sample ids"
        )


def _inputs(store: Store, dataset: str) -> list[tuple[str, Path]]:
    """The local files of the tables an export of ``dataset`` reads (URLs left out)."""
    return input_tables(store, dataset, (*UPSTREAM, "variants"))


def _protected(store: Store, dataset: str) -> list[tuple[str, Path]]:
    """The folders and files no export may replace, resolved: home, store, instance, inputs.

    Tables at an fsspec URL are not local files and are left out.
    """
    inputs = [(what, path.resolve()) for what, path in _inputs(store, dataset)]
    return [*owned_paths(store), *inputs]


def check_target(store: Store, target: Path, dataset: str, force: bool = False) -> None:
    """Refuse an export folder the product must not replace or write into.

    The rules are those of every path written for the user
    (:func:`robust_data.store.targets.check_output`): ``target`` (resolved, symlinks included) may
    not be, nor hold, the home, the storage root, the Dagster instance or a table the export
    reads; it may not lie inside an export (only ``<home>/exports/NAME`` or a folder outside
    the home is an export's own folder), in the storage root or the instance; it may not be,
    hold or lie in another robust-data home; and it may not be a file. ``--force`` overrides
    none of these, only "a non-empty folder that is not an export".

    Raises
    ------
    ExportError
        One line naming the folder it found and an --out that works.
    """
    example = store.home.resolve() / "exports" / safe_name(dataset)
    output = Output("an --out folder", "--out", example, folder=True)
    try:
        check_output(store, target, output, force, _inputs(store, dataset))
    except TargetError as error:
        raise ExportError(str(error)) from None


def _owner_tag() -> str:
    """``<host>-<pid>`` of this process, put in the names of its temporary folders."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


def _stale_folders(target: Path) -> tuple[list[Path], list[Path]]:
    """(temporary, old) folders beside ``target`` left by exports whose process is gone.

    Only names this module makes are considered: ``.<name>.<host>-<pid>-<random>.tmp`` and
    ``.<name>.old-<host>-<pid>`` (``.<name>.old-<pid>`` from earlier versions), with the host
    being this one and no process ``pid`` alive.
    """
    name = re.escape(target.name)
    patterns = {
        "tmp": re.compile(rf"\.{name}\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]+\.tmp"),
        "old": re.compile(rf"\.{name}\.old-(?:(?P<host>[A-Za-z0-9]+)-)?(?P<pid>\d+)"),
    }
    host = _owner_tag().rsplit("-", 1)[0]
    found: dict[str, list[Path]] = {"tmp": [], "old": []}
    if not target.parent.is_dir():
        return found["tmp"], found["old"]
    for entry in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(entry.name)
            if (
                match
                and match["host"] in (None, host)
                and entry.is_dir()
                and not entry.is_symlink()
                and not pid_alive(int(match["pid"]))
            ):
                found[kind].append(entry)
    return found["tmp"], found["old"]


@dataclass(frozen=True)
class StaleExports:
    """What :func:`remove_stale` cleared beside one export folder.

    Attributes
    ----------
    target : Path
        The export folder.
    removed : tuple of Path
        The temporary and old folders of stopped exports that are gone, ``restored`` included.
    restored : Path or None
        The ``.old-`` folder renamed back to ``target``: the previous export, which an export
        stopped between its two renames had moved aside.
    """

    target: Path
    removed: tuple[Path, ...] = ()
    restored: Path | None = None

    def lines(self) -> list[str]:
        """One line per folder, saying what became of it."""
        return [
            f"restored the previous export at {self.target}, which an export stopped between "
            f"its two renames had moved to {path}"
            if path == self.restored
            else f"removed {path}: left by an export that was stopped"
            for path in self.removed
        ]


def remove_stale(store: Store, target: Path, dataset: str) -> StaleExports:
    """Clear what killed exports left beside ``target``; say what became of each folder.

    When ``target`` itself is missing (an export was killed between its two renames), the
    newest stale ``.old-`` folder, the previous export, is renamed back to ``target`` first.
    Folders of live processes, of other hosts, and anything holding a protected path stay.
    """
    protected = [path for _, path in _protected(store, dataset)]
    tmps, olds = _stale_folders(target)
    tmps, olds = (
        [p for p in group if not any(inside(q, p.resolve()) for q in protected)]
        for group in (tmps, olds)
    )
    restored = None
    if olds and not target.exists():
        restored = max(olds, key=lambda path: path.stat().st_mtime)
        os.replace(restored, target)
    for path in (*tmps, *olds):
        if path != restored:
            shutil.rmtree(path, ignore_errors=True)
    gone = tuple(path for path in (*tmps, *olds) if not path.exists())
    return StaleExports(target, gone, restored)


def export_dataset(
    store: Store,
    dataset: str,
    out: str | os.PathLike[str],
    fmt: str = "parquet",
    with_variants: bool = False,
    force: bool = False,
    runs: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``dataset``'s curated training set and its test split (see the module docs).

    Raises
    ------
    ExportError
        Unknown format; an --out that is, holds or lies in the home's own folders (see
        :func:`check_target`, which --force does not override); or a non-empty target that
        is not an earlier export (without force).
    FileNotFoundError
        When an upstream table has not been materialized.
    """
    if fmt not in FORMATS:
        raise ExportError(f"expected a format in {FORMATS}; found {fmt!r}")
    target = Path(out).expanduser().resolve()
    check_target(store, target, dataset, force)
    stale = remove_stale(store, target, dataset)
    curated = store.read("curated_samples", dataset)
    tables = _split_tables(store, dataset, curated, with_variants)
    rows = {split: t.num_rows for split, t in tables.items()}
    lineage = _lineage(store, dataset, curated, runs or {}, rows, fmt, with_variants)
    ledger = store.read("curation_ledger", dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{_owner_tag()}-", suffix=".tmp", dir=target.parent)
    )
    try:
        tmp.chmod(default_mode(folder=True))  # mkdtemp's 0700 -> what mkdir gives (the umask)
        (tmp / "plots").mkdir()
        chart = class_count_chart(ledger, dict(enumerate(class_names(curated))))
        (tmp / "plots" / "class_counts.png").write_bytes(chart)
        if fmt == "parquet":
            _write_parquet(tmp, tables, lineage)
        else:
            _write_imagefolder(tmp, tables)
        (tmp / "README.md").write_text(_card(tmp, lineage, tables, ledger), encoding="utf-8")
        lineage["files"] = _file_hashes(tmp)
        text = json.dumps(lineage, indent=2, sort_keys=True)
        (tmp / "lineage.json").write_text(text, encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(target, fmt, rows, stale.removed, restored=stale.restored)


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` with renames; the old export is removed only at the end."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{_owner_tag()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# exports at the store URL

#: Published after every other file of an export, in this order: ``lineage.json`` (the sha256
#: of every other file) is the marker that the export is complete.
PUBLISHED_LAST = ("README.md", "lineage.json")


def publish_export(result: ExportResult, url: str) -> ExportResult:
    """Upload a local export to an fsspec URL prefix; the result names the URL.

    Every data file and plot goes up first, one object each, then ``README.md``, then
    ``lineage.json``; objects under ``url`` that this export does not hold are deleted last
    (see :func:`robust_data.store.store.publish_folder`). A reader can rely on each object being
    whole and on ``lineage.json`` being written after every file it lists; a reader that opens
    the export while a new one is uploading may see new data files with the old
    ``lineage.json`` (check the files' sha256 against it), and, until the upload ends, files
    the new export no longer has.

    Parameters
    ----------
    result : ExportResult
        A local export (:func:`export_dataset`); its folder is left as it is.
    url : str
        Where to publish it: ``<store URL>/exports/<dataset>`` (:meth:`Store.export_location`).

    Returns
    -------
    ExportResult
        ``result`` with ``location`` set to ``url`` and the files' sha256 from its lineage.
    """
    lineage = json.loads((result.path / "lineage.json").read_text(encoding="utf-8"))
    publish_folder(result.path, url, last=PUBLISHED_LAST)
    return replace(result, location=url.rstrip("/"), hashes=dict(lineage["files"]))


def export_to_store(
    store: Store,
    dataset: str,
    fmt: str = "parquet",
    with_variants: bool = False,
    runs: dict[str, str] | None = None,
    scratch: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export ``dataset`` to :meth:`Store.export_location`: the home, or the store URL.

    Locally this is :func:`export_dataset` into ``<home>/exports/<dataset>``. With a store URL
    the export is written into a private temporary folder (``tempfile.mkdtemp`` under
    ``scratch``, default the system's temporary folder, which must lie outside the home), then
    published to ``<store URL>/exports/<dataset>`` by :func:`publish_export`; the temporary
    folder is removed whether or not that succeeds.

    Returns
    -------
    ExportResult
        For a published export, ``location`` is the URL and ``path`` the removed folder.

    Raises
    ------
    ExportError, FileNotFoundError
        As :func:`export_dataset`.
    """
    location = store.export_location(dataset)
    if not is_url(location):
        return export_dataset(store, dataset, location, fmt, with_variants, runs=runs)
    staging = Path(tempfile.mkdtemp(prefix="robust-data-export-", dir=scratch))
    try:
        local = export_dataset(
            store, dataset, staging / safe_name(dataset), fmt, with_variants, runs=runs
        )
        return publish_export(local, location)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
