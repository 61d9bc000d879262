"""``CuratedDataset``: a PyTorch Dataset over a robust-data Parquet export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from robust_data.ingest.images import decode_image
from robust_data.store.store import is_url


def split_files(path: str | os.PathLike[str], split: str) -> list[Path]:
    """The Parquet files of one split of an export, in shard order.

    ``data/<split>-*.parquet`` (the layout of this version), else ``<split>.parquet`` (exports
    made before it).

    Raises
    ------
    FileNotFoundError
        One line naming the splits the folder has.
    """
    folder = Path(path)
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    if not files and (folder / f"{split}.parquet").is_file():
        files = [folder / f"{split}.parquet"]
    if not files:
        found = sorted(
            {p.name.split("-")[0] for p in (folder / "data").glob("*.parquet")}
            | {p.stem for p in folder.glob("*.parquet")}
        )
        raise FileNotFoundError(
            f"expected split {split!r} at {folder / 'data' / f'{split}-*.parquet'}; "
            f"found splits {found}; export with --format parquet"
        )
    return files


def url_split_files(url: str, split: str) -> tuple[list[str], Any]:
    """:func:`split_files` of an export published at an fsspec URL (``s3://.../exports/x``).

    Returns
    -------
    (files, filesystem)
        The split's object paths, in shard order, and the fsspec filesystem they are on.

    Raises
    ------
    FileNotFoundError
        One line naming the splits the URL has.
    """
    import fsspec

    url = url.rstrip("/")
    fs, root = fsspec.core.url_to_fs(url)
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
            f"expected split {split!r} at {url}/data/{split}-*.parquet; "
            f"found splits {found}; export with --format parquet"
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
        files: list[str] | list[Path]
        if is_url(path):
            files, filesystem = url_split_files(str(path), split)
        else:
            files, filesystem = split_files(path, split), None
        columns = ["sample_id", "label", "image"]
        table = pa.concat_tables(
            pq.read_table(f, columns=columns, filesystem=filesystem) for f in files
        )
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
