"""User data: a Parquet table (a file or a folder of files) of encoded images and labels.

Column names follow common exports (Hugging Face ``datasets`` among them); splits come from a
``split`` column or the file names. Unreadable images become rejects (key and reason) instead
of failing the whole dataset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.errors import DatasetError
from robust_data.ingest.sources.base import (
    SHOWN_ROWS,
    LoadOptions,
    SourceData,
    decode_all,
    hidden_note,
    integer_labels,
    is_hidden,
)
from robust_data.ingest.splits import is_split_name, split_mapping

IMAGE_COLUMNS = ("image", "img", "images")
LABEL_COLUMNS = ("label", "labels", "fine_label", "target")
PARQUET_TRAIN_FIX = (
    "add rows with split 'train', or drop the split column (and train*/test* file names) so "
    "that ingest splits the data"
)


def _pick(names: list[str], candidates: tuple[str, ...], what: str, path: Path) -> str:
    for candidate in candidates:
        if candidate in names:
            return candidate
    raise DatasetError(
        f"a {what} column named one of {list(candidates)}",
        f"columns {names} in {path}",
        f"rename the {what} column",
    )


def _image_blobs(
    column: pa.ChunkedArray, path: Path
) -> tuple[list[bytes | None], list[str | None]]:
    """Image bytes from a binary column or an HF-style ``{bytes, path}`` struct column."""
    kind = column.type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        blobs = column.combine_chunks().field("bytes").to_pylist()
        has_path = kind.get_field_index("path") >= 0
        paths = (
            column.combine_chunks().field("path").to_pylist() if has_path else [None] * len(blobs)
        )
        return blobs, paths
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.to_pylist(), [None] * len(column)
    raise DatasetError(
        "an image column of PNG/JPEG bytes or a {bytes, path} struct",
        f"type {kind} in {path}",
        "store images encoded, not as arrays",
    )


def _hf_class_names(schema: pa.Schema, label_column: str) -> list[str] | None:
    """Class names from Hugging Face ``datasets`` metadata (a ClassLabel feature), if present."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    feature = json.loads(raw).get("info", {}).get("features", {}).get(label_column, {})
    names = feature.get("names") if isinstance(feature, dict) else None
    return list(names) if names else None


def _parquet_files(target: Path, hidden: list[str]) -> list[Path]:
    """``target`` itself, or the ``.parquet`` files under it outside hidden files and folders
    (each hidden file or folder skipped is appended to ``hidden``)."""
    if target.is_file():
        return [target]
    if target.is_dir():
        files = []
        for path in sorted(target.rglob("*.parquet")):
            parts = path.relative_to(target).parts
            first = next((i for i, part in enumerate(parts) if is_hidden(part)), None)
            if first is None:
                files.append(path)
            elif (shown := "/".join(parts[: first + 1])) not in hidden:
                hidden.append(shown)
        if files:
            return files
    raise DatasetError(
        "parquet:PATH to a .parquet file or a folder of them",
        f"nothing readable at {target}",
        "check the path after 'parquet:'",
    )


#: A split name at the start of a file name: ``train*``, ``test*``, ``val``/``valid``/``validation``
#: followed by a non-letter (``validation-00000-of-00001.parquet``, not ``values.parquet``).
SPLIT_PREFIX = re.compile(r"^(train|test|(?:validation|valid|val)(?![a-z]))")


def _split_from_filename(path: Path) -> str | None:
    """The split word a file's name starts with, or its folder's name if that is one."""
    match = SPLIT_PREFIX.match(path.name.lower())
    if match:
        return match.group(1)
    return path.parent.name if is_split_name(path.parent.name) else None


def _null_rows(column: pa.ChunkedArray) -> list[int]:
    """Indices of the first few null rows of ``column``."""
    nulls = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
    return nulls[:SHOWN_ROWS].tolist()


