"""Tiny real-format datasets built on the fly.

IDX, CIFAR python batches, SVHN .mat, folders, Parquet.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from robust_data.curation.ledger import LEDGER_SCHEMA
from robust_data.explore.query import stream_query
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.store import Store


def pixels(rng: np.random.Generator, n: int, height: int, width: int, channels: int) -> np.ndarray:
    """(n, height, width, channels) uint8 random images."""
    return rng.integers(0, 256, size=(n, height, width, channels), dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode (H, W, C) uint8 as PNG."""
    mode_image = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    mode_image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """Write uint8 ``array`` as an IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def make_idx_root(
    root: Path,
    folder: str = "MNIST",
    n_train: int = 30,
    n_test: int = 20,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """An MNIST-format dataset in torchvision's layout ``root/<folder>/raw``.

    Returns the labels per split.
    """
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    labels = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        if n == 0:
            continue
        labels[split] = np.arange(n, dtype=np.uint8) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", pixels(rng, n, 28, 28, 1)[:, :, :, 0], gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[split], gz)
    return labels


def make_cifar_root(root: Path, hundred: bool = False, per_batch: int = 6, seed: int = 0) -> Path:
    """CIFAR python batches (5 train + test for CIFAR-10; train/test/meta for CIFAR-100)."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    num_classes = 100 if hundred else 10
    key = b"fine_labels" if hundred else b"labels"

    def batch(n: int) -> dict[bytes, object]:
        return {
            b"data": pixels(rng, n, 3, 32, 32).reshape(n, 3072),
            key: [i % num_classes for i in range(n)],
        }

    names = [f"class_{i}".encode() for i in range(num_classes)]
    files = (
        {"train": batch(per_batch), "test": batch(per_batch)}
        if hundred
        else {
            **{f"data_batch_{i}": batch(per_batch) for i in range(1, 6)},
            "test_batch": batch(per_batch),
        }
    )
    meta = (
        ("meta", {b"fine_label_names": names})
        if hundred
        else ("batches.meta", {b"label_names": names})
    )
    for name, content in [*files.items(), meta]:
        with open(folder / name, "wb") as handle:
            pickle.dump(content, handle)
    return folder


def make_svhn_root(root: Path, n: int = 12, seed: int = 0) -> Path:
    """SVHN .mat files: X (32, 32, 3, N), y (N, 1) with label 10 for digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        images = pixels(rng, n, 32, 32, 3)
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1)  # 1..10, 10 meaning 0
        savemat(root / name, {"X": images.transpose(1, 2, 3, 0), "y": labels})
    return root


def make_imagefolder(
    root: Path, classes: dict[str, int], size: int = 12, channels: int = 3, seed: int = 0
) -> Path:
    """``root/<class>/<i>.png`` with ``classes[name]`` random PNGs each."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(pixels(rng, count, size, size, channels)):
            (root / name / f"{i:03d}.png").write_bytes(png_bytes(image))
    return root


def write_parquet(
    path: Path, columns: dict[str, object], metadata: dict[bytes, bytes] | None = None
) -> Path:
    """A Parquet file from plain columns (optionally with schema metadata)."""
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def synthetic_scores(samples: pa.Table, seed: int = 0) -> dict[str, pa.Table]:
    """rpr_scores, label_quality and curation_ledger for ``samples`` with seeded made-up values.

    For tests and benchmarks of what reads them (the browser): the values mean nothing.
    """
    rng = np.random.default_rng(seed)
    ids = samples.column("sample_id").to_pylist()
    labels = samples.column("label").to_numpy()
    steps = rng.integers(1, 60, len(ids)).astype(np.int32)
    robust = rng.random(len(ids)) < 0.5
    train = [
        i for i, s in zip(ids, samples.column("split").to_pylist(), strict=True) if s == "train"
    ]
    n_train = len(train)
    rpr = pa.table(
        {
            "sample_id": ids,
            "split": samples.column("split"),
            "label": labels,
            "model_sha256": ["x"] * len(ids),
            "scheme": ["pixels"] * len(ids),
            "max_steps": np.full(len(ids), 50, np.int32),
            "seed": np.zeros(len(ids), np.int64),
            "clean_pred": labels,
            "clean_correct": np.ones(len(ids), bool),
            "steps_to_flip": pa.array(np.where(robust, None, steps).tolist(), pa.int32()),
            "robust": robust,
            "flip_pred": pa.array(np.where(robust, None, (labels + 1) % 10).tolist(), pa.int64()),
        },
        schema=RPR_SCHEMA,
    )
    issue = rng.random(n_train) < 0.2
    quality = pa.table(
        {
            "sample_id": train,
            "given_label": np.zeros(n_train, np.int64),
            "oof_pred": np.zeros(n_train, np.int64),
            "label_quality": rng.random(n_train),
            "is_label_issue": issue,
            "suggested_label": np.where(issue, 3, 0).astype(np.int64),
            "outlier_score": rng.random(n_train),
            "is_outlier": rng.random(n_train) < 0.1,
            "near_duplicate_score": rng.random(n_train),
            "is_near_duplicate": np.zeros(n_train, bool),
            "near_duplicate_group": [train[0] if k < 3 else None for k in range(n_train)],
        },
        schema=LABEL_QUALITY_SCHEMA,
    )
    kept = ~issue
    ledger = pa.table(
        {
            "sample_id": train,
            "label": np.zeros(n_train, np.int64),
            "kept": kept,
            "reason": [None if k else "label_issue" for k in kept],
            "review": pa.nulls(n_train, pa.string()),
            "overridden": pa.nulls(n_train, pa.string()),
            "new_label": pa.nulls(n_train, pa.int64()),
        },
        schema=LEDGER_SCHEMA,
    )
    return {"rpr_scores": rpr, "label_quality": quality, "curation_ledger": ledger}


def query_rows(store: Store, sql: str, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The rows of read-only SQL over ``store``, as the CLI's query gives them (JSON lines)."""
    out = io.StringIO()
    stream_query(store, sql, out, "json", max_rows=max_rows, notes=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]
