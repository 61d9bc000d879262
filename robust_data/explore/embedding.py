"""The browser's 2-D embedding: features of a seeded sample of both splits, projected to a plane.

Features come from one model's space: the stored reference model's penultimate activations
for training and test images alike, or, without a reference model, the stored out-of-fold
embeddings (training images only). They are projected by UMAP when ``umap-learn`` is installed
(``pip install 'robust-data[umap]'``) and by PCA otherwise; either way every axis is scaled
into [0, 1], so a box selected on the page is a box in these coordinates.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from robust_data.errors import DatasetError

PROJECTIONS = ("auto", "pca", "umap")


def umap_installed() -> bool:
    """Whether ``umap-learn`` can be imported here."""
    return importlib.util.find_spec("umap") is not None


def projection_method(requested: str = "auto") -> str:
    """``umap`` or ``pca``: ``auto`` picks UMAP when installed.

    Raises
    ------
    DatasetError
        One line for an unknown method, or ``umap`` asked for without ``umap-learn``.
    """
    if requested not in PROJECTIONS:
        raise DatasetError(
            f"a projection in {', '.join(PROJECTIONS)}", repr(requested), "pick one of those"
        )
    if requested == "umap" and not umap_installed():
        raise DatasetError(
            "umap-learn installed for the UMAP projection",
            "no module named umap",
            "pip install 'robust-data[umap]', or use the PCA projection",
        )
    if requested == "auto":
        return "umap" if umap_installed() else "pca"
    return requested


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) coordinates, each axis scaled into [0, 1].

    ``method`` is ``pca`` (first two principal components) or ``umap`` (seeded, 15
    neighbours). Fewer than 2 rows sit at the centre.
    """
    n = len(vectors)
    if n < 2:
        return np.full((n, 2), 0.5)
    if method == "umap" and n > 16:
        import umap  # type: ignore[import-not-found]

        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=15).fit_transform(vectors)
    else:
        centred = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
    xy = np.asarray(xy, np.float64)
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    low, high = xy.min(axis=0), xy.max(axis=0)
    return (xy - low) / np.where(high > low, high - low, 1.0)


def seeded_rows(counts: dict[str, int], max_points: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded subset of each split's rows, in proportion to its size, ``max_points`` in all.

    Parameters
    ----------
    counts : dict
        Split name -> its number of rows.

    Returns
    -------
    dict
        Split name -> sorted row positions (0-based within the split).
    """
    total = sum(counts.values())
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in sorted(counts.items()):
        take = n if total <= max_points else max(1, round(max_points * n / total))
        out[split] = np.sort(rng.permutation(n)[: min(n, take)])
    return out