def _file_labels(column: pa.ChunkedArray, name: str, path: Path) -> np.ndarray | list[str]:
    """One file's label column as int64 class indices, or as class-name strings.

    Raises
    ------
    DatasetError
        Nulls, or values that are not one integer (1.0 counts) or one string per row.
    """
    where = f"column {name!r} of {path}"
    if pa.types.is_dictionary(column.type):  # pandas categoricals
        column = column.cast(column.type.value_type)
    kind = column.type
    if column.null_count:
        raise DatasetError(
            "a label on every row",
            f"{column.null_count} null labels (rows {_null_rows(column)}) in {where}",
            "drop or fix those rows",
        )
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_pylist()
    if pa.types.is_decimal(kind):
        column, kind = column.cast(pa.float64()), pa.float64()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return integer_labels(column.to_numpy(), where)
    raise DatasetError(
        "one integer or string label per row",
        f"labels of type {kind} in {where}",
        "store one class per row, as an integer index or a name",
    )


def _names_by_label(
    labels: np.ndarray, names: list[str | None], keys: list[str], path: Path
) -> dict[int, str]:
    """``{label: name}`` from a ``label_name`` column; refuse nulls and two names for one label."""
    first: dict[int, int] = {}  # label -> first row
    for row, (label, name) in enumerate(zip(labels.tolist(), names, strict=True)):
        if name is None:
            raise DatasetError(
                "a label_name on every row", f"null at row {keys[row]} in {path}", "fill it in"
            )
        seen = first.setdefault(label, row)
        if names[seen] != name:
            raise DatasetError(
                "one label_name per label",
                f"label {label} named {names[seen]!r} (row {keys[seen]}) and {name!r} "
                f"(row {keys[row]}) in {path}",
                "make label_name the same on every row of that label, or fix the label",
            )
    mapping = {label: str(names[row]) for label, row in sorted(first.items())}
    owner: dict[str, int] = {}
    for label, name in mapping.items():
        other = owner.setdefault(name, label)
        if other != label:
            raise DatasetError(
                "a different label_name for each label",
                f"{name!r} for labels {other} and {label} in {path}",
                "give each label its own name, or the rows of one class the same label",
            )
    return mapping


def _labels_and_names(
    per_file: list[np.ndarray | list[str]],
    names_from_meta: list[str] | None,
    names_column: list[str | None] | None,
    keys: list[str],
    path: Path,
) -> tuple[np.ndarray, list[str]]:
    """Join the files' labels; class names from strings, HF metadata, ``label_name`` or ids."""
    if all(isinstance(v, list) for v in per_file):
        values = [v for part in per_file for v in part]
        names = sorted(set(values))
        index = {n: i for i, n in enumerate(names)}
        return np.asarray([index[v] for v in values], dtype=np.int64), names
    if any(isinstance(v, list) for v in per_file):
        raise DatasetError(
            "labels of one kind in every file: all integers or all names",
            f"integer labels in some files and names in others under {path}",
            "store the labels the same way in every file",
        )
    labels = np.concatenate(per_file) if per_file else np.zeros(0, dtype=np.int64)
    mapping = _names_by_label(labels, names_column, keys, path) if names_column else {}
    if names_from_meta:
        clash = [
            (i, n)
            for i, n in mapping.items()
            if i < len(names_from_meta) and names_from_meta[i] != n
        ]
        if clash:
            label, name = clash[0]
            raise DatasetError(
                "label_name agreeing with the class names in the Hugging Face metadata",
                f"label {label} named {name!r} in label_name "
                f"but {names_from_meta[label]!r} in the metadata of {path}",
                "fix the label_name column or the metadata",
            )
        return labels, names_from_meta
    top = int(labels.max()) + 1 if len(labels) else 0
    return labels, [mapping.get(i, str(i)) for i in range(top)]


