"""MNIST-format datasets (MNIST, Fashion-MNIST, KMNIST) from IDX files in torchvision's layout.

torchvision keeps them at ``ROOT/<Folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(optionally ``.gz``). We look in ``ROOT/<Folder>/raw``, ``ROOT/raw`` and ``ROOT`` itself, and
read whichever of the train and test splits is complete there.

Fashion-MNIST needs no root where Debian's ``dataset-fashion-mnist`` package is installed: its
gzipped IDX files (60,000 train and 10,000 test images) sit in
``/usr/share/datasets/fashion-mnist``, the default root
(``$ROBUST_DATA_FASHION_MNIST_ROOT`` names another folder).
"""

from __future__ import annotations

import gzip
import math
import zlib
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from robust_data.errors import DatasetError
from robust_data.ingest.sources.base import (
    DefaultRoot,
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
#: Most data bytes one IDX file may declare (2 GiB; EMNIST ByClass, the largest, holds 0.6 GiB).
MAX_IDX_BYTES = 2**31
#: Deflate expands at most ~1032:1, so a gzip file of S bytes holds at most S * 1032 bytes.
DEFLATE_MAX_RATIO = 1032
READ_CHUNK = 1 << 20
TRAIN_FIX = (
    "add train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] next to the t10k files"
)

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
#: Fashion-MNIST's root when none is given: Debian's package folder, or the variable's.
FASHION_DEFAULT = DefaultRoot(
    env="ROBUST_DATA_FASHION_MNIST_ROOT",
    path=Path("/usr/share/datasets/fashion-mnist"),
    install="apt-get install dataset-fashion-mnist",
)


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
    """Read one IDX file (gzipped or not), checking its header before reading its body.

    The dimensions in the header must be positive for images, declare at most
    ``MAX_IDX_BYTES`` and fit the file: exactly its size when uncompressed, at most
    ``DEFLATE_MAX_RATIO`` times its size when gzipped. The body is then read in chunks up to
    the declared size, so a short, corrupt or oversized stream fails without ever holding
    more than the declared bytes.

    Returns
    -------
    np.ndarray
        uint8, (N, rows, cols) for images or (N,) for labels.

    Raises
    ------
    DatasetError
        One line naming the file: wrong magic, empty images, a size the file cannot hold,
        a truncated or corrupt (gzip) stream, or more data than declared.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            dims = _read_header(handle, path, magic)
            _check_declared(path, dims)
            body = _read_body(handle, path, dims)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
        raise DatasetError(
            "a readable IDX file", f"{path}: {kind}: {exc}", "re-extract the file"
        ) from exc
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


class _Readable(Protocol):
    """An open binary file, plain or gzip."""

    def read(self, size: int = -1, /) -> bytes: ...


def _read_header(handle: _Readable, path: Path, magic: int) -> list[int]:
    """The dimensions declared after the 4-byte magic number."""
    head = handle.read(4)
    if len(head) < 4 or int.from_bytes(head, "big") != magic:
        found = head.hex() if len(head) == 4 else f"{len(head)} bytes"
        raise DatasetError(
            f"IDX magic {magic:08x} in {path.name}",
            f"{found} in {path}",
            "check the file is the MNIST-format file it is named as",
        )
    ndim = head[3]
    raw = handle.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DatasetError(
            f"{ndim} dimensions after the magic number in {path}",
            f"{len(raw)} header bytes",
            "the file is truncated or corrupt; re-extract it",
        )
    return [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]


def _check_declared(path: Path, dims: list[int]) -> None:
    """Refuse empty images, and declared sizes the file cannot hold, before reading the body."""
    if len(dims) == 3 and min(dims[1:]) < 1:
        raise DatasetError(
            f"images of at least 1x1 pixels in {path}",
            f"shape {dims}",
            "re-extract the file; this one declares empty images",
        )
    declared = math.prod(dims)
    size = path.stat().st_size
    header = 4 + 4 * len(dims)
    if path.suffix == ".gz":
        possible = size * DEFLATE_MAX_RATIO
        if declared > min(possible, MAX_IDX_BYTES):
            raise DatasetError(
                f"at most {min(possible, MAX_IDX_BYTES)} data bytes in {path} "
                f"({size} bytes gzipped; at most {MAX_IDX_BYTES} in any IDX file)",
                f"shape {dims} declaring {declared}",
                "the file is truncated or corrupt; re-extract it",
            )
    elif size - header != declared:
        raise DatasetError(
            f"{declared} data bytes for shape {dims} in {path}",
            f"{size - header}",
            "the file is truncated or corrupt; re-extract it",
        )


def _read_body(handle: _Readable, path: Path, dims: list[int]) -> bytearray:
    """Exactly the declared bytes, read in chunks; refuse a shorter or longer stream."""
    declared = math.prod(dims)
    body = bytearray()
    while len(body) < declared:
        chunk = handle.read(min(READ_CHUNK, declared - len(body)))
        if not chunk:
            break
        body.extend(chunk)
    extra = handle.read(1)
    if len(body) != declared or extra:
        found = f"{len(body)}" if len(body) < declared else "more"
        raise DatasetError(
            f"{declared} data bytes for shape {dims} in {path}",
            found,
            "the file is truncated or corrupt; re-extract it",
        )
    return body


def load_idx_dataset(
    name: str,
    folder: str,
    label_names: list[str],
    default: DefaultRoot | None,
    root: Path | None,
    options: LoadOptions,
) -> SourceData:
    """Read every complete split of an MNIST-format dataset under ``root``.

    ``root`` None reads the ``default`` root (see :class:`DefaultRoot`); a source without one
    refuses it.
    """
    defaulted = root is None and default is not None
    root = require_root(name, root, _expected(folder), default)
    located = _locate(root, folder)
    if not located:
        raise DatasetError(
            _expected(folder),
            f"no complete split under {root}",
            default.fix() if defaulted and default else "point `root` at the dataset folder",
            options=("root",),
        )
    parts = []
    files = {}
    for split, (image_path, label_path) in located.items():
        images = read_idx(image_path, IMAGES_MAGIC)
        targets = read_idx(label_path, LABELS_MAGIC)
        if len(images) != len(targets):
            raise DatasetError(
                f"as many labels as images for {split}",
                f"{len(images)} images in {image_path.name} "
                f"and {len(targets)} labels in {label_path.name}",
                "re-extract the pair from the same release",
            )
        parts.append((split, images[:, :, :, None], targets))  # (N, 28, 28, 1), (N,)
        files[split] = [str(image_path), str(label_path)]
    return from_split_parts(
        parts, label_names, {"root": str(root), "files": files}, missing_train_fix=TRAIN_FIX
    )


def _find(folder: str, root: Path) -> str | None:
    return None if _locate(root, folder) else f"no {_expected(folder)} under {root}"


def idx_source(
    name: str,
    folder: str,
    label_names: list[str],
    description: str,
    default: DefaultRoot | None = None,
) -> Source:
    """A registry entry for an MNIST-format dataset kept in ``ROOT/<folder>/raw``.

    ``default``: where to read when no root is given; None requires a root.
    """
    return Source(
        name=name,
        description=description,
        load=partial(load_idx_dataset, name, folder, label_names, default),
        needs_root=True,
        expected=_expected(folder),
        find=partial(_find, folder),
        default=default,
    )
