"""Decode a samples table (or part of it) into model-ready arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError
from robust_data.ingest.images import decode_image, to_model_batch


@dataclass(frozen=True)
class SampleArrays:
    """Decoded samples, row-aligned.

    Attributes
    ----------
    sample_ids : list of str
        (N,) ids.
    images : np.ndarray
        (N, C, H, W) float32 in [0, 1].
    labels : np.ndarray
        (N,) int64 in [0, num_classes).
    splits : np.ndarray
        (N,) str, ``train`` or ``test``.
    """

    sample_ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray

    def __len__(self) -> int:
        return len(self.sample_ids)

    def where(self, mask: np.ndarray) -> SampleArrays:
        """The rows where ``mask`` (N,) bool is true, in order."""
        index = np.flatnonzero(mask)
        return SampleArrays(
            [self.sample_ids[i] for i in index],
            self.images[index],
            self.labels[index],
            self.splits[index],
        )


def num_classes(samples: pa.Table) -> int:
    """Class count of a samples table: max label + 1 (labels are 0..K-1)."""
    return int(pc.max(samples.column("label")).as_py()) + 1 if samples.num_rows else 0


def class_names(samples: pa.Table) -> list[str]:
    """(K,) label names of a samples table, indexed by label (the label's number if unnamed)."""
    pairs = samples.select(["label", "label_name"]).group_by(["label", "label_name"]).aggregate([])
    names = {int(r["label"]): str(r["label_name"]) for r in pairs.to_pylist()}
    return [names.get(i, str(i)) for i in range(num_classes(samples))]


def decode_samples(samples: pa.Table, splits: tuple[str, ...] | None = None) -> SampleArrays:
    """Decode the images of a samples table, keeping rows of ``splits`` (all when None).

    Raises
    ------
    DatasetError
        When the images differ in shape (ingest with ``resize``/``channels`` to fix).
    """
    if splits is not None:
        samples = samples.filter(pc.is_in(samples.column("split"), pa.array(list(splits))))
    blobs = samples.column("image").combine_chunks().field("bytes").to_pylist()
    pixels = [decode_image(b) for b in blobs]
    shapes = {p.shape for p in pixels}
    if len(shapes) > 1:
        raise DatasetError(
            "images of one shape",
            f"{len(shapes)} shapes {sorted(shapes)[:3]}",
            "re-ingest with `resize=HxW` and `channels=C`",
            options=("resize", "channels"),
        )
    images = to_model_batch(pixels) if pixels else np.zeros((0, 1, 1, 1), np.float32)
    return SampleArrays(
        samples.column("sample_id").to_pylist(),
        images,
        np.asarray(samples.column("label").to_numpy(), np.int64),
        np.asarray(samples.column("split").to_pylist(), dtype=object),
    )
