"""Benchmark: ingestion of mnist-5k with PNG compress level 1 (ours) against level 6 (Pillow's default).

Prints and appends to bench/RESULTS.md: seconds per ingestion (best of 3), stored bytes, ratio.
Run: .venv/bin/python bench/png_encode.py
"""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import robust_data.images as images
from robust_data import ingest

RESULTS = Path(__file__).with_name("RESULTS.md")


def measure(level: int, repeats: int = 3) -> tuple[float, int]:
    images.PNG_COMPRESS_LEVEL = level
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = ingest("mnist-5k")
        best = min(best, time.perf_counter() - start)
    stored = sum(len(b) for b in result.samples.column("image").combine_chunks().field("bytes").to_pylist())
    return best, stored


def main() -> None:
    ours = measure(1)
    baseline = measure(6)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"\n## PNG compress level in ingestion ({datetime.now(UTC):%Y-%m-%d}, {machine})\n",
        "`python bench/png_encode.py`: ingest mnist-5k (5,000 28x28 images), best of 3.\n",
        "| PNG level | seconds | image bytes |",
        "|---|---:|---:|",
        f"| 6 (Pillow default, baseline) | {baseline[0]:.2f} | {baseline[1]:,} |",
        f"| 1 (ours) | {ours[0]:.2f} | {ours[1]:,} |",
        f"\nTime ratio baseline/ours: {baseline[0] / ours[0]:.2f}x; size ratio ours/baseline: "
        f"{ours[1] / baseline[1]:.2f}.\n",
    ]
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
