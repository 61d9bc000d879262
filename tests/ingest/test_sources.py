"""Every source on tiny fixtures in its real on-disk format, and the bundled datasets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from robust_data import DatasetError, ingest
from robust_data.ingest.images import decode_image
from tests.fixtures import (
    make_cifar_root,
    make_idx_root,
    make_imagefolder,
    make_svhn_root,
    png_bytes,
    write_parquet,
)


def counts(table: pa.Table, column: str) -> dict[object, int]:
    return dict(Counter(table.column(column).to_pylist()))


def test_digits_is_the_bundled_sklearn_set() -> None:
    result = ingest("digits")
    samples = result.samples
    assert samples.num_rows == 1797
    assert sorted(set(samples.column("label").to_pylist())) == list(range(10))
    assert set(samples.column("height").to_pylist()) == {8}
    assert set(samples.column("channels").to_pylist()) == {1}
    splits = counts(samples, "split")
    assert splits["test"] == pytest.approx(1797 * 0.2, abs=10)
    first = decode_image(samples.column("image")[0]["bytes"].as_py())
    from sklearn.datasets import load_digits

    expected = np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(first[:, :, 0], expected)


def test_mnist_5k_has_500_per_class() -> None:
    samples = ingest("mnist-5k").samples
    assert samples.num_rows == 5000
    assert set(counts(samples, "label").values()) == {500}
    assert set(samples.column("height").to_pylist()) == {28}
    per_class_test = Counter(
        label
        for label, split in zip(
            samples.column("label").to_pylist(), samples.column("split").to_pylist(), strict=True
        )
        if split == "test"
    )
    assert set(per_class_test.values()) == {100}  # stratified: 20% of every class


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_with_real_splits(tmp_path: Path, gz: bool) -> None:
    labels = make_idx_root(tmp_path, n_train=30, n_test=20, gz=gz)
    samples = ingest("mnist", root=str(tmp_path)).samples
    assert samples.num_rows == 50
    assert counts(samples, "split") == {"train": 30, "test": 20}
    expected = Counter(np.concatenate([labels["train"], labels["test"]]).tolist())
    assert counts(samples, "label") == dict(expected)
    assert samples.column("sample_id")[0].as_py() == "mnist:train:0"


def test_mnist_only_test_files(tmp_path: Path) -> None:
    make_idx_root(tmp_path, n_train=0, n_test=20)
    with pytest.raises(DatasetError, match="train split"):  # the models train on train
        ingest("mnist", root=str(tmp_path))
    make_idx_root(tmp_path / "train-only", n_train=30, n_test=0)
    result = ingest("mnist", root=str(tmp_path / "train-only"))  # split: curation needs a test
    assert counts(result.samples, "split") == {"train": 20, "test": 10}
    assert "held out 10 of 30 train images as test" in result.notes[0]


def test_fashion_mnist_and_kmnist_folders_and_names(tmp_path: Path) -> None:
    make_idx_root(tmp_path / "f", folder="FashionMNIST", n_train=10, n_test=10)
    make_idx_root(tmp_path / "k", folder="KMNIST", n_train=10, n_test=10, gz=False)
    fashion = ingest("fashion-mnist", root=str(tmp_path / "f")).samples
    kmnist = ingest("kmnist", root=str(tmp_path / "k")).samples
    assert fashion.column("label_name")[9].as_py() == "Ankle boot"
    assert kmnist.column("label_name")[1].as_py() == "ki"


def test_missing_root_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        ingest("mnist", root=str(tmp_path))
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and str(tmp_path) in message and "\n" not in message
    with pytest.raises(DatasetError, match="pass `root=DIR`") as info:
        ingest("cifar10")
    assert info.value.options == ("root",)  # the CLI names it --root


def test_corrupt_idx_magic_is_one_line(tmp_path: Path) -> None:
    make_idx_root(tmp_path, n_train=10, n_test=0, gz=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x09\x03" + path.read_bytes()[4:])
    with pytest.raises(DatasetError, match="IDX magic 00000803"):
        ingest("mnist", root=str(tmp_path))


def test_cifar10_python_batches(tmp_path: Path) -> None:
    make_cifar_root(tmp_path, per_batch=6)
    samples = ingest("cifar10", root=str(tmp_path)).samples
    assert samples.num_rows == 36
    assert counts(samples, "split") == {"train": 30, "test": 6}
    assert set(samples.column("channels").to_pylist()) == {3}
    assert samples.column("label_name")[1].as_py() == "class_1"
    ids = samples.column("sample_id").to_pylist()
    assert len(set(ids)) == 36 and "cifar10:train:29" in ids


def test_cifar10_channel_order_matches_the_batch(tmp_path: Path) -> None:
    folder = make_cifar_root(tmp_path, per_batch=2)
    import pickle

    with open(folder / "data_batch_1", "rb") as handle:
        raw = pickle.load(handle)[b"data"][0]
    samples = ingest("cifar10", root=str(tmp_path)).samples
    decoded = decode_image(samples.column("image")[0]["bytes"].as_py())
    np.testing.assert_array_equal(decoded, raw.reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    make_cifar_root(tmp_path, hundred=True, per_batch=5)
    samples = ingest("cifar100", root=str(tmp_path)).samples
    assert samples.num_rows == 10
    assert samples.column("label_name")[3].as_py() == "class_3"


def test_svhn_mat_maps_label_10_to_0(tmp_path: Path) -> None:
    make_svhn_root(tmp_path, n=12)
    samples = ingest("svhn", root=str(tmp_path)).samples
    assert samples.num_rows == 24
    labels = samples.column("label").to_pylist()
    assert labels[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_imagefolder_with_a_corrupt_png(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "pets", {"cat": 6, "dog": 5})
    (root / "dog" / "broken.png").write_bytes(png_bytes(np.zeros((12, 12, 3), np.uint8))[:30])
    (root / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    result = ingest(f"imagefolder:{root}")
    assert result.dataset == "pets"
    assert result.samples.num_rows == 11
    assert result.rejects.num_rows == 1
    reject = result.rejects.to_pylist()[0]
    assert reject["source_key"] == "dog/broken.png" and "not a readable image" in reject["reason"]
    assert counts(result.samples, "label_name") == {"cat": 6, "dog": 5}
    assert result.samples.column("image")[0]["path"].as_py() == "cat/000.png"


def test_imagefolder_with_split_level(tmp_path: Path) -> None:
    make_imagefolder(tmp_path / "ds" / "train", {"a": 4, "b": 4})
    make_imagefolder(tmp_path / "ds" / "test", {"a": 2, "b": 2}, seed=1)
    samples = ingest(f"imagefolder:{tmp_path / 'ds'}").samples
    assert counts(samples, "split") == {"train": 8, "test": 4}


def test_parquet_bytes_with_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [png_bytes(rng.integers(0, 256, (10, 10, 1), dtype=np.uint8)) for _ in range(10)]
    path = write_parquet(
        tmp_path / "shapes.parquet", {"image": images, "label": ["round", "square"] * 5}
    )
    samples = ingest(f"parquet:{path}").samples
    assert samples.num_rows == 10
    assert counts(samples, "label_name") == {"round": 5, "square": 5}
    assert set(samples.column("split").to_pylist()) == {"train", "test"}


def test_parquet_hf_struct_split_and_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = [
        {"bytes": png_bytes(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)), "path": f"{i}.png"}
        for i in range(8)
    ]
    hf = {"info": {"features": {"label": {"_type": "ClassLabel", "names": ["ant", "bee"]}}}}
    path = write_parquet(
        tmp_path / "insects.parquet",
        {"image": images, "label": [0, 1] * 4, "split": ["train"] * 6 + ["test"] * 2},
        {b"huggingface": json.dumps(hf).encode()},
    )
    samples = ingest(f"parquet:{path}").samples
    assert counts(samples, "split") == {"train": 6, "test": 2}
    assert counts(samples, "label_name") == {"ant": 4, "bee": 4}
    assert samples.column("image")[0]["path"].as_py() == "0.png"


def test_parquet_folder_splits_from_file_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 4)):
        images = [png_bytes(rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)) for _ in range(n)]
        write_parquet(
            tmp_path / "export" / f"{split}-00000.parquet",
            {"image": images, "label": [0, 1] * (n // 2)},
        )
    samples = ingest(f"parquet:{tmp_path / 'export'}").samples
    assert counts(samples, "split") == {"train": 6, "test": 4}
    assert len(set(samples.column("sample_id").to_pylist())) == 10