def _file_splits(table: pa.Table, path: Path) -> list[str | None]:
    """Per row, the split word of its ``split`` column or its file name (None: no split)."""
    if "split" not in table.schema.names:
        return [_split_from_filename(path)] * table.num_rows
    column = table.column("split")
    if column.null_count:
        count = column.null_count
        raise DatasetError(
            "a split on every row of the 'split' column",
            f"{count} null value{'s' if count > 1 else ''} (rows {_null_rows(column)}) in {path}",
            "fill in train or test on those rows, "
            "or drop the split column so that ingest splits the data",
        )
    return [str(v) for v in column.to_pylist()]


def _joined_splits(splits: list[str | None], keys: list[str], target: Path) -> list[str] | None:
    """Every row's split as train/test, or None when no row has one; refuse a mixture."""
    missing = [k for k, s in zip(keys, splits, strict=True) if s is None]
    if len(missing) == len(splits):
        return None
    if missing:
        raise DatasetError(
            "a split for every row (a split column or train*/test* file names) or for none",
            f"{len(missing)} rows without a split (rows {missing[:SHOWN_ROWS]}) beside "
            f"{len(splits) - len(missing)} with one in {target}",
            "give those files a split column or a train*/test* name, or drop the splits everywhere",
        )
    mapping = split_mapping({s for s in splits if s is not None}, str(target))
    return [mapping[s] for s in splits if s is not None]


def load_parquet(target: Path | None, options: LoadOptions) -> SourceData:
    """Read a Parquet file (or folder of files): image, label and optional split columns.

    Splits come from a ``split`` column, else from file names starting with a split name (the
    layout of Hugging Face exports), else the dataset is split later; a validation split is
    the test split when there is no test split. Rows with and without a split are refused.
    """
    if target is None:
        raise DatasetError(
            "parquet:PATH", "no path", "write the dataset as parquet:/path/to/file.parquet"
        )
    hidden: list[str] = []
    files = _parquet_files(target, hidden)
    blobs: list[bytes | None] = []
    paths: list[str | None] = []
    per_file: list[np.ndarray | list[str]] = []
    names_column: list[str | None] | None = []
    splits: list[str | None] = []
    keys: list[str] = []
    hf_names: list[str] | None = None
    for path in files:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(
                "a readable Parquet file", f"{path}: {exc}", "rewrite or remove the file"
            ) from exc
        names = table.schema.names
        image_col = _pick(names, IMAGE_COLUMNS, "image", path)
        label_col = _pick(names, LABEL_COLUMNS, "label", path)
        file_blobs, file_paths = _image_blobs(table.column(image_col), path)
        blobs.extend(file_blobs)
        paths.extend(file_paths)
        per_file.append(_file_labels(table.column(label_col), label_col, path))
        hf_names = hf_names or _hf_class_names(table.schema, label_col)
        if names_column is not None and "label_name" in names:
            names_column.extend(table.column("label_name").to_pylist())
        else:
            names_column = None
        splits.extend(_file_splits(table, path))
        stem = path.relative_to(target).as_posix() if target.is_dir() else ""
        keys.extend(f"{stem}#{i}" if stem else str(i) for i in range(table.num_rows))
    labels_all, label_names = _labels_and_names(per_file, hf_names, names_column, keys, target)
    joined = _joined_splits(splits, keys, target)
    pixels, kept, rejects, notes = decode_all(
        blobs, keys, options.channels, desc=f"decode {target.name}"
    )
    return SourceData(
        pixels=pixels,
        labels=labels_all[kept] if kept else np.zeros(0, dtype=np.int64),
        label_names=label_names,
        keys=[keys[i] for i in kept],
        splits=[joined[i] for i in kept] if joined is not None else None,
        paths=[paths[i] for i in kept],
        rejects=rejects,
        params={
            "path": str(target),
            "files": [str(p) for p in files],
            "hidden_skipped": len(hidden),
        },
        notes=hidden_note(hidden) + notes,
        missing_train_fix=PARQUET_TRAIN_FIX,
    )
