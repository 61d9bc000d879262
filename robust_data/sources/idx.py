"""MNIST-format datasets (MNIST, Fashion-MNIST, KMNIST) from IDX files in torchvision's layout.

torchvision keeps them at ``ROOT/<Folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(optionally ``.gz``). We look in ``ROOT/<Folder>/raw``, ``ROOT/raw`` and ``ROOT`` itself, and
read whichever of the train and test splits is complete there.
"""

from __future__ import annotations

import gzip
from functools import partial
from pathlib import Path

import numpy as np

from robust_data.errors import DatasetError
from robust_data.sources.base import (
    LoadOptions,
    Source,
    SourceData,
    from_split_parts,
    require_root,
)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
KMNIST_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def _expected(folder: str) -> str:
    names = ", ".join(f"{n}[.gz]" for pair in IDX_FILES.values() for n in pair)
    return f"{names} in ROOT/{folder}/raw, ROOT/raw or ROOT"


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(root: Path, folder: str) -> dict[str, tuple[Path, Path]]:
    """Find the first candidate folder holding at least one complete split."""
    for directory in (root / folder / "raw", root / "raw", root):
        found = {}
        for split, (images, labels) in IDX_FILES.items():
            image_path, label_path = _find_file(directory, images), _find_file(directory, labels)
            if image_path and label_path:
                found[split] = (image_path, label_path)
        if found:
            return found
    return {}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or not).

    Returns
    -------
    np.ndarray
        uint8, (N, rows, cols) for images or (N,) for labels.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetError("a readable IDX file", f"{path}: {exc}", "re-extract the file") from exc
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        found = data[:4].hex() if len(data) >= 4 else f"{len(data)} bytes"
        raise DatasetError(
            f"IDX magic {magic:08x} in {path.name}",
            f"{found}",
            "check the file is the MNIST-format file it is named as",
        )
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetError(
            f"{expected} data bytes for shape {dims} in {path}",
            f"{len(data) - offset}",
            "the file is truncated or corrupt; re-extract it",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_idx_dataset(
    name: str, folder: str, label_names: list[str], root: Path | None, options: LoadOptions
) -> SourceData:
    """Read every complete split of an MNIST-format dataset under ``root``."""
    root = require_root(name, root, _expected(folder))
    located = _locate(root, folder)
    if not located:
        raise DatasetError(
            _expected(folder),
            f"no complete split under {root}",
            "point --root at the dataset folder",
        )
    parts = []
    files = {}
    for split, (image_path, label_path) in located.items():
        images = read_idx(image_path, IMAGES_MAGIC)
        targets = read_idx(label_path, LABELS_MAGIC)
        if len(images) != len(targets):
            raise DatasetError(
                f"as many labels as images for {split}",
                f"{len(images)} images in {image_path.name} and {len(targets)} labels in {label_path.name}",
                "re-extract the pair from the same release",
            )
        parts.append((split, images[:, :, :, None], targets))  # (N, 28, 28, 1), (N,)
        files[split] = [str(image_path), str(label_path)]
    return from_split_parts(parts, label_names, {"root": str(root), "files": files})


def _find(folder: str, root: Path) -> str | None:
    return None if _locate(root, folder) else f"no {_expected(folder)} under {root}"


def idx_source(name: str, folder: str, label_names: list[str], description: str) -> Source:
    """A registry entry for an MNIST-format dataset kept in ``ROOT/<folder>/raw``."""
    return Source(
        name=name,
        description=description,
        load=partial(load_idx_dataset, name, folder, label_names),
        needs_root=True,
        expected=_expected(folder),
        find=partial(_find, folder),
    )
