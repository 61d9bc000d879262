"""User data: an image folder (one subfolder per class) or a Parquet table of encoded images.

Unreadable images become rejects (key and reason) instead of failing the whole dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.errors import DatasetError
from robust_data.sources.base import LoadOptions, SourceData, decode_all

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SPLIT_NAMES = ("train", "test")
IMAGE_COLUMNS = ("image", "img", "images")
LABEL_COLUMNS = ("label", "labels", "fine_label", "target")


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_imagefolder(root: Path | None, options: LoadOptions) -> SourceData:
    """Read ``ROOT/<class>/**/*.{png,jpg,jpeg}``, or ``ROOT/{train,test}/<class>/...``.

    Classes are the sorted subfolder names; files with other suffixes are ignored.
    """
    if root is None or not root.is_dir():
        raise DatasetError(
            "imagefolder:PATH to a folder with one subfolder per class",
            f"{root} is not a folder",
            "check the path after 'imagefolder:'",
        )
    top = _class_dirs(root)
    split_layout = bool(top) and {p.name for p in top} <= set(SPLIT_NAMES)
    split_dirs = [(p.name, p) for p in top] if split_layout else [(None, root)]
    names = sorted({c.name for _, d in split_dirs for c in _class_dirs(d)})
    if not names:
        raise DatasetError(
            "one subfolder per class with PNG/JPEG files",
            f"no subfolders in {root}",
            "arrange images as ROOT/<class>/<file>.png",
        )
    index = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    for split, directory in split_dirs:
        for class_dir in _class_dirs(directory):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(path)
                    labels.append(index[class_dir.name])
                    splits.append(split or "")
    keys = [p.relative_to(root).as_posix() for p in files]
    blobs = [p.read_bytes() for p in files]
    pixels, kept, rejects = decode_all(blobs, keys, options.channels, desc=f"decode {root.name}")
    return SourceData(
        pixels=pixels,
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        label_names=names,
        keys=[keys[i] for i in kept],
        splits=[splits[i] for i in kept] if split_layout else None,
        paths=[keys[i] for i in kept],
        rejects=rejects,
        params={
            "root": str(root),
            "layout": "split/class" if split_layout else "class",
            "files": len(files),
        },
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


def _parquet_files(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*.parquet") if not p.name.startswith("."))
        if files:
            return files
    raise DatasetError(
        "parquet:PATH to a .parquet file or a folder of them",
        f"nothing readable at {target}",
        "check the path after 'parquet:'",
    )


def _split_from_filename(path: Path) -> str | None:
    for split in SPLIT_NAMES:
        if path.name.startswith(split) or path.parent.name == split:
            return split
    return None


def _labels_and_names(
    values: list[object],
    names_from_meta: list[str] | None,
    names_column: list[str] | None,
    path: Path,
) -> tuple[np.ndarray, list[str]]:
    if any(v is None for v in values):
        raise DatasetError(
            "a label on every row",
            f"{sum(v is None for v in values)} null labels in {path}",
            "drop or fix those rows",
        )
    if all(isinstance(v, str) for v in values):
        names = sorted(set(values))  # type: ignore[arg-type]
        index = {n: i for i, n in enumerate(names)}
        return np.asarray([index[v] for v in values], dtype=np.int64), names  # type: ignore[index]
    labels = np.asarray(values, dtype=np.int64)
    if names_from_meta:
        return labels, names_from_meta
    if names_column is not None:
        mapping: dict[int, str] = {}
        for label, name in zip(labels.tolist(), names_column, strict=True):
            mapping.setdefault(label, name)
        top = max(mapping) + 1 if mapping else 0
        return labels, [mapping.get(i, str(i)) for i in range(top)]
    top = int(labels.max()) + 1 if len(labels) else 0
    return labels, [str(i) for i in range(max(top, 0))]


def load_parquet(target: Path | None, options: LoadOptions) -> SourceData:
    """Read a Parquet file (or folder of files): image, label and optional split columns.

    Splits come from a ``split`` column, else from file names starting with train/test (the
    layout of Hugging Face exports), else the dataset is split later.
    """
    if target is None:
        raise DatasetError(
            "parquet:PATH", "no path", "write the dataset as parquet:/path/to/file.parquet"
        )
    files = _parquet_files(target)
    blobs: list[bytes | None] = []
    paths: list[str | None] = []
    raw_labels: list[object] = []
    names_column: list[str] | None = []
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
        raw_labels.extend(table.column(label_col).to_pylist())
        hf_names = hf_names or _hf_class_names(table.schema, label_col)
        if names_column is not None and "label_name" in names:
            names_column.extend(table.column("label_name").to_pylist())
        else:
            names_column = None
        if "split" in names:
            splits.extend(table.column("split").to_pylist())
        else:
            splits.extend([_split_from_filename(path)] * table.num_rows)
        stem = path.relative_to(target).as_posix() if target.is_dir() else ""
        keys.extend(f"{stem}#{i}" if stem else str(i) for i in range(table.num_rows))
    labels_all, label_names = _labels_and_names(raw_labels, hf_names, names_column, target)
    bad_splits = sorted({str(s) for s in splits if s is not None and s not in SPLIT_NAMES})
    if bad_splits:
        raise DatasetError(
            f"split values in {list(SPLIT_NAMES)}",
            f"{bad_splits} in {target}",
            "rename them or drop the split column",
        )
    has_splits = all(s is not None for s in splits)
    pixels, kept, rejects = decode_all(blobs, keys, options.channels, desc=f"decode {target.name}")
    return SourceData(
        pixels=pixels,
        labels=labels_all[kept] if kept else np.zeros(0, dtype=np.int64),
        label_names=label_names,
        keys=[keys[i] for i in kept],
        splits=[splits[i] for i in kept] if has_splits else None,  # type: ignore[misc]
        paths=[paths[i] for i in kept],
        rejects=rejects,
        params={"path": str(target), "files": [str(p) for p in files]},
    )
