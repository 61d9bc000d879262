"""Export a curated dataset as Parquet or an ImageFolder, with a dataset card and lineage.

Parquet: one file per split (``train.parquet``, ``test.parquet``) in the samples-table layout
with the image as a ``{bytes, path}`` struct, so Hugging Face ``datasets``, pyarrow and DuckDB
read it directly, and every score column joined on. ImageFolder: ``split/label/sample.png``.
Both get ``README.md`` (the dataset card), ``lineage.json`` and ``plots/``. The export is
written into a temporary folder beside the target and swapped in at the end, so a failure
leaves the previous export as it was; folders that a killed export left beside the target are
removed (or the previous export restored) by the next export to that target. An export never
replaces or writes into the home, the storage root, the Dagster instance or the tables it reads,
nor anywhere inside the home other than ``<home>/exports/``.
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
from robust_data.markdown import count_table
from robust_data.schema import META_PREFIX, column_by_id, read_params, table_metadata
from robust_data.store import (
    ROW_GROUP_ROWS,
    Store,
    is_url,
    local_path,
    pid_alive,
    read_bytes,
    table_location,
)
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
    """Where the export went and what it holds.

    ``removed`` lists the folders that killed exports had left beside the target and that this
    export removed (a previous export restored from one of them is listed too).
    """

    path: Path
    format: str
    rows: dict[str, int]  # split -> rows
    removed: tuple[Path, ...] = ()

    def files_table(self, source: str = "curated_samples, variants, raw_samples") -> pa.Table:
        """One row per exported Parquet file: split, path, rows, sha256; with table metadata.

        Only for the Parquet format (``<split>.parquet`` per split).
        """
        files = [self.path / f"{split}.parquet" for split in self.rows]
        table = pa.table(
            {
                "split": list(self.rows),
                "path": [str(f) for f in files],
                "rows": list(self.rows.values()),
                "sha256": [file_sha256(f) for f in files],
            }
        )
        params = {"format": self.format, "export": str(self.path)}
        return table.replace_schema_metadata(table_metadata("curated_dataset", source, params))


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
    policy = read_params(curated.schema)
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
        f"Exported {lineage['created']} as {lineage['export_format']}; "
        f"code revision {lineage['code_revision']}.",
        "Training samples were kept by the policy below; "
        "the test split is the dataset's own, untouched.",
        "",
        "## Provenance",
        "",
        f"- Reference model: {lineage['model']['arch']}, sha256 `{lineage['model']['sha256']}`",
        *(
            f"- `{name}`: {t['rows']:,} rows, sha256 `{t['sha256'][:16]}`, "
            f"run {t['run_id'] or 'unknown'}"
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
        count_table(
            {
                "kept": reasons.count(None),
                **{r: reasons.count(r) for r in sorted({r for r in reasons if r is not None})},
            },
            "outcome",
            "samples",
        ),
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
        pq.write_table(
            table, folder / f"{split}.parquet", compression="zstd", row_group_size=ROW_GROUP_ROWS
        )


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
    """Write ``split/<class>/<sample>.png``: one file per row of every split.

    Raises
    ------
    ExportError
        When a split's files do not number its rows (nothing may overwrite anything).
    """
    folders = _class_folders(tables)
    for split, table in tables.items():
        ids = table.column("sample_id").to_pylist()
        blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
        by_folder: dict[str, list[int]] = {}
        for row, label in enumerate(table.column("label").to_pylist()):
            by_folder.setdefault(folders[label], []).append(row)
        for name, rows in by_folder.items():
            target = folder / safe_name(split) / name
            target.mkdir(parents=True, exist_ok=True)
            stems = _file_stems([ids[r] for r in rows], f"{split}/{name}")
            for row, stem in zip(rows, stems, strict=True):
                (target / f"{stem}.png").write_bytes(blobs[row])
        _check_file_count(folder / safe_name(split), split, table.num_rows)


def _check_file_count(root: Path, split: str, rows: int) -> None:
    files = sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0
    if files != rows:
        raise ExportError(
            f"expected {rows} image files in split {split}, one per row; found {files}; "
            "nothing was exported; report this with the dataset's sample ids"
        )


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / "lineage.json").read_text()).get("format") == MARKER
    except (OSError, ValueError):
        return False


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or folder in path.parents


def _protected(store: Store, dataset: str) -> list[tuple[str, Path]]:
    """The folders and files no export may replace, resolved: home, store, instance, inputs.

    Tables at an fsspec URL are not local files and are left out.
    """
    found = [
        ("home", store.home),
        ("storage root", store.storage_root),
        ("Dagster instance", store.dagster_home),
    ]
    for name in (*UPSTREAM, "variants"):
        location = table_location(store.tables_root, name, dataset)
        if not is_url(location):
            found.append((f"input table {name}", local_path(location)))
    return [(what, path.resolve()) for what, path in found]


def check_target(store: Store, target: Path, dataset: str) -> None:
    """Refuse an export folder that would replace or sit in the store's own folders.

    ``target`` (resolved, symlinks included) may not be, nor hold, the home, the storage root,
    the Dagster instance or a table the export reads; inside the home or the storage root it
    must lie under ``<home>/exports/``; it may not lie in the Dagster instance; and it may not
    be a file. ``--force`` overrides none of these.

    Raises
    ------
    ExportError
        One line naming the folder it found and an --out that works.
    """
    exports = store.home.resolve() / "exports"
    example = f"choose another --out, e.g. {exports / safe_name(dataset)}"
    for what, path in _protected(store, dataset):
        if _inside(path, target):
            relation = "is" if path == target else "holds"
            raise ExportError(
                "expected an --out folder apart from the home, storage root, Dagster instance "
                f"and input tables; found {target}, which {relation} the {what} {path}; {example}"
            )
    for what, folder in (
        ("Dagster instance", store.dagster_home.resolve()),
        ("storage root", store.storage_root.resolve()),
        ("home", store.home.resolve()),
    ):
        in_exports = exports in target.parents and what != "Dagster instance"
        if _inside(target, folder) and not in_exports:
            raise ExportError(
                f"expected an --out folder under {exports} or outside the home; "
                f"found {target}, inside the {what} {folder}; {example}"
            )
    if target.exists() and not target.is_dir():
        raise ExportError(
            f"expected --out to be a folder; found a file at {target}; "
            "choose another --out, or move the file away"
        )


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


def remove_stale(store: Store, target: Path, dataset: str) -> tuple[Path, ...]:
    """Clear what killed exports left beside ``target``; return the paths that are gone.

    When ``target`` itself is missing (an export was killed between its two renames), the
    newest stale ``.old-`` folder, the previous export, is renamed back to ``target`` first.
    Folders of live processes, of other hosts, and anything holding a protected path stay.
    """
    protected = [path for _, path in _protected(store, dataset)]
    tmps, olds = _stale_folders(target)
    tmps, olds = (
        [p for p in group if not any(_inside(q, p.resolve()) for q in protected)]
        for group in (tmps, olds)
    )
    if olds and not target.exists():
        newest = max(olds, key=lambda path: path.stat().st_mtime)
        os.replace(newest, target)
    for path in (*tmps, *olds):
        shutil.rmtree(path, ignore_errors=True)
    return tuple(path for path in (*tmps, *olds) if not path.exists())


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
        Unknown format; an --out that is, holds or lies in the home's own folders (see
        :func:`check_target`, which --force does not override); or a non-empty target that
        is not an earlier export (without force).
    FileNotFoundError
        When an upstream table has not been materialized.
    """
    if fmt not in FORMATS:
        raise ExportError(f"expected a format in {FORMATS}; found {fmt!r}")
    target = Path(out).expanduser().resolve()
    check_target(store, target, dataset)
    removed = remove_stale(store, target, dataset)
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
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{_owner_tag()}-", suffix=".tmp", dir=target.parent)
    )
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
    return ExportResult(target, fmt, rows, removed)


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
