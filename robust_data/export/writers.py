"""Write the export tables as Parquet or as an ImageFolder.

Parquet: ``data/<split>-00000-of-00001.parquet`` (the Hugging Face layout), the image a
``{bytes, path}`` struct, the schema carrying Hugging Face ``datasets`` features (``Image``,
``ClassLabel`` with the class names), so ``datasets``, pandas, pyarrow and DuckDB read
``data/`` directly. ImageFolder: ``<split>/<class>/<sample>.png`` plus
``<split>/metadata.parquet`` holding every other column (``file_name`` relative to the split
folder), which ``datasets``' ``imagefolder`` joins on.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.export.layout import (
    DATA_FOLDER,
    METADATA_FILE,
    ExportError,
    data_file,
    safe_name,
)
from robust_data.io.parquet import ROW_GROUP_ROWS
from robust_data.store.schema import META_PREFIX
from robust_data.version import __version__


def write_data(
    folder: Path, fmt: str, tables: dict[str, pa.Table], lineage: dict[str, Any]
) -> None:
    """Write the tables into ``folder`` in format ``fmt`` (``parquet`` or ``imagefolder``)."""
    if fmt == "parquet":
        write_parquet(folder, tables, lineage)
    else:
        write_imagefolder(folder, tables)


def write_parquet(folder: Path, tables: dict[str, pa.Table], lineage: dict[str, Any]) -> None:
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
                f"one file name per sample in {where}",
                f"{sample_ids[first]!r} and {sample_ids[row]!r} both named {stem}.png",
                "give the samples distinct ids",
            )
    return stems


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_imagefolder(folder: Path, tables: dict[str, pa.Table]) -> None:
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
            f"{rows} image files in split {split}, one per row",
            str(files),
            "nothing was exported; report this with the dataset's sample ids",
        )
