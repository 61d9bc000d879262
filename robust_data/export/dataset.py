"""``CuratedDataset``: a PyTorch Dataset over a robust-data Parquet export."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from robust_data.ingest.images import decode_image
from robust_data.io.files import filesystem


def split_files(location: str | os.PathLike[str], split: str) -> tuple[list[str], Any]:
    """The Parquet files of one split of an export, in shard order, and their file system.

    ``location`` is an export folder or the fsspec URL it was published to
    (``s3://.../exports/x``). ``data/<split>-*.parquet`` (the layout of this version), else
    ``<split>.parquet`` (exports made before it).

    Returns
    -------
    (files, filesystem)
        The split's paths, in shard order, and the fsspec file system they are on.

    Raises
    ------
    FileNotFoundError
        One line naming the splits the export has.
    """
    where = str(location).rstrip("/")
    fs, root = filesystem(where)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    files = sorted(fs.glob(f"{root}/data/{split}-*.parquet"))
    if not files and fs.isfile(f"{root}/{split}.parquet"):
        files = [f"{root}/{split}.parquet"]
    if not files:
        names = [p.rsplit("/", 1)[-1] for p in fs.glob(f"{root}/data/*.parquet")]
        old = [p.rsplit("/", 1)[-1] for p in fs.glob(f"{root}/*.parquet")]
        found = sorted({n.split("-")[0] for n in names} | {n.removesuffix(".parquet") for n in old})
        raise FileNotFoundError(
            f"expected split {split!r} at {where}/data/{split}-*.parquet; "
            f"found splits {found}; export with `fmt=parquet`"
        )
    return files, fs


class CuratedDataset(Dataset):
    """Images and labels of one split of an export made by ``robust-data export``.

    Items are ``(image, label)``: image (C, H, W) float32 in [0, 1], label int. Images are
    decoded on access, so memory holds the PNG bytes only. ``path`` is a local folder or the
    fsspec URL of an export published to the store (``s3://bucket/store/exports/mnist``); a
    URL's split files are read once, when the dataset is made.

    >>> data = CuratedDataset("exports/mnist-5k", split="train")
    >>> loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    """

    def __init__(self, path: str | os.PathLike[str], split: str = "train", transform=None):
        files, fs = split_files(path, split)
        columns = ["sample_id", "label", "image"]
        table = pa.concat_tables(pq.read_table(f, columns=columns, filesystem=fs) for f in files)
        self.sample_ids: list[str] = table.column("sample_id").to_pylist()
        self.labels = np.asarray(table.column("label").to_numpy(), np.int64)
        self._images = table.column("image").combine_chunks().field("bytes")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = decode_image(self._images[index].as_py())
        image = torch.from_numpy(np.array(pixels.transpose(2, 0, 1))).float() / 255.0
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
