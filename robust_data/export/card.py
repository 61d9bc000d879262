"""What an export was made from and holds: ``lineage.json`` and the dataset card (``README.md``).

The lineage names every input table (paths relative to the home, sha256, rows, run: the
:data:`UPSTREAM` tables, the variants when the export holds them, ``oof_predictions`` when
stored, the report when the card shows it), the reference model, the policy and the source's
license, and records what the export holds (``contents``: rows per split, originals, variants
per transform, why variants are or are not in it), how its samples were judged (``judged``:
RPR, cleanlab, folds, preset, rules, variant plan, the variants' own settings), the ledger file
(``ledger``: per-class outcomes) and the report (``report``); ``files`` (the sha256 of every
exported file) is added once the files are written. The card opens with Hugging Face YAML
(configs, dataset_info, license), then says what the export holds, how to load it, what each
column holds, the rows per class, how samples were judged, the report's verdicts, the
provenance, the policy and the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.export.contents import VariantChoice, contents_record
from robust_data.export.judged import RPR_COLUMNS, judging_lines, judging_record
from robust_data.export.layout import DATA_FOLDER, MARKER, data_file, safe_name
from robust_data.export.ledger_file import (
    LEDGER_COLUMNS,
    LEDGER_FILE,
    class_outcome_lines,
    class_outcomes,
)
from robust_data.export.tables import UPSTREAM
from robust_data.export.verdicts import REPORT_TABLE, ReportFinding, report_lines
from robust_data.io.files import file_sha256, is_url, local_path, read_bytes
from robust_data.present.markdown import count_table, markdown_cell
from robust_data.store.home import table_location
from robust_data.store.schema import describe, read_metadata, read_params
from robust_data.store.store import Store
from robust_data.version import __version__, code_revision

if TYPE_CHECKING:
    from huggingface_hub import DatasetCardData


#: Licenses of registry sources whose publishers state one: (Hugging Face id, who states it).
SOURCE_LICENSES: dict[str, tuple[str, str]] = {
    "digits": ("cc-by-4.0", "the UCI Machine Learning Repository (Optical Recognition of Digits)"),
    "fashion-mnist": ("mit", "Zalando Research's Fashion-MNIST repository"),
    "kmnist": ("cc-by-sa-4.0", "ROIS-DS CODH's Kuzushiji-MNIST repository"),
}


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


#: Stored tables the lineage names when the store has them (and, for the report, when the card
#: shows it), besides :data:`UPSTREAM` and the variants of an export that holds them.
OPTIONAL_TABLES = ("oof_predictions", REPORT_TABLE)
#: Every table whose latest run the callers look up for the lineage (``runs``).
LINEAGE_TABLES = (*UPSTREAM, "variants", *OPTIONAL_TABLES)


def lineage_tables(
    store: Store, dataset: str, choice: VariantChoice, report: ReportFinding
) -> tuple[str, ...]:
    """The stored tables an export names in its lineage: what it was made from."""
    names = [*UPSTREAM, *(("variants",) if choice.included else ())]
    if store.has("oof_predictions", dataset):
        names.append("oof_predictions")
    if report.status == "included":
        names.append(REPORT_TABLE)
    return tuple(names)


def build_lineage(
    store: Store,
    dataset: str,
    curated: pa.Table,
    runs: dict[str, str],
    fmt: str,
    export: ExportParts,
) -> dict[str, Any]:
    """What the export was made from, what it holds and how its samples were judged; paths
    relative to the home. ``files`` is added later."""
    tables, schemas, rpr_columns = {}, {}, {}
    for name in lineage_tables(store, dataset, export.choice, export.report):
        location = table_location(store.tables_root, name, dataset)
        data = read_bytes(location)
        schemas[name] = pq.read_schema(pa.BufferReader(data))
        tables[name] = {
            "path": _relative(location, store.home),
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": pq.read_metadata(pa.BufferReader(data)).num_rows,
            "run_id": runs.get(name),
        }
        if name == "rpr_scores":
            kept = [c for c in RPR_COLUMNS if c in schemas[name].names]
            found = pq.read_table(pa.BufferReader(data), columns=kept)
            rpr_columns = {c: found.column(c).unique().to_pylist() for c in kept}
    model = store.read("reference_model", dataset).to_pylist()[0]
    source = _source_label(read_metadata(schemas["raw_samples"]).get("source", "unknown"))
    policy = read_params(curated.schema)
    report_md = _relative(f"{store.report_location(dataset)}/report.md", store.home)
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
        "policy": policy,
        "model": {
            "path": _relative(model["path"], store.home),
            "sha256": model["sha256"],
            "arch": model["arch"],
            "config": json.loads(model["config"]),
            # your own model (README 'Your own model'): its kind, source and file's sha256
            "kind": model.get("model_kind") or "builtin",
            "source": model.get("model_source") or model["arch"],
            "source_sha256": model.get("model_sha256"),
        },
        "tables": tables,
        "rows": {split: t.num_rows for split, t in export.tables.items()},
        "contents": contents_record(export.tables, export.choice),
        "judged": judging_record(schemas, rpr_columns, policy),
        "ledger": {
            "file": LEDGER_FILE,
            "columns": list(LEDGER_COLUMNS),
            "rows": export.ledger.num_rows,
            "per_class": {str(k): v for k, v in class_outcomes(export.ledger).items()},
        },
        "report": export.report.record(report_md),
    }


@dataclass(frozen=True)
class ExportParts:
    """What an export is written from: its split tables and the facts its card states.

    Attributes
    ----------
    tables : dict of str to pa.Table
        Split name -> the rows of that split (one schema).
    ledger : pa.Table
        The stored ``curation_ledger``.
    choice : VariantChoice
        Whether the train split holds variants, and why.
    report : ReportFinding
        The robustness report shown on the card, or why none is.
    """

    tables: dict[str, pa.Table]
    ledger: pa.Table
    choice: VariantChoice
    report: ReportFinding


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but its ``lineage.json``, by POSIX relative path."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != folder / "lineage.json"
    }


def dataset_card(folder: Path, lineage: dict[str, Any], export: ExportParts) -> str:
    """The dataset card: Hugging Face YAML front matter, then what a reader needs to know."""
    from huggingface_hub import DatasetCard

    header = _card_data(folder, lineage, export.tables).to_yaml()
    body = _card_body(lineage, export)
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


def _card_body(lineage: dict[str, Any], export: ExportParts) -> str:
    """The card's markdown: what it holds, license, how to load, columns, counts, how samples
    were judged, the report, provenance, policy, ledger, plots."""
    tables = export.tables
    schema = next(iter(tables.values())).schema
    lines = [
        f"# {lineage['dataset']} (curated by robust-data {lineage['robust_data_version']})",
        "",
        f"Exported {lineage['created']} as {lineage['export_format']}; "
        f"code revision {lineage['code_revision']}; source `{lineage['source']}`. "
        "Training samples were kept by the policy below; "
        "the test split is the dataset's own, untouched.",
        "",
        *_contents_lines(lineage["contents"]),
        *_license_lines(lineage),
        *_load_lines(lineage["export_format"]),
        *_column_lines(schema),
        *_count_lines(tables),
        *judging_lines(lineage, export.choice.sentence()),
        *report_lines(
            export.report, lineage["report"].get("report_md", ""), lineage["rows"]["train"]
        ),
        *_provenance_lines(lineage, export.ledger, _label_names(schema)),
        "## Plots",
        "",
        "![samples per class before and after curation](plots/class_counts.png)",
        "",
    ]
    return "\n".join(lines)


def _label_names(schema: pa.Schema) -> list[str]:
    """The export's class names, indexed by label (its ``ClassLabel``'s)."""
    from datasets import Features

    return list(Features.from_arrow_schema(schema)["label"].names)


def _contents_lines(contents: dict[str, Any]) -> list[str]:
    """What this export holds: rows per split, originals and variants, variants per transform."""
    splits = contents["splits"]
    lines = [
        "## What this export holds",
        "",
        "| split | rows | originals | variants |",
        "|---|---:|---:|---:|",
        *(
            f"| {split} | {c['rows']:,} | {c['originals']:,} | {c['variants']:,} |"
            for split, c in splits.items()
        ),
        "",
        contents["why"],
        "",
    ]
    transforms = {
        (split, name): count
        for split, c in splits.items()
        for name, count in c["per_transform"].items()
    }
    if transforms:
        lines += [
            "| split | transform | variants |",
            "|---|---|---:|",
            *(f"| {split} | `{name}` | {n:,} |" for (split, name), n in transforms.items()),
            "",
        ]
    lines += [
        f"`{LEDGER_FILE}` lists every input training sample with what curation did to it "
        "(kept, or the rule that dropped it); see Ledger below.",
        "",
    ]
    return lines


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


#: Which values of an exported column are bad (the card's "bad when" column; "-" for the rest).
BAD_WHEN = {
    "clean_pred": "≠ label",
    "clean_correct": "false",
    "steps_to_flip": "low",
    "robust": "false",
    "label_quality": "low",
    "is_label_issue": "true",
    "suggested_label": "≠ label",
    "outlier_score": "low",
    "is_outlier": "true",
    "near_duplicate_group": "set",
}


def _column_lines(schema: pa.Schema) -> list[str]:
    """One row per column: name, ``datasets`` type, meaning (the field's description), which
    values are bad."""
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    lines = ["## Columns", "", "| column | type | meaning | bad when |", "|---|---|---|---|"]
    for name, feature in features.items():
        meaning, bad = describe(schema.field(name)), BAD_WHEN.get(name, "-")
        lines.append(f"| `{name}` | {_feature_type(feature)} | {meaning} | {bad} |")
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
        lines.append(f"| {label} | {markdown_cell(name)} | " + " | ".join(cells) + " |")
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


def _provenance_lines(lineage: dict[str, Any], ledger: pa.Table, names: list[str]) -> list[str]:
    """Model and input tables, the policy, and what the ledger did with the training samples."""
    reasons = ledger.column("reason").to_pylist()
    outcomes = {
        "kept": reasons.count(None),
        **{r: reasons.count(r) for r in sorted({r for r in reasons if r is not None})},
    }
    rules = {k: v for k, v in lineage["policy"].items() if k != "plan"}
    per_class = {int(k): v for k, v in lineage["ledger"]["per_class"].items()}
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
        "`lineage.json` holds the full sha256 of these tables and of every file of this export, "
        "and the settings above (`contents`, `judged`, `ledger`, `report`).",
        "",
        "## Policy",
        "",
        "The curation's parameters as `curated_samples` recorded them (the variant plan is "
        "under How samples were judged):",
        "",
        "```json",
        json.dumps(rules, indent=2, sort_keys=True),
        "```",
        "",
        "## Ledger (input training samples)",
        "",
        count_table(outcomes, "outcome", "samples"),
        "",
        "Per class (by stored label; a relabelled sample trains under its new label):",
        "",
        *class_outcome_lines(per_class, names),
        "",
        f"`{LEDGER_FILE}`: one row per input training sample, columns "
        + ", ".join(f"`{c}`" for c in LEDGER_COLUMNS)
        + ". `reason` is the first rule a dropped sample failed (empty when kept); `review` "
        "and `overridden` show a human decision that changed the outcome; `new_label` is the "
        "label a repaired or relabelled sample trains with. CSV, so that no reader globbing "
        "this export's Parquet files takes it for a split; text cells starting with `=`, `+`, "
        "`-` or `@` carry a leading `'`.",
        "",
    ]
