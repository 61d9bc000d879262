"""CIFAR-10 / CIFAR-100 from the standard "python version" batches, and SVHN from .mat files.

CIFAR batches are Python pickles, as distributed; read only folders you trust (the same
caveat as torchvision's loaders).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from robust_data.errors import DatasetError
from robust_data.ingest.sources.base import (
    LoadOptions,
    Source,
    SourceData,
    from_split_parts,
    integer_labels,
    require_root,
    uint8_pixels,
)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches, labels and class names."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta_file: str
    meta_key: bytes
    labels_key: bytes
    num_classes: int

    def files(self, split: str) -> tuple[str, ...]:
        """The batch files of ``split`` ("train" or "test")."""
        return self.train if split == "train" else self.test


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta_file="batches.meta",
        meta_key=b"label_names",
        labels_key=b"labels",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta_file="meta",
        meta_key=b"fine_label_names",
        labels_key=b"fine_labels",
        num_classes=100,
    ),
}


def _cifar_expected(name: str) -> str:
    layout = CIFAR_LAYOUTS[name]
    files = ", ".join(layout.train + layout.test)
    return f"{files} in ROOT/{layout.folder} or ROOT"


def _cifar_locate(name: str, root: Path) -> tuple[Path, dict[str, list[Path]]] | None:
    layout = CIFAR_LAYOUTS[name]
    for directory in (root / layout.folder, root):
        splits = {
            split: [directory / f for f in layout.files(split)]
            for split in ("train", "test")
            if all((directory / f).is_file() for f in layout.files(split))
        }
        if splits:
            return directory, splits
    return None


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetError(
            "a CIFAR python batch (pickle)",
            f"{path}: {type(exc).__name__}: {exc}",
            "re-extract the archive",
        ) from exc


def _field(batch: object, key: bytes, path: Path) -> Any:
    """``batch[key]`` of an unpickled batch, or the one-line error naming the file."""
    if not isinstance(batch, dict) or key not in batch:
        found = list(batch)[:6] if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(
            f"a CIFAR batch dict with key {key!r}", f"{found} in {path}", "re-extract the archive"
        )
    return batch[key]


def load_cifar(name: str, root: Path | None, options: LoadOptions) -> SourceData:
    """Read the complete train and/or test batches of CIFAR-10 or CIFAR-100 under ``root``."""
    layout = CIFAR_LAYOUTS[name]
    root = require_root(name, root, _cifar_expected(name))
    located = _cifar_locate(name, root)
    if located is None:
        raise DatasetError(
            _cifar_expected(name),
            f"no complete split under {root}",
            "point `root` at the extracted archive",
            options=("root",),
        )
    directory, splits = located
    parts = []
    for split, paths in splits.items():
        for path in paths:
            batch = _unpickle(path)
            data = uint8_pixels(_field(batch, b"data", path), str(path))  # (n, 3072), channel-major
            key = layout.labels_key
            targets = integer_labels(_field(batch, key, path), f"{key.decode()} of {path}")
            if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(targets):
                raise DatasetError(
                    "data (n, 3072) and n labels per batch",
                    f"data {data.shape} and {len(targets)} labels in {path}",
                    "re-extract the archive",
                )
            pixels = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3)
            parts.append((split, pixels, targets))
    meta_path = directory / layout.meta_file
    if meta_path.is_file():
        names = [n.decode() for n in _field(_unpickle(meta_path), layout.meta_key, meta_path)]
    else:
        names = [str(i) for i in range(layout.num_classes)]
    files = {s: [str(p) for p in ps] for s, ps in splits.items()}
    fix = f"add the train batches ({', '.join(layout.train)}) next to the test batch"
    return from_split_parts(
        parts, names, {"root": str(root), "files": files}, missing_train_fix=fix
    )


SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_EXPECTED = "train_32x32.mat and/or test_32x32.mat in ROOT or ROOT/svhn"


def _svhn_locate(root: Path) -> dict[str, Path]:
    for directory in (root, root / "svhn", root / "SVHN"):
        found = {s: directory / f for s, f in SVHN_FILES.items() if (directory / f).is_file()}
        if found:
            return found
    return {}


def load_svhn(root: Path | None, options: LoadOptions) -> SourceData:
    """Read SVHN's cropped-digit .mat files (label 10 stands for digit 0, as in the release)."""
    from scipy.io import loadmat

    root = require_root("svhn", root, SVHN_EXPECTED)
    located = _svhn_locate(root)
    if not located:
        raise DatasetError(
            SVHN_EXPECTED,
            f"neither file under {root}",
            "point `root` at the folder with the .mat files",
            options=("root",),
        )
    parts = []
    for split, path in located.items():
        try:
            mat = loadmat(path)
        except (OSError, ValueError) as exc:
            raise DatasetError(
                "a MATLAB .mat file with X and y", f"{path}: {exc}", "re-download the file"
            ) from exc
        if "X" not in mat or "y" not in mat or mat["X"].ndim != 4:
            raise DatasetError(
                "X (32, 32, 3, N) and y (N, 1)",
                f"keys {sorted(k for k in mat if not k.startswith('__'))} in {path}",
                "use the cropped-digits files",
            )
        images = np.ascontiguousarray(uint8_pixels(mat["X"], str(path)).transpose(3, 0, 1, 2))
        parts.append((split, images, _svhn_labels(mat["y"], path)))  # (N, 32, 32, 3), (N,)
    files = {s: str(p) for s, p in located.items()}
    return from_split_parts(
        parts,
        [str(i) for i in range(10)],
        {"root": str(root), "files": files},
        missing_train_fix="add train_32x32.mat next to test_32x32.mat",
    )


def _svhn_labels(y: np.ndarray, path: Path) -> np.ndarray:
    """SVHN's labels 1..10 (10 for digit 0; 0 also accepted) as digits 0..9."""
    labels = integer_labels(np.asarray(y).reshape(-1), f"y of {path}")
    if labels.size and labels.max() > 10:
        raise DatasetError(
            "SVHN labels 1..10 (10 for the digit 0)",
            f"label {int(labels.max())} in {path}",
            "use the cropped-digits files",
        )
    return np.where(labels == 10, 0, labels)


def cifar_source(name: str, description: str) -> Source:
    return Source(
        name=name,
        description=description,
        load=partial(load_cifar, name),
        needs_root=True,
        expected=_cifar_expected(name),
        find=lambda root: (
            None if _cifar_locate(name, root) else f"no {_cifar_expected(name)} under {root}"
        ),
    )


SVHN_SOURCE = Source(
    name="svhn",
    description="SVHN cropped digits from train_32x32.mat / test_32x32.mat (real splits)",
    load=load_svhn,
    needs_root=True,
    expected=SVHN_EXPECTED,
    find=lambda root: None if _svhn_locate(root) else f"no {SVHN_EXPECTED} under {root}",
)
