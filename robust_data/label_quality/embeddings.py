"""Embeddings for Datalab's outlier and near-duplicate issues: one model's space, reduced by PCA.

Embeddings must share one space, so they come from one model: the reference model, trained on
the whole train split, with its penultimate activations reduced by PCA (fitted on a seeded
sample of rows above ``pca_fit_rows``, so that memory stays bounded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from robust_data.scoring.models import embed

if TYPE_CHECKING:
    from robust_data.label_quality.oof import OofOptions

EMBED_CHUNK = 4096
"""Images embedded and projected per chunk once the PCA is fitted."""


def reference_embeddings(model: nn.Module, images: np.ndarray, options: OofOptions) -> np.ndarray:
    """Penultimate activations of ``model`` for ``images`` (N, C, H, W), reduced by PCA.

    Up to ``options.pca_fit_rows`` images: one pass, PCA fitted on all of them
    (:func:`reduce_dim`). Above: the PCA is fitted on a seeded sample of that many rows and
    every image is embedded and projected in chunks of :data:`EMBED_CHUNK`, so the (N, D)
    activations never exist at once.

    Returns
    -------
    np.ndarray
        (N, min(embedding_dim, D)) float32.
    """
    n = len(images)
    if n <= options.pca_fit_rows:
        return reduce_dim(embed(model, images, device=options.device), options)
    rows = np.sort(np.random.default_rng(options.seed).choice(n, options.pca_fit_rows, False))
    sample = embed(model, images[rows], device=options.device)
    components = min(options.embedding_dim, sample.shape[1])
    pca = None
    if components < sample.shape[1]:
        from sklearn.decomposition import PCA  # imported when used: it takes seconds

        pca = PCA(n_components=components, svd_solver="randomized", random_state=options.seed)
        pca.fit(sample)
    del sample
    out = np.empty((n, components), np.float32)
    for start in range(0, n, EMBED_CHUNK):
        chunk = embed(model, images[start : start + EMBED_CHUNK], device=options.device)
        out[start : start + len(chunk)] = chunk if pca is None else pca.transform(chunk)
    return out


def reduce_dim(features: np.ndarray, options: OofOptions) -> np.ndarray:
    """PCA of (N, D) features to at most ``options.embedding_dim`` components, float32."""
    n, d = features.shape
    components = min(options.embedding_dim, d, n)
    if components >= d:
        return features.astype(np.float32)
    from sklearn.decomposition import PCA  # imported when used: it takes seconds

    pca = PCA(n_components=components, svd_solver="randomized", random_state=options.seed)
    return pca.fit_transform(features).astype(np.float32)
