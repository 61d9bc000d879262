"""The io layer treats a local path and an fsspec URL alike (``memory://`` stands for S3)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from robust_data.io.atomic import TMP_SUFFIX
from robust_data.io.files import (
    file_exists,
    file_sha256,
    glob_files,
    is_url,
    list_names,
    read_bytes,
    remove_file,
    remove_folder,
    write_bytes,
)
from robust_data.io.parquet import read_parquet, write_parquet


@pytest.fixture(params=["local", "url"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    return f"memory://io-test-{os.getpid()}/{tmp_path.name}"


def test_bytes_round_trip_exist_hash_and_remove(root: str) -> None:
    location = f"{root}/a/b.bin"
    assert not file_exists(location)
    assert write_bytes(b"payload", location) == location
    assert file_exists(location) and read_bytes(location) == b"payload"
    assert file_sha256(location) == (
        "239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"
    )
    assert not file_exists(f"{root}/a")  # a folder is not a file
    remove_file(location)
    remove_file(location)  # nothing there is not an error
    assert not file_exists(location)
    with pytest.raises(FileNotFoundError):
        read_bytes(location)


def test_folders_list_glob_and_remove_alike(root: str) -> None:
    for name in ("m.pt", "m-1.pt", "m-2.pt", "other.pt"):
        write_bytes(b"w", f"{root}/weights/{name}")
    assert list_names(root) == ["weights"] and list_names(f"{root}/none") == []
    found = glob_files(f"{root}/weights/m-*.pt")
    assert [f.rsplit("/", 1)[-1] for f in found] == ["m-1.pt", "m-2.pt"]
    assert all(is_url(f) == is_url(root) and read_bytes(f) == b"w" for f in found)
    assert remove_folder(f"{root}/weights") and not remove_folder(f"{root}/weights")
    assert not file_exists(f"{root}/weights/m.pt")


def test_parquet_round_trip_and_a_missing_table(root: str) -> None:
    table = pa.table({"x": [1, 2, 3]})
    location = f"{root}/t/part.parquet"
    assert write_parquet(table, location) == location
    assert read_parquet(location).equals(table)
    with pytest.raises(FileNotFoundError, match=r"expected a Parquet file at .*; found no file"):
        read_parquet(f"{root}/t/none.parquet")


def test_a_local_write_makes_its_folder_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "folder"
    write_parquet(pa.table({"x": [1]}), folder / "t.parquet")
    write_bytes(b"x", folder / "b.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["b.bin", "t.parquet"]
    assert not list(folder.glob(f".*{TMP_SUFFIX}"))
